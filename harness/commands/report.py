"""`report DIR [--baseline DIR] [--history DIR...] [-o FILE]`: one self-contained HTML report of a
run directory (plots embedded, opens offline), with a regression table against a baseline run and
trend plots across a history of runs (a folder of run directories, or several)."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import rundir
from ..errors import UsageError
from ..results import load_run


def add_parser(sub):
    p = sub.add_parser("report", help="write an HTML report of a run directory")
    p.add_argument("run_dir", metavar="DIR", help="run directory written by `run`")
    p.add_argument("--baseline", metavar="DIR", help="run directory to compare with (regression table)")
    p.add_argument("--history", nargs="+", default=[], metavar="DIR",
                   help="earlier run directories, or folders of them, for trend plots and the nightly rule")
    p.add_argument("-o", "--output", help="HTML file to write (default DIR/report.html)")
    p.add_argument("--screenshot", metavar="PNG",
                   help="also write a PNG of the report's first screen (1400x1000, headless chromium)")
    p.set_defaults(func=main)


def main(args) -> int:
    from reports.nightly import render_report

    meta, rows = load_run(args.run_dir)
    if args.baseline:
        load_run(args.baseline)  # a usage error now rather than half a report
    run_dir = Path(args.run_dir)
    target = Path(args.output) if args.output else run_dir / "report.html"
    where = target.parent.resolve()  # the file itself may be a link: judge the directory it lands in
    inside = run_dir.resolve() in (where, *where.parents)
    if inside:  # writing into the run directory: its writer lock, and no link may redirect the write
        with rundir.lock_existing(run_dir, "report"):
            _write(target, render_report(args.run_dir, meta, rows, args.baseline, args.history))
    else:
        _write(target, render_report(args.run_dir, meta, rows, args.baseline, args.history))
    sys.stdout.write(f"report: {target}\n")
    if getattr(args, "screenshot", None):
        from reports.browser import screenshot

        sys.stdout.write(f"screenshot: {screenshot(target, args.screenshot)}\n")
    return 0


def _write(target: Path, html: str) -> None:
    try:
        rundir.atomic_write(target, html)  # a kill mid-write leaves the previous report, not 0 bytes
    except UnicodeEncodeError as exc:
        raise UsageError(f"{target}: the report holds text that cannot be written as UTF-8 ({exc.reason})") from None

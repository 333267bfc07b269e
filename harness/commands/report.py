"""`report DIR [--baseline DIR] [--history DIR...] [-o FILE]`: one self-contained HTML report of a
run directory (plots embedded, opens offline), with a regression table against a baseline run and
trend plots across a history of runs (a folder of run directories, or several)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..results import load_run


def add_parser(sub):
    p = sub.add_parser("report", help="write an HTML report of a run directory")
    p.add_argument("run_dir", metavar="DIR", help="run directory written by `run`")
    p.add_argument("--baseline", metavar="DIR", help="run directory to compare with (regression table)")
    p.add_argument("--history", nargs="+", default=[], metavar="DIR",
                   help="earlier run directories, or folders of them, for trend plots and the nightly rule")
    p.add_argument("-o", "--output", help="HTML file to write (default DIR/report.html)")
    p.set_defaults(func=main)


def main(args) -> int:
    from reports.nightly import render_report

    meta, rows = load_run(args.run_dir)
    if args.baseline:
        load_run(args.baseline)  # a usage error now rather than half a report
    target = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    target.write_text(render_report(args.run_dir, meta, rows, args.baseline, args.history), encoding="utf-8")
    sys.stdout.write(f"report: {target}\n")
    return 0

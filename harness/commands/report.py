"""`report DIR [-o FILE]`: an HTML summary of a run directory."""
from __future__ import annotations

import sys
from pathlib import Path

from ..results import load_run


def add_parser(sub):
    p = sub.add_parser("report", help="write an HTML summary report of a run directory")
    p.add_argument("run_dir", metavar="DIR", help="run directory written by `run`")
    p.add_argument("-o", "--output", help="HTML file to write (default DIR/report.html)")
    p.set_defaults(func=main)


def main(args) -> int:
    from reports.summary import render

    meta, rows = load_run(args.run_dir)
    target = Path(args.output) if args.output else Path(args.run_dir) / "report.html"
    target.write_text(render(meta, rows), encoding="utf-8")
    sys.stdout.write(f"report: {target}\n")
    return 0

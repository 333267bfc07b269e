"""`import-msprobe DUMP_DIR OUT_DIR`: convert an msprobe PyTorch dump into replayable records."""
from __future__ import annotations

import sys

HELP = "convert the calls of the five operators in an msprobe PyTorch dump into records for run --replay"


def add_parser(sub):
    p = sub.add_parser("import-msprobe", help=HELP, description=HELP)
    p.add_argument("dump_dir", help="msprobe dump_path (or one rank directory, or one dump.json)")
    p.add_argument("out_dir", help="directory the records go to")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..capture.msprobe import convert

    r = convert(args.dump_dir, args.out_dir)
    w = sys.stdout
    w.write(f"{r['dump_files']} dump.json file(s), {r['entries']} entries: {r['converted']} call(s) converted into "
            f"{args.out_dir}, {r['backward_skipped']} backward entries of these ops skipped, "
            f"{sum(r['other_apis'].values())} entries of other APIs, {len(r['unusable'])} unusable\n")
    for u in r["unusable"][:50]:
        sys.stderr.write(f"  unusable {u['key'] or u['file']}: {u['reason'][:300]}\n")
    if len(r["unusable"]) > 50:
        sys.stderr.write(f"  ... and {len(r['unusable']) - 50} more ({args.out_dir}/import-msprobe.json)\n")
    if r["converted"]:
        w.write(f"replay: python -m harness run --replay {args.out_dir} --backends numpy,torch --out RUN_DIR\n")
    return 1 if r["unusable"] else 0

"""`capture DIR -- CMD ...`: run a program with its torch_npu calls recorded into DIR (harness.capture)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..capture.entry_points import OPS
from ..errors import UsageError

HELP = "run a program and record its calls of the five torch_npu entry points"


def add_parser(sub):
    p = sub.add_parser("capture", help=HELP, description=HELP + ". Example: python -m harness capture caps "
                                                                "--sample 10 -- python serve.py --port 8000")
    p.add_argument("dir", help="directory the records go to (one subdirectory per recorded call)")
    p.add_argument("--ops", default="all", help=f"comma list of operators to record ({', '.join(OPS)}), or all")
    p.add_argument("--max-calls", type=int, default=1000, help="records to write at most, per process (default 1000)")
    p.add_argument("--sample", type=int, default=1, metavar="K", help="look at every K-th call of each entry point")
    p.add_argument("--per-signature", type=int, default=1, metavar="N",
                   help="records per identical signature (dtypes, shapes, attributes), default 1")
    p.add_argument("--max-bytes", type=float, default=2.0, metavar="GIB",
                   help="disk budget in GiB per process (default 2)")
    p.add_argument("cmd", nargs="+", metavar="-- CMD", help="the program and its arguments, after --")
    p.set_defaults(func=main)


def main(args) -> int:
    ops = None if args.ops == "all" else [o.strip() for o in args.ops.split(",") if o.strip()]
    if ops:
        unknown = sorted(set(ops) - set(OPS))
        if unknown:
            raise UsageError(f"--ops: unknown {unknown}; valid: {', '.join(OPS)}, or all")
    settings = {"dir": str(Path(args.dir).resolve()), "ops": ops, "max_calls": args.max_calls,
                "sample": args.sample, "per_signature": args.per_signature,
                "max_bytes": int(args.max_bytes * (1 << 30))}
    if args.sample < 1 or args.per_signature < 1 or args.max_calls < 0 or args.max_bytes < 0:
        raise UsageError("--sample and --per-signature must be >= 1, --max-calls and --max-bytes >= 0")
    Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
    boot = Path(__file__).resolve().parent.parent / "capture" / "boot"
    root = boot.parent.parent.parent   # the checkout holding `harness`, for a child outside this environment
    env = dict(os.environ, OPDIFF_CAPTURE=json.dumps(settings))
    env["PYTHONPATH"] = os.pathsep.join([str(boot), str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        rc = subprocess.call(args.cmd, env=env)
    except OSError as exc:
        raise UsageError(f"cannot run {args.cmd[0]!r}: {exc}") from None
    summaries = sorted(Path(settings["dir"]).glob("capture-*.json"))
    recorded = 0
    for s in summaries:
        try:
            recorded += json.loads(s.read_text()).get("recorded", 0)
        except (OSError, ValueError):
            sys.stderr.write(f"capture: {s}: unreadable summary\n")
    sys.stdout.write(f"capture: {args.cmd[0]} exited {rc}; {recorded} record(s) in {settings['dir']} "
                     f"({len(summaries)} process summary file(s) capture-<pid>.json)\n")
    if not summaries:
        sys.stdout.write("capture: no process imported torch_npu, so nothing was wrapped\n")
    return rc

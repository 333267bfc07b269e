"""`doctor [--backends aclnn,torch_npu] [--ops NAMES] [--no-run]`: what this node has and lacks for the device
backends, as a table with a reason per line, then the smallest positive and one negative case of every op on
every available device backend. Exit 0 only when everything the requested backends need is present (and,
unless --no-run, every smoke verdict is as expected); 1 otherwise; 2 for a usage error."""
from __future__ import annotations

import sys

from .. import doctor, registry
from ..errors import UsageError

HELP = "check CANN, ATB, op symbols, torch/torch_npu, devices and the task queue; run one case per op"


def add_parser(sub):
    p = sub.add_parser("doctor", help=HELP, description=HELP)
    p.add_argument("--backends", default=",".join(doctor.DEVICE_BACKENDS),
                   help="device backends to check (default aclnn,torch_npu; options such as aclnn:1 allowed)")
    p.add_argument("--ops", default="all", help="operators to smoke-run (default all)")
    p.add_argument("--no-run", action="store_true", help="only the environment checks, no cases")
    p.add_argument("--known-issues", metavar="DIR", help="known-issue directory (default cases/known_issues)")
    p.set_defaults(func=main)


def _table(lines, out) -> None:
    w_item = max(len(line.item) for line in lines)
    w_status = max(len(line.status) for line in lines)
    for line in lines:
        out.write(f"{line.item:<{w_item}}  {line.status.upper():<{w_status}}  {line.detail}\n")


def main(args) -> int:
    backends = registry.parse_names(args.backends, "backend", registry.backend_names(), allow_options=True)
    ops = None if args.ops == "all" else registry.parse_names(args.ops, "op", registry.op_names())
    for b in backends:
        registry.backend(b)   # an unknown option is a usage error before anything runs
    out = sys.stdout
    lines = doctor.environment(backends)
    if not args.no_run:
        lines += doctor.smoke(backends, ops, args.known_issues)
    if not lines:
        raise UsageError("nothing to check")
    _table(lines, out)
    ok = doctor.ready(lines, backends)
    blocking = [line for line in lines if line.blocks([b.partition(":")[0] for b in backends])]
    if ok:
        double = any(line.status == "double" for line in lines)
        out.write(f"\nready: {', '.join(backends)}" + (" (on the C double of CANN, not a device)" if double else "")
                  + "\n")
        return 0
    out.write(f"\nnot ready for {', '.join(backends)}: {len(blocking)} line(s) above are MISSING or FAIL\n")
    return 1

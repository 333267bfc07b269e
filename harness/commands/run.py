"""`run`: run a case matrix through backends, print a summary, write a run directory."""
from __future__ import annotations

import fnmatch
import sys
from collections import Counter, defaultdict

from .. import registry
from ..compare import worst_verdict
from ..envinfo import fingerprint
from ..errors import UsageError
from ..progress import Progress
from ..results import RunWriter
from ..runner import run_case
from ..spec import TIERS
from ..timing import TIER_TIMING, TimingConfig

VERDICTS = ("pass", "warn", "fail", "error", "rejected", "skipped")


def add_parser(sub):
    p = sub.add_parser("run", help="run the case matrix and write results")
    p.add_argument("--ops", default="all", help="comma list of operators, or all (default)")
    p.add_argument("--backends", default="numpy,torch",
                   help="comma list of backends (numpy, torch, torch:cuda, torch_npu, aclnn, ...), or all")
    p.add_argument("--tier", default="smoke", choices=TIERS, help="case matrix size (default smoke)")
    p.add_argument("--out", required=True, help="run directory to write (run.json, results.parquet)")
    p.add_argument("--seed", type=int, default=0, help="input data seed (default 0)")
    p.add_argument("--case", action="append", default=[], metavar="ID",
                   help="only cases whose id matches (glob; repeatable)")
    p.add_argument("--no-timing", action="store_true", help="skip latency measurement")
    p.set_defaults(func=main)


def select(args):
    specs = [registry.op(n) for n in registry.parse_names(args.ops, "op", registry.op_names())]
    names = registry.parse_names(args.backends, "backend", registry.backend_names(), allow_options=True)
    backends = [registry.backend(n) for n in names]
    return specs, backends


def main(args) -> int:
    specs, backends = select(args)
    plan = []
    for spec in specs:
        cases = spec.cases(args.tier)
        if args.case:
            cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, pat) or c.id == pat for pat in args.case)]
        plan += [(spec, c) for c in cases]
    if not plan:
        raise UsageError(f"no case matches --case {' '.join(args.case)} in tier {args.tier!r}")
    devices = {b.name: (b.device_name() if b.available() else "unavailable") for b in backends}
    meta = {"command": sys.argv, "ops": [s.name for s in specs], "backends": [b.name for b in backends],
            "tier": args.tier, "seed": args.seed, "env": fingerprint(devices),
            "availability": {b.name: b.available().reason or "available" for b in backends}}
    writer = RunWriter(args.out, meta)
    timing = TimingConfig(enabled=False) if args.no_timing else TIER_TIMING[args.tier]
    progress = Progress(len(plan))
    table: dict = defaultdict(Counter)
    failures = []
    for spec, case in plan:
        res = run_case(spec, case, backends, args.tier, args.seed, timing)
        writer.append(res.rows, res.samples)
        by_backend = defaultdict(list)
        for r in res.rows:
            by_backend[r["backend"]].append(r)
        for bname, rows in by_backend.items():
            table[(spec.name, bname)][worst_verdict(r["verdict"] for r in rows)] += 1
            bad = [r for r in rows if not r["ok"]]
            if bad:
                failures.append(bad[0])
        progress.step(f"{spec.name}/{case.id}", res.ok)
    progress.close()
    summary = {"cases": len(plan), "failed": len(failures)}
    writer.finish(summary)
    _print_summary(table, failures, args.out)
    return 1 if failures else 0


def _print_summary(table, failures, out_dir):
    w = sys.stdout
    head = f"{'op':<30} {'backend':<12}" + "".join(f"{v:>9}" for v in VERDICTS)
    w.write(head + "\n" + "-" * len(head) + "\n")
    for (op, backend), counts in sorted(table.items()):
        w.write(f"{op:<30} {backend:<12}" + "".join(f"{counts.get(v, 0):>9}" for v in VERDICTS) + "\n")
    if failures:
        w.write(f"\n{len(failures)} case x backend result(s) not as expected:\n")
        for r in failures[:20]:
            w.write(f"  {r['op']}/{r['case_id']} [{r['backend']}] {r['verdict']}: {r['reason'][:160]}\n"
                    f"    repro: {r['repro']}\n")
        if len(failures) > 20:
            w.write(f"  ... and {len(failures) - 20} more (see {out_dir}/results.parquet)\n")
    skipped = {r for (op, r), c in table.items() if c.get("skipped") and sum(c.values()) == c.get("skipped")}
    for b in sorted(skipped):
        w.write(f"note: backend {b} skipped every case (see run.json 'availability' for the reason)\n")
    w.write(f"\nresults: {out_dir}/results.parquet\n")

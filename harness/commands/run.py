"""`run`: run a case matrix through backends, print a summary, write a run directory."""
from __future__ import annotations

import fnmatch
import sys
from collections import Counter, defaultdict

from .. import canary, execute, registry, sink
from ..compare import worst_verdict
from ..engine import Engine
from ..envinfo import fingerprint
from ..errors import UsageError
from ..progress import Progress
from ..resume import PLAN_DEFAULTS
from ..spec import TIERS
from ..timing import TIER_TIMING, TimingConfig
from ..verdicts import DISPLAY_ORDER as VERDICTS
from ..verdicts import FAIL_ON



def add_parser(sub):
    p = sub.add_parser("run", help="run the case matrix and write results")
    p.add_argument("--ops", default=PLAN_DEFAULTS["ops"], help="comma list of operators, or all (default)")
    p.add_argument("--backends", default=PLAN_DEFAULTS["backends"],
                   help="comma list of backends (numpy, torch, torch:cuda, torch_npu, aclnn, ...), or all")
    p.add_argument("--tier", default=PLAN_DEFAULTS["tier"], choices=TIERS, help="case matrix size (default smoke)")
    p.add_argument("--out", help="run directory to write (run.json, results.parquet); required unless --resume")
    p.add_argument("--seed", type=int, default=PLAN_DEFAULTS["seed"], help="input data seed (default 0)")
    p.add_argument("--case", action="append", default=[], metavar="ID",
                   help="only cases whose id matches (glob; repeatable)")
    p.add_argument("--no-timing", action="store_true", help="skip latency measurement")
    p.add_argument("--replay", metavar="DIR", help="run the recorded calls under DIR (harness.capture records: "
                                                   "`capture`, `import-msprobe`) instead of the derived matrix")
    p.add_argument("--fail-on", choices=FAIL_ON, default="fail",
                   help="least severe verdict that makes the exit code 1: fail (default) or warn")
    p.add_argument("--golden-store", metavar="DIR",
                   help="read goldens and baselines from this store (harness.golden_store; `golden build` fills "
                        "one), computing and adding any that are missing or bad")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: chunks of cases as Ray tasks across a cluster "
                        "(harness.distributed.ray_engine), rows gathered here")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--ray-resource", action="append", metavar="NAME=N",
                   help="what each Ray task requests (repeatable; default NPU=1 for NPU backends, GPU=1 for "
                        "torch:cuda, CPU=1 otherwise)")
    execute.add_options(p)
    p.add_argument("--cache", choices=("auto", "cold", "hot"), default="auto",
                   help="cache state per latency sample: cold flushes an L2-sized buffer first (default on "
                        "devices: 192 MiB on Ascend, the queried L2 on CUDA), hot does not (default on CPU)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run every case in N separate processes (replicates) and merge them; regression "
                        "verdicts (`compare`) need N >= 3 on each side, e.g. --repeat 5")
    p.add_argument("--interleave-cwd", metavar="DIR",
                   help="with --repeat: alternate each replicate with one run from this other checkout "
                        "(A B A B ...), results in --interleave-out")
    p.add_argument("--interleave-python", metavar="PY", help="interpreter of the other side (another environment)")
    p.add_argument("--interleave-out", metavar="DIR", help="run directory of the other side")
    p.set_defaults(func=main, parser=p)


def select(args):
    specs = [registry.op(n) for n in registry.parse_names(args.ops, "op", registry.op_names())]
    names = registry.parse_names(args.backends, "backend", registry.backend_names(), allow_options=True)
    backends = [registry.backend(n) for n in names]
    return specs, backends


def main(args) -> int:
    if getattr(args, "repeat", 1) > 1:
        from ..repeat import run_repeated

        return run_repeated(args.parser, args)
    old_meta, done, lock = execute.prepare(args)
    with lock:  # the run directory's writer lock (harness.rundir), held until it is finished
        return _run(args, old_meta, done, lock)


def _run(args, old_meta, done, lock) -> int:
    specs, backends = select(args)
    plan, replay_report = [], None
    if getattr(args, "replay", None):  # recorded calls instead of the derived matrix (harness.capture.replay)
        from ..capture import replay

        planned, replay_report = replay.plan(args.replay, specs, args.tier)
        replay.write_report(replay_report, sys.stderr)
        by_spec = defaultdict(list)
        for spec, c in planned:
            by_spec[spec.name].append(c)
    for spec in specs:
        cases = by_spec.get(spec.name, []) if replay_report is not None else spec.cases(args.tier)
        if args.case:
            cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, pat) or c.id == pat for pat in args.case)]
        plan += [(spec, c) for c in cases]
    if not plan:
        where = f"the records under {args.replay}" if replay_report is not None else f"tier {args.tier!r}"
        raise UsageError(f"no case matches --case {' '.join(args.case)} in {where}" if args.case else
                         f"no usable case in {where}")
    plan_total, plan = len(plan), execute.shard_plan(plan, args)
    timing = TimingConfig(enabled=False) if args.no_timing else TIER_TIMING[args.tier].with_cache(args.cache)
    store = _golden_store(args)
    ex = Engine.from_args(backends, args, timing)
    ex.ledger.check_unmatched(specs)
    probed = sink.backend_meta(backends)
    meta = sink.run_meta("cli", [s.name for s in specs], [b.name for b in backends], args.tier, args.seed,
                         execute.plan_args(args), ex.describe(), probed, shard=args.shard, plan_total=plan_total,
                         env=fingerprint(probed["devices"]))  # the driver's: a Ray worker must match it
    if old_meta is not None:  # resuming: same run id and start time, the rows so far stay
        meta = dict(old_meta, status="running", resumed=old_meta.get("resumed", 0) + 1)
    out = sink.RunSink(args.out, meta, lock)
    start_canary = canary.probe() if timing.enabled else None  # machine speed, for `compare` (harness.canary)
    progress = Progress(len(plan))
    table: dict = defaultdict(Counter)
    failures = []
    if done:
        _tally(execute.resume.read_jsonl(out.dir / "results.jsonl"), table, failures, args.fail_on)
    todo = [(s, c) for s, c in plan if (s.name, c.id) not in done]
    try:
        engine = _engine(args, backends, timing, meta, ex)
        results = engine.run(todo) if engine else ((s, c, ex.run_case(s, c)) for s, c in todo)
        for spec, case, res in results:
            out.add(spec.name, case.id, res.rows, res.samples)
            _tally(res.rows, table, failures, args.fail_on)
            progress.step(f"{spec.name}/{case.id}", res.ok)
    finally:
        ex.close()
    progress.close()
    summary = {"cases": len(plan), "failed": len(failures), "known_issues": ex.ledger.summary()}
    if replay_report is not None:
        summary["replay"] = replay_report
    if engine is not None:
        summary["engine"] = engine.summary()
    if store is not None:  # this process's reads; rows say per output where its golden came from
        summary["golden_store"] = store.summary()
    if start_canary is not None:
        summary["canary"] = canary.record(start_canary, canary.probe())
    out.finish(summary)
    _print_summary(table, failures, args.out, meta.get("availability", {}))
    return 1 if failures else 0


def _engine(args, backends, timing, meta, local):
    """None: cases run in this process through `local` (harness.engine); else the distributed engine
    (harness.distributed), whose workers run the same Engine and whose lost cases `local` settles."""
    if getattr(args, "engine", "local") != "ray":
        return None
    from ..distributed.ray_engine import RayEngine

    return RayEngine(backends, args, timing, meta["env"], local)


def _golden_store(args):
    """The run's golden store, named in the environment too so that isolated workers share it."""
    if not getattr(args, "golden_store", None):
        return None
    import os

    from .. import golden_store

    path = os.path.abspath(args.golden_store)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--golden-store {args.golden_store}: exists and is not a directory")
    return golden_store.activate(path)


def _tally(rows, table, failures, fail_on="fail") -> None:
    by_case = defaultdict(list)
    for r in rows:
        by_case[(r["op"], r["case_id"], r["backend"])].append(r)
    for (op, _, bname), brows in by_case.items():
        table[(op, bname)][worst_verdict(r["verdict"] for r in brows)] += 1
    failures += sink.failures(rows, fail_on)


def _print_summary(table, failures, out_dir, availability=None):
    w = sys.stdout
    # columns as wide as their names: pair:<a>~<b> backends and the nondeterministic verdict are long
    bw = max([12] + [len(b) + 1 for (_, b) in table])
    cw = {v: max(9, len(v) + 1) for v in VERDICTS}
    head = f"{'op':<30} {'backend':<{bw}}" + "".join(f"{v:>{cw[v]}}" for v in VERDICTS)
    w.write(head + "\n" + "-" * len(head) + "\n")
    for (op, backend), counts in sorted(table.items()):
        w.write(f"{op:<30} {backend:<{bw}}" + "".join(f"{counts.get(v, 0):>{cw[v]}}" for v in VERDICTS) + "\n")
    if failures:
        w.write(f"\n{len(failures)} case x backend result(s) not as expected:\n")
        for r in failures[:20]:
            w.write(f"  {r['op']}/{r['case_id']} [{r['backend']}] {r['verdict']}: {r['reason'][:160]}\n"
                    f"    repro: {r['repro']}\n")
        if len(failures) > 20:
            w.write(f"  ... and {len(failures) - 20} more (see {out_dir}/results.parquet)\n")
    skipped = {r for (op, r), c in table.items() if c.get("skipped") and sum(c.values()) == c.get("skipped")}
    for b in sorted(skipped):
        reason = (availability or {}).get(b)
        why = f": {reason}" if reason and reason != "available" else " (reasons in results.parquet)"
        w.write(f"note: backend {b} skipped every case{why}\n")
    w.write(f"\nresults: {out_dir}/results.parquet\n")

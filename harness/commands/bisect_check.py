"""`bisect-check`: is this checkout good or bad for one case, against a baseline run directory?

    git bisect start BAD GOOD
    git bisect run python -m harness bisect-check --case CASE_ID --backend NAME \\
        --metric latency --baseline BASE_DIR [--threshold 1.1]

Exit status, as `git bisect run` reads it:
  0    good: latency / baseline latency <= threshold (accuracy: no worse than the baseline)
  1    bad
  125  skip: this checkout cannot be judged (an import or build failure, the case or backend
       does not exist here, the backend is unavailable, no latency could be measured, or the
       machine speed moved: see below)
  128  abort the bisection: the question itself is wrong (baseline missing, unreadable or corrupt
       in any way, or it lacks the case; timing modes differ between baseline and here). Never 1:
       a bad baseline says nothing about the commit under test.

Latency is measured in rounds (fresh inputs and preparation each round; one round = the tier's
timing protocol). When the ratio of the median of round medians to the baseline lands within
`--margin` of the threshold, it measures more rounds (up to `--max-rounds`) before answering.
When the baseline recorded a machine-speed canary (harness.canary), the canary is timed before and
after the rounds too. If the machine's speed moved from the baseline's by more than the threshold's
excess (10% at 1.1), either way, the machine could explain the answer: the step measures again
(canary and rounds, 3 tries in all) and then skips (125), printing the canary ratio.
`python -m harness.commands.bisect_check ...` does the same and turns even a broken harness
import into a skip.
"""
from __future__ import annotations

import argparse
import logging
import sys

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
log = logging.getLogger(__name__)


def add_parser(sub):
    p = sub.add_parser("bisect-check", help="exit 0/1/125 for `git bisect run` on one case",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)
    p.set_defaults(func=main)


def configure(p):
    p.add_argument("--case", required=True, metavar="CASE_ID", help="case id (as in results / `run --case`)")
    p.add_argument("--backend", required=True, metavar="NAME", help="backend to measure (numpy, torch, aclnn, ...)")
    p.add_argument("--metric", choices=("latency", "accuracy"), default="latency")
    p.add_argument("--baseline", required=True, metavar="DIR", help="run directory measured at a good commit")
    p.add_argument("--threshold", type=float, default=None,
                   help="latency: bad above this ratio to the baseline (default 1.1); accuracy: an error "
                        "metric growing past this factor is bad (default 2)")
    p.add_argument("--op", help="operator (default: the one the baseline ran CASE_ID for)")
    p.add_argument("--tier", default="nightly", help="timing protocol (smoke|nightly|full; default nightly)")
    p.add_argument("--seed", type=int, default=None, help="input seed (default: the baseline's)")
    p.add_argument("--rounds", type=int, default=3, help="measurement rounds before deciding (default 3)")
    p.add_argument("--max-rounds", type=int, default=9, help="rounds at most when near the threshold (default 9)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="re-measure while the ratio is within this relative distance of the threshold")


def _say(msg: str) -> None:
    sys.stdout.write(f"bisect-check: {msg}\n")
    sys.stdout.flush()


def main(args) -> int:
    try:
        from ..errors import UsageError
        from ..history import expand, result_rows, run_medians
    except Exception as exc:  # a broken checkout: skip it
        _say(f"skip: harness import failed: {type(exc).__name__}: {exc}")
        return SKIP
    try:
        runs = expand([args.baseline])
        base_rows = [r for r in result_rows(runs) if r["case_id"] == args.case and r["backend"] == args.backend]
        base = run_medians(runs) if args.metric == "latency" else None
    except UsageError as exc:
        _say(f"abort: {exc}")
        return ABORT
    except Exception as exc:  # whatever else is wrong with the baseline, it cannot judge this commit
        _say(f"abort: baseline {args.baseline} unusable: {type(exc).__name__}: {exc}")
        return ABORT
    if not base_rows:
        _say(f"abort: baseline {args.baseline} has no rows for case {args.case} on backend {args.backend}")
        return ABORT
    op = args.op or base_rows[0]["op"]
    try:
        seed = args.seed if args.seed is not None else int(base_rows[0].get("seed") or 0)
    except (TypeError, ValueError):
        _say(f"abort: baseline {args.baseline} records seed {base_rows[0].get('seed')!r}, not an integer")
        return ABORT
    loaded = _load(op, args.case, args.backend)
    if isinstance(loaded, int):
        return loaded
    spec, case, backend = loaded
    if args.metric == "accuracy":
        return _accuracy(spec, case, backend, seed, base_rows, args)
    key = (op, args.case, args.backend)
    if not base.runs.get(key):
        _say(f"abort: baseline has no latency samples for {op}/{args.case} [{args.backend}]")
        return ABORT
    from .. import canary

    base_canary = [v for r in runs for v in canary.run_values(r.meta)]
    return _latency(spec, case, backend, seed, base.runs[key], base.modes.get(key, set()), args, base_canary)


def _load(op, case_id, backend_name):
    """(spec, case, backend) or an exit status. Any import failure here is a broken build: skip."""
    try:
        from .. import registry
        from backends.op_modules import op_module

        spec = registry.op(op)
        for pkg in ("numpy", "torch"):
            op_module(pkg, op)  # surfaces syntax/import errors of the op's references as a skip
    except Exception as exc:
        _say(f"skip: cannot load op {op}: {type(exc).__name__}: {exc}")
        return SKIP
    case = None
    try:
        for tier in ("smoke", "nightly", "full"):
            case = next((c for c in spec.cases(tier) if c.id == case_id), None)
            if case:
                break
    except Exception as exc:
        _say(f"skip: case derivation failed: {type(exc).__name__}: {exc}")
        return SKIP
    if case is None:
        _say(f"skip: no case {case_id} of {op} at this checkout")
        return SKIP
    try:
        backend = registry.backend(backend_name)
        avail = backend.available()
    except Exception as exc:
        _say(f"skip: backend {backend_name}: {type(exc).__name__}: {exc}")
        return SKIP
    if not avail:
        _say(f"skip: backend {backend_name} unavailable: {avail.reason}")
        return SKIP
    return spec, case, backend


def _accuracy(spec, case, backend, seed, base_rows, args) -> int:
    from ..regress import ACC_GROWTH, decide_accuracy
    from ..runner import run_case
    from ..timing import TimingConfig

    res = run_case(spec, case, [backend], args.tier if args.tier in ("smoke", "nightly", "full") else "smoke",
                   seed, TimingConfig(enabled=False))
    rows = [r for r in res.rows if r["backend"] == backend.name]
    rid = base_rows[0].get("run_id")
    v = decide_accuracy([r for r in base_rows if r.get("run_id") == rid], rows, args.threshold or ACC_GROWTH)
    if v.status == "SKIPPED":
        _say(f"skip: {v.reason}")
        return SKIP
    _say(f"accuracy {v.status}: {v.base_verdict} -> {v.new_verdict} {v.reason}".rstrip())
    return BAD if v.regressed else GOOD


CANARY_ATTEMPTS = 3  # fresh canary + rounds tries before skipping: one probe's spread here is 10-20%


def _latency(spec, case, backend, seed, base_medians, base_modes, args, base_canary=()) -> int:
    import numpy as np

    from .. import canary, regress

    threshold = args.threshold or 1.1
    base = float(np.median(base_medians))
    for attempt in range(1, CANARY_ATTEMPTS + 1):
        start_canary = canary.probe() if base_canary else None
        rounds = _rounds(spec, case, backend, seed, base, base_modes, threshold, args)
        if isinstance(rounds, int):
            return rounds
        ratio = float(np.median(rounds)) / base
        verdict = BAD if ratio > threshold else GOOD
        if start_canary is None:
            break
        cratio = regress.canary_ratio(base_canary, [canary.record(start_canary, canary.probe())["us"]])
        # the machine matters when it moved by as much as the change we are asked to detect; either
        # direction, as in regress.apply_canary (load does not move every workload the same way)
        if not regress.canary_moved(cratio, threshold - 1):
            break
        if attempt == CANARY_ATTEMPTS:
            _say(f"skip: {'bad' if verdict else 'good'} at ratio {ratio:.3f} in {attempt} tries, but "
                 f"{regress.canary_reason(cratio)}")
            return SKIP
        _say(f"machine speed moved (canary ratio {cratio:.2f}): measuring again")
    _say(f"{'bad' if verdict else 'good'}: {backend.name} {spec.name}/{case.id} median {np.median(rounds):.1f} us "
         f"over {len(rounds)} rounds, baseline {base:.1f} us, ratio {ratio:.3f} vs threshold {threshold}"
         + (" (near the threshold: re-measured)" if len(rounds) > args.rounds else ""))
    return verdict


def _rounds(spec, case, backend, seed, base, base_modes, threshold, args):
    """Round medians (us), or an exit status."""
    import numpy as np

    from ..runner import run_case
    from ..timing import TIER_TIMING

    timing = TIER_TIMING.get(args.tier, TIER_TIMING["nightly"])
    rounds: list[float] = []
    while True:
        res = run_case(spec, case, [backend], "smoke", seed, timing)
        row = next((r for r in res.rows if r.get("latency_median_us")), None)
        if row is None:
            why = res.rows[0]["reason"] if res.rows else "no result"
            _say(f"skip: no latency measured ({res.rows[0]['verdict'] if res.rows else '?'}: {why})")
            return SKIP
        if base_modes and row.get("timing_mode") not in base_modes:
            _say(f"abort: timing mode {row.get('timing_mode')} here, {sorted(base_modes)} in the baseline")
            return ABORT
        rounds.append(float(row["latency_median_us"]))
        ratio = float(np.median(rounds)) / base
        near = abs(ratio / threshold - 1) <= args.margin
        if len(rounds) >= args.rounds and (not near or len(rounds) >= args.max_rounds):
            return rounds


if __name__ == "__main__":  # python -m harness.commands.bisect_check: skips even when harness.cli is broken
    parser = argparse.ArgumentParser(prog="python -m harness.commands.bisect_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except SystemExit:
        raise
    except Exception as exc:  # anything unexpected in a checkout under test: skip rather than call it bad
        _say(f"skip: {type(exc).__name__}: {exc}")
        sys.exit(SKIP)

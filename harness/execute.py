"""`run`'s options beyond the plan: isolation, timeouts, known issues, shards, resume.

    add_options(parser)          --isolate/--no-isolate, --timeout, --resume, --shard, --known-issues
    prepare(args)                validates them and locks the run directory (harness.rundir); with
                                 --resume, rebuilds args from DIR/run.json

The cases themselves run through harness.engine.Engine.from_args(backends, args, timing).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from . import resume, rundir, shard
from .engine import DEFAULT_ISOLATED_TIMEOUT_S, check_timeout, isolation_policy
from .errors import UsageError

log = logging.getLogger(__name__)


def add_options(p) -> None:
    # two plain flags rather than BooleanOptionalAction: `run --repeat` re-emits store_true flags as they are
    p.add_argument("--isolate", action="store_true",
                   help="run every backend in a worker process (a crash or hang becomes a verdict); default: only "
                        "backends that may crash the process (torch_npu, aclnn), numpy/torch in-process")
    p.add_argument("--no-isolate", action="store_true", help="run every backend in-process")
    p.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                   help=f"seconds one case may take on an isolated backend before it is killed and recorded as "
                        f"`timeout` (default {DEFAULT_ISOLATED_TIMEOUT_S:g}); implies --isolate for all backends")
    p.add_argument("--resume", metavar="DIR", help="finish an interrupted run in DIR (plan read from DIR/run.json)")
    p.add_argument("--replace", action="store_true",
                   help="if --out already holds a run, move it aside to DIR.prev-<its run id> first (nothing is deleted)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (1-based, deterministic, cost-balanced)")
    p.add_argument("--determinism", type=_launches, default=None, metavar="N",
                   help="launch every positive case N times on the same inputs and compare the outputs bitwise "
                        "(verdict nondeterministic, rows determinism:<backend>); default 2 on device backends in the "
                        "nightly tier, 1 (off) otherwise")
    p.add_argument("--known-issues", metavar="DIR",
                   help="directory of <backend>.toml known-issue files (default cases/known_issues)")


def _launches(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of launches") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 (no check) or more launches")
    return v


def positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return v


def prepare(args) -> tuple[dict | None, set, rundir.RunLock]:
    """Validate run options and lock the run directory. Returns (meta of the run being resumed or
    None, completed (op, case_id), the held lock: the caller releases it when the run is written)."""
    old_meta, done = None, set()
    if args.isolate is not None:  # normalise the two flags to one tri-state: True / False / None (default)
        args.isolate = isolation_policy(args.isolate, getattr(args, "no_isolate", False))
    if args.resume:
        given = [k for k, d in resume.PLAN_DEFAULTS.items() if k != "timeout" and getattr(args, k, d) != d]
        if given:
            raise UsageError(f"--resume rebuilds the plan from {args.resume}/run.json; drop "
                             + ", ".join("--" + k.replace("_", "-") for k in given))
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise UsageError(f"--resume {args.resume} writes into that directory; drop --out {args.out}")
        lock = rundir.lock_existing(args.resume)  # before reading: the prune rewrites the files
        try:
            old_meta = resume.read_meta(args.resume)
            for k, v in old_meta["plan_args"].items():
                if k in resume.PLAN_KEYS and not (k == "timeout" and args.timeout is not None):
                    setattr(args, k, v)
            args.out = args.resume
            _check_options(args)
            done, dropped = resume.prune(args.resume)
        except BaseException:
            lock.release()
            raise
        log.warning("resuming %s: %d case(s) already done, %d row(s) of unfinished cases dropped",
                    args.resume, len(done), dropped)
        return old_meta, done, lock
    if not args.out:
        raise UsageError("give --out DIR (a new run directory) or --resume DIR (an interrupted run)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    _check_options(args)
    if (out / "run.json").exists() and getattr(args, "replace", False):
        _move_aside(out)
    return old_meta, done, rundir.claim_new(out)


def _check_options(args) -> None:
    if args.shard:
        shard.parse(args.shard)
    check_timeout(args.isolate, args.timeout)


def _move_aside(out: Path) -> None:
    """Rename an existing run directory to DIR.prev-<run id> (a counter is added if that exists too)."""
    import json

    try:
        run_id = str(json.loads((out / "run.json").read_text()).get("run_id", "unknown"))
    except (OSError, ValueError, AttributeError):
        run_id = "unknown"
    target = out.with_name(f"{out.name}.prev-{run_id}")
    n = 1
    while target.exists():
        target = out.with_name(f"{out.name}.prev-{run_id}.{n}")
        n += 1
    with rundir.RunLock(out):  # never move a run that another process is still writing
        out.rename(target)
    log.warning("--replace: moved the previous run in %s to %s", out, target)


def plan_args(args) -> dict:
    return {k: getattr(args, k, None) for k in resume.PLAN_KEYS}


def shard_plan(plan: list, args) -> list:
    if not args.shard:
        return plan
    i, n = shard.parse(args.shard)
    return shard.select(plan, i, n)

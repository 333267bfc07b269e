"""What `run` does per case beyond the plain runner: isolation, timeouts, known issues, shards, resume.

    add_options(parser)          --isolate/--no-isolate, --timeout, --resume, --shard, --known-issues
    prepare(args)                validates them and locks the run directory (harness.rundir); with
                                 --resume, rebuilds args from DIR/run.json
    Executor(backends, args)     run_case(spec, case) -> CaseResult with the ledger applied
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from . import ledger as ledger_mod
from . import resume, rundir, shard
from .errors import UsageError
from .runner import CaseResult, run_case

log = logging.getLogger(__name__)

#: per-case limit of an isolated backend when --timeout is not given: a hung kernel must not
#: stall a nightly matrix for hours; generous enough for a cold first launch (op compilation).
DEFAULT_ISOLATED_TIMEOUT_S = 600.0
# option -> its default, to tell which plan options were given alongside --resume
PLAN_DEFAULTS = {"ops": "all", "backends": "numpy,torch", "tier": "smoke", "seed": 0, "case": [],
                 "no_timing": False, "shard": None, "isolate": None, "known_issues": None, "replay": None,
                 "determinism": None}


def add_options(p) -> None:
    # two plain flags rather than BooleanOptionalAction: `run --repeat` re-emits store_true flags as they are
    p.add_argument("--isolate", action="store_true",
                   help="run every backend in a worker process (a crash or hang becomes a verdict); default: only "
                        "backends that may crash the process (torch_npu, aclnn), numpy/torch in-process")
    p.add_argument("--no-isolate", action="store_true", help="run every backend in-process")
    p.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
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


def _positive_float(text: str) -> float:
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
    if args.isolate is True and getattr(args, "no_isolate", False):
        raise UsageError("--isolate and --no-isolate contradict each other; give one")
    if args.isolate is not None:  # normalise the two flags to one tri-state: True / False / None (default)
        args.isolate = True if args.isolate else (False if getattr(args, "no_isolate", False) else None)
    if args.resume:
        given = [k for k, d in PLAN_DEFAULTS.items() if getattr(args, k, d) != d]
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
    if args.isolate is False and args.timeout is not None:
        raise UsageError("--timeout needs isolated workers; drop --no-isolate or --timeout")


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


class Executor:
    """Runs one case on every backend: in-process, or in an isolated worker, with known issues applied."""

    def __init__(self, specs, backends, args, timing):
        from .devcheck import Checks
        from .isolate import IsolatedRunner

        self.tier, self.seed, self.timing = args.tier, args.seed, timing
        self.checks = Checks(determinism=getattr(args, "determinism", None))
        self.backends = list(backends)
        self.ledger = ledger_mod.load(args.known_issues, [b.name for b in backends])
        self.ledger.check_unmatched(specs)
        isolate_all = args.isolate is True or (args.isolate is None and args.timeout is not None)
        self.isolated = [b for b in backends if args.isolate is not False and b.available()
                         and (isolate_all or getattr(b, "may_crash", False))]
        iso_names = {b.name for b in self.isolated}
        self.order = [b.name for b in backends]
        self.inproc = [b for b in backends if b.name not in iso_names]
        self.pool = None
        if self.isolated:
            timeout = args.timeout if args.timeout is not None else DEFAULT_ISOLATED_TIMEOUT_S
            self.pool = IsolatedRunner(self.isolated, args.tier, args.seed, timing, timeout, checks=self.checks)

    def describe(self) -> dict:
        return {"isolated_backends": [b.name for b in self.isolated],
                "timeout_s": self.pool.timeout if self.pool else None}

    def run_case(self, spec, case) -> CaseResult:
        result = CaseResult()
        quarantined = {}
        for b in self.inproc + self.isolated:
            e = self.ledger.quarantine(spec, case, b.name)
            if e is not None:
                quarantined[b.name] = self.ledger.quarantine_rows(spec, case, b.name, e, self.tier, self.seed)
        parts = {}
        inproc = [b for b in self.inproc if b.name not in quarantined]
        if inproc:
            r = run_case(spec, case, inproc, self.tier, self.seed, self.timing, checks=self.checks)
            result.samples += r.samples
            for row in r.rows:
                parts.setdefault(row["backend"], []).append(row)
        isolated = [b for b in self.isolated if b.name not in quarantined]
        if isolated:
            self.pool.backends = isolated
            r = self.pool.run_case(spec, case)
            result.samples += r.samples
            for row in r.rows:
                parts.setdefault(row["backend"], []).append(row)
        parts.update(quarantined)
        for name in self.order:  # rows in the order the backends were given
            result.rows += parts.pop(name, [])
        for rows in parts.values():
            result.rows += rows
        result.rows += self._split_pairs(spec, case, inproc, isolated, quarantined)
        self.ledger.apply(spec, case, result.rows)
        return result

    def _split_pairs(self, spec, case, inproc, isolated, quarantined) -> list[dict]:
        """Skipped rows, with the reason, for front-end pairs whose two sides were not run in one process
        (pairs compare outputs held in memory, harness.devcheck) or of which one side was quarantined."""
        from .devcheck import pair_groups, pair_rows

        if not self.checks.pairs or case.negative:
            return []
        where = {b.name: "in-process" for b in inproc}
        where.update({b.name: "in an isolated worker" for b in isolated})
        rows = []
        for a, b in pair_groups(self.backends):
            if a.name in where and b.name in where and where[a.name] == where[b.name]:
                continue   # compared where both ran
            why = {}
            for x in (a, b):
                if not x.available():
                    why[x.name] = f"unavailable: {x.available().reason}"
                elif x.name in quarantined:
                    why[x.name] = "quarantined by a known issue"
                elif x.name in where:
                    why[x.name] = (f"ran {where[x.name]}, its pair elsewhere: run both with --isolate or "
                                   f"--no-isolate to compare them")
                else:
                    why[x.name] = "not run"
            rows += pair_rows(spec, case, [a, b], {}, self.tier, self.seed, why)
        return rows

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

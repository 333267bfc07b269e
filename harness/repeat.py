"""`run --repeat N`: process-level replicates.

Each replicate is a separate `python -m harness run` process writing OUT/replicates/rK; the parent
merges them into OUT: results rows from the first replicate with the latency columns replaced by the
median over replicate medians (and `replicate_medians_us` listing them), every sample kept with its
replicate's run_id. Regression verdicts (harness.regress) treat one replicate as one observation.

Odd replicates run the backends in reverse order, so that two backends compared inside one run see
the same drift. `--interleave-cwd DIR` (another checkout, or the same one with `--interleave-python`
naming another environment's interpreter) runs the other side's replicate right after each of
ours into `--interleave-out`: A B A B ..., the design benchmarking.md section 5 recommends.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import canary, rundir
from .errors import UsageError
from .results import RunWriter, load_run, read_jsonl

log = logging.getLogger(__name__)

OWN_OPTIONS = ("repeat", "interleave_cwd", "interleave_python", "interleave_out", "out")


def child_argv(parser: argparse.ArgumentParser, args, out: str, reverse_backends: bool) -> list[str]:
    """The `run` arguments of `args` (everything but the repeat options) for one replicate."""
    argv = ["run", "--out", out]
    for action in parser._actions:  # argparse has no public inverse of parse_args
        dest = action.dest
        if dest in OWN_OPTIONS or dest == "help" or not action.option_strings:
            continue
        value = getattr(args, dest, None)
        if value is None or value == action.default:
            continue
        opt = action.option_strings[-1]
        if dest == "backends" and reverse_backends:
            value = ",".join(reversed(value.split(",")))
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(opt)
        elif isinstance(action, argparse._AppendAction):
            for v in value:
                argv += [opt, str(v)]
        else:
            argv += [opt, str(value)]
    if reverse_backends and "--backends" not in argv:
        default = next(a.default for a in parser._actions if a.dest == "backends")
        argv += ["--backends", ",".join(reversed(default.split(",")))]
    return argv


def run_repeated(parser, args) -> int:
    n = int(args.repeat)
    if n < 2:
        raise UsageError("--repeat needs N >= 2 (one run is a plain `run`)")
    sides = [(Path(args.out), None, sys.executable)]
    if args.interleave_cwd:
        if not args.interleave_out:
            raise UsageError("--interleave-cwd needs --interleave-out DIR for the other side's results")
        sides.append((Path(args.interleave_out), args.interleave_cwd, args.interleave_python or sys.executable))
    # each side's directory is ours from the first replicate to the merge; the replicate processes
    # lock their own OUT/replicates/rK
    locks = []
    try:
        for out, _, _ in sides:
            locks.append(rundir.claim_new(out, "--out" if out == Path(args.out) else "--interleave-out"))
        return _run_sides(parser, args, n, sides, locks)
    finally:
        for lock in locks:
            lock.release()


def _run_sides(parser, args, n, sides, locks) -> int:
    worst = 0
    for k in range(n):
        for out, cwd, python in sides:
            rep = out / "replicates" / f"r{k}"
            argv = child_argv(parser, args, str(rep.resolve()), reverse_backends=bool(k % 2))
            log.info("replicate %d/%d: %s", k + 1, n, " ".join(argv))
            env = dict(os.environ)
            if cwd:
                env["PYTHONPATH"] = os.pathsep.join(x for x in (str(Path(cwd).resolve()), env.get("PYTHONPATH")) if x)
            proc = subprocess.run([python, "-m", "harness", *argv], cwd=cwd, env=env)
            if proc.returncode not in (0, 1):
                log.warning("replicate %s exited %d", rep, proc.returncode)
            worst = max(worst, proc.returncode)
    for (out, _, _), lock in zip(sides, locks):
        merge_replicates(out, [out / "replicates" / f"r{k}" for k in range(n)], lock)
    sys.stdout.write(f"{n} replicates merged into {', '.join(str(o) for o, _, _ in sides)}\n")
    return worst


LATENCY_COLUMNS = ("latency_median_us", "latency_iqr_us", "latency_p20_us", "latency_p80_us", "latency_min_us")


def merge_replicates(out: Path, reps: list[Path], lock: rundir.RunLock | None = None) -> None:
    """Merge replicate run directories into `out` (see the module docstring). `lock`: out's held
    lock; without one, `out` must be new or empty but for its replicates/ folder."""
    reps = [r for r in reps if (r / "run.json").is_file()]
    if not reps:
        raise UsageError(f"no replicate finished under {out}/replicates")
    metas, all_rows = [], []
    for r in reps:
        meta, rows = load_run(r)
        metas.append(meta)
        all_rows.append(rows)
    per_key = defaultdict(list)
    for rows in all_rows:
        seen = set()
        for row in rows:
            key = (row["op"], row["case_id"], row["backend"])
            if key not in seen and row.get("latency_median_us") is not None:
                per_key[key].append(float(row["latency_median_us"]))
                seen.add(key)
    meta = {k: v for k, v in metas[0].items() if k not in ("run_id", "started", "finished", "status", "canary")}
    meta.update(repeat=len(reps), replicates=[m.get("run_id") for m in metas],
                replicate_dirs=[str(r) for r in reps])
    merged_canary = canary.merged([m.get("canary") for m in metas])  # one record per replicate process
    if merged_canary:
        meta["canary"] = merged_canary
    own = lock is None
    lock = rundir.claim_new(out, allow=("replicates",)) if own else lock
    try:
        _write_merged(out, meta, lock, all_rows, per_key, reps, metas)
    finally:
        if own:
            lock.release()


def _write_merged(out, meta, lock, all_rows, per_key, reps, metas) -> None:
    writer = RunWriter(out, meta, lock=lock)
    merged = []
    for row in all_rows[0]:
        row = dict(row)
        row.pop("run_id", None)
        meds = per_key.get((row["op"], row["case_id"], row["backend"]))
        if meds:
            med = float(np.median(meds))
            scale = med / row["latency_median_us"] if row.get("latency_median_us") else 1.0
            for c in LATENCY_COLUMNS:
                if row.get(c) is not None:
                    row[c] = row[c] * scale if c != "latency_median_us" else med
            for c in ("gbps", "tflops", "pct_peak_bw", "pct_peak_flops"):
                if row.get(c):
                    row[c] = row[c] / scale
            row["replicate_medians_us"] = meds
            row["n_replicates"] = len(meds)
        merged.append(row)
    samples = []
    for r, m in zip(reps, metas):
        for s in _samples(r):
            s.setdefault("run_id", m.get("run_id"))
            samples.append(s)
    writer.append(merged, samples)
    failed = sum(1 for row in merged if not row.get("ok", True))
    writer.finish({"cases": metas[0].get("cases"), "failed": metas[0].get("failed", failed)})


def _samples(run_dir: Path) -> list[dict]:
    pq_path = run_dir / "samples.parquet"
    if pq_path.is_file():
        import pyarrow.parquet as pq

        return pq.read_table(pq_path).to_pylist()
    return read_jsonl(run_dir / "samples.jsonl")

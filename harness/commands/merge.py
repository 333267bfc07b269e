"""`merge DIR... --out DIR`: combine run directories (shards of one matrix, from many nodes) into one run.

Refuses, with a message naming the directory and the difference, to merge runs of different code
or environments (commit, python/numpy/torch/torch_npu/CANN versions, device names), of different
plans (ops, backends, tier, seed, case selection), unfinished or corrupt runs, overlapping rows,
duplicate rows (across inputs or inside one), and an incomplete set of shards (unless --partial).
The output directory is claimed and locked like `run --out` (harness.rundir) and written atomically.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .. import rundir
from ..errors import UsageError
from ..results import consolidate, load_run, new_run_id, read_jsonl, read_rows

# env fields that must agree: the code and the software/hardware that produced the numbers
ENV_KEYS = ("opdiff_commit", "python", "numpy", "ml_dtypes", "torch", "torch_npu", "cann", "devices")
# plan fields that must agree (shard, isolation and timeout may differ between nodes)
PLAN_KEYS = ("ops", "backends", "tier", "seed", "case", "no_timing", "known_issues")
ROW_KEY = ("op", "case_id", "backend", "output")


def add_parser(sub):
    p = sub.add_parser("merge", help="merge run directories (e.g. --shard i/n runs from several nodes) into one")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="finished run directories")
    p.add_argument("--out", required=True, help="new run directory to write")
    p.add_argument("--partial", action="store_true", help="allow merging an incomplete set of shards")
    p.set_defaults(func=main)


def read_run(d: Path) -> tuple[dict, list[dict], list[dict]]:
    """(meta, rows, samples) of a finished run directory, checked for truncation and corruption."""
    jsonl = d / "results.jsonl"
    # first, as the more precise diagnosis: a cut last line also makes the row counts disagree
    if jsonl.is_file() and jsonl.stat().st_size and not jsonl.read_bytes().endswith(b"\n"):
        raise UsageError(f"{jsonl}: truncated (last line incomplete) in a finished run")
    meta, rows = load_run(d)
    if meta.get("status") != "finished":
        raise UsageError(f"{d}: run not finished (status {meta.get('status')!r}); "
                         f"finish it with `python -m harness run --resume {d}` first")
    if jsonl.is_file():
        n = len(read_jsonl(jsonl))
        if n != len(rows):
            raise UsageError(f"{d}: results.parquet holds {len(rows)} rows but results.jsonl {n}; "
                             f"one of them is truncated or corrupt")
    if not rows:
        raise UsageError(f"{d}: holds no result rows")
    for i, r in enumerate(rows, 1):
        missing = [k for k in ROW_KEY if r.get(k) is None]
        if missing:
            raise UsageError(f"{d}: result row {i} lacks {', '.join(missing)}")
    return meta, rows, read_rows(d, "samples")


def _field(meta: dict, section: str, key: str):
    return (meta.get(section) or {}).get(key)


def check_compatible(runs: list[tuple[Path, dict]]) -> None:
    (d0, m0), rest = runs[0], runs[1:]
    for d, m in rest:
        for section, keys in (("env", ENV_KEYS), ("plan_args", PLAN_KEYS)):
            for k in keys:
                a, b = _field(m0, section, k), _field(m, section, k)
                if a != b:
                    what = "code or environment" if section == "env" else "case plan"
                    raise UsageError(f"refusing to merge: {d} differs from {d0} in {section}.{k}: {b!r} vs {a!r} "
                                     f"(different {what}); rerun both sides with the same one")
        for k in ("tier", "seed"):
            if m.get(k) != m0.get(k):
                raise UsageError(f"refusing to merge: {d} differs from {d0} in {k}: {m.get(k)!r} vs {m0.get(k)!r}")


def check_shards(runs: list[tuple[Path, dict]], partial: bool) -> None:
    shards = [(d, m.get("shard")) for d, m in runs]
    given = [(d, s) for d, s in shards if s]
    if not given:
        return
    if len(given) != len(shards):
        d = next(d for d, s in shards if not s)
        raise UsageError(f"refusing to merge: {d} is a whole run, the others are shards")
    from ..shard import parse

    seen: dict[int, Path] = {}
    n0 = None
    for d, s in given:
        i, n = parse(s)
        if n0 is not None and n != n0:
            raise UsageError(f"refusing to merge: {d} is shard {s}, but others split into {n0}")
        n0 = n
        if i in seen:
            raise UsageError(f"refusing to merge: {seen[i]} and {d} are both shard {i}/{n}")
        seen[i] = d
    missing = sorted(set(range(1, n0 + 1)) - set(seen))
    if missing and not partial:
        raise UsageError(f"refusing to merge: shard(s) {', '.join(f'{i}/{n0}' for i in missing)} missing "
                         f"(pass --partial to merge what is there)")


def merge(dirs: list[str], out: str, partial: bool = False) -> tuple[dict, int]:
    paths = [Path(d) for d in dirs]
    if len({p.resolve() for p in paths}) != len(paths):
        raise UsageError("the same run directory is given twice")
    loaded = [(p, *read_run(p)) for p in paths]
    runs = [(p, m) for p, m, _, _ in loaded]
    check_compatible(runs)
    check_shards(runs, partial)
    owner: dict[tuple, tuple[Path, int]] = {}
    for p, _, rows, _ in loaded:
        for i, r in enumerate(rows, 1):
            k = tuple(r[x] for x in ROW_KEY)
            if k in owner:
                q, j = owner[k]
                if q == p:
                    raise UsageError(f"refusing to merge: {p} holds {k[0]}/{k[1]} [{k[2]}] {k[3]} twice (result rows "
                                     f"{j} and {i}); the run directory is corrupt")
                raise UsageError(f"refusing to merge: {q} and {p} both hold {k[0]}/{k[1]} [{k[2]}] "
                                 f"{k[3]} (overlapping runs)")
            owner[k] = (p, i)
    with rundir.claim_new(out):
        return _write(Path(out), loaded, runs)


def _write(o: Path, loaded, runs) -> tuple[dict, int]:
    run_id = new_run_id()
    first = runs[0][1]
    meta = {k: first.get(k) for k in ("ops", "backends", "tier", "seed", "plan_args", "availability") if k in first}
    if isinstance(meta.get("plan_args"), dict):
        meta["plan_args"] = dict(meta["plan_args"], shard=None)
    meta.update(run_id=run_id, command=sys.argv, status="finished", env=dict(first.get("env") or {}),
                started=min(str(m.get("started", "")) for _, m in runs),
                finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                cases=sum(int(m.get("cases") or 0) for _, m in runs),
                failed=sum(int(m.get("failed") or 0) for _, m in runs),
                known_issues=[e for _, m in runs for e in (m.get("known_issues") or [])],
                merged_from=[{"dir": str(p), "run_id": m.get("run_id"), "shard": m.get("shard"),
                              "host": _field(m, "env", "host")} for p, m in runs])
    meta["env"]["host"] = sorted({str(_field(m, "env", "host")) for _, m in runs})
    rows = [json.dumps(dict(r, run_id=run_id), default=str) + "\n" for _, _, rs, _ in loaded for r in rs]
    samples = [json.dumps(dict(s, run_id=run_id), default=str) + "\n" for _, _, _, ss in loaded for s in ss]
    rundir.atomic_write(o / "results.jsonl", "".join(rows))
    rundir.atomic_write(o / "samples.jsonl", "".join(samples))
    consolidate(o)
    rundir.atomic_write(o / "run.json", json.dumps(meta, indent=2, sort_keys=True, default=str))
    return meta, len(rows)


def main(args) -> int:
    meta, n = merge(args.dirs, args.out, args.partial)
    sys.stdout.write(f"merged {len(args.dirs)} run(s), {n} rows, {meta['failed']} case(s) failed: {args.out}\n")
    return 1 if meta["failed"] else 0

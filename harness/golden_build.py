"""Fill a golden store (harness.golden_store) for a tier, on any CPU machine, in parallel.

    build(specs, tier, seed, store, shard=None, case_globs=()) -> dict   one process, one shard
    build_parallel(argv_tail, jobs) -> dict                              `jobs` shard processes

The parallel form starts `python -m harness golden build ... --shard i/N --json` per core rather
than a multiprocessing pool: each shard is an ordinary process (no pickled work items), the store's
atomic renames make concurrent writers safe, and the cost-balanced shard split (harness.shard)
evens out the long goldens. Each process prints one JSON summary line; the parent adds them up.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter

from . import golden_store, input_store, shard
from .runner import BASELINE_KINDS, References

log = logging.getLogger(__name__)


def plan(specs, tier, case_globs=()) -> list:
    out = []
    for spec in specs:
        for c in spec.cases(tier):
            if c.negative:  # a negative case is never compared, so it has no golden
                continue
            if case_globs and not any(fnmatch.fnmatchcase(c.id, g) for g in case_globs):
                continue
            out.append((spec, c))
    return out


def _needs_baseline(spec, case, inputs) -> bool:
    return any(r.rule.kind in BASELINE_KINDS for out in spec.outputs
               for r in spec.output_regions(case.params, inputs, out))


def build(specs, tier: str, seed: int, store: golden_store.GoldenStore, shard_text: str | None = None,
          case_globs=()) -> dict:
    entries = plan(specs, tier, case_globs)
    if shard_text:
        entries = shard.select(entries, *shard.parse(shard_text))
    counts, failures = Counter(), []
    t0 = time.perf_counter()
    for spec, case in entries:
        try:
            inputs, source = input_store.through(spec, case, seed, store)
            counts[f"inputs_{source}"] += 1
            refs = References(spec, case, inputs, seed, store)
            refs.golden()
            counts[f"golden_{refs.golden_source}"] += 1
            if _needs_baseline(spec, case, inputs):
                if refs.baseline() is None:
                    counts["baseline_unavailable"] += 1
                else:
                    counts[f"baseline_{refs.baseline_source}"] += 1
        except Exception as exc:  # one case's golden failing must not stop the others; each is listed
            counts["failed"] += 1
            failures.append({"op": spec.name, "case_id": case.id, "error": f"{type(exc).__name__}: {exc}"[:300]})
            log.warning("golden build: %s/%s failed: %s", spec.name, case.id, exc)
    return {"cases": len(entries), "counts": dict(counts), "store": store.summary(), "failures": failures,
            "wall_s": time.perf_counter() - t0}


def build_parallel(argv_tail: list[str], jobs: int) -> dict:
    """Run `jobs` shard processes of `golden build` with `argv_tail` (options other than --jobs/--shard)."""
    env = dict(os.environ)
    env.pop(golden_store.ENV, None)  # the shards name the store on their command line
    procs = []
    for i in range(1, jobs + 1):
        cmd = [sys.executable, "-m", "harness", "golden", "build", *argv_tail, "--shard", f"{i}/{jobs}", "--json",
               "--jobs", "1"]
        procs.append((i, subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)))
    total = {"cases": 0, "counts": Counter(), "store": Counter(), "failures": [], "shards_failed": []}
    for i, p in procs:
        out, _ = p.communicate()
        line = out.strip().splitlines()[-1] if out.strip() else ""
        try:
            part = json.loads(line)
        except json.JSONDecodeError:
            total["shards_failed"].append({"shard": f"{i}/{jobs}", "exit": p.returncode, "output": out[-300:]})
            continue
        total["cases"] += part["cases"]
        total["counts"].update(part["counts"])
        total["store"].update({k: v for k, v in part["store"].items() if isinstance(v, int)})
        total["failures"] += part["failures"]
        if p.returncode not in (0, 1):
            total["shards_failed"].append({"shard": f"{i}/{jobs}", "exit": p.returncode, "output": ""})
    total["counts"], total["store"] = dict(total["counts"]), dict(total["store"])
    return total


def verify(root) -> dict:
    """Check every entry of a store: ok, or bad with the reason (harness.golden_store.read_entry);
    `kinds` counts the good ones by kind (golden, baseline, inputs)."""
    ok, bad, kinds = 0, [], Counter()
    for p in golden_store.entries(root):
        try:
            stored_key, _ = golden_store.read_entry_and_key(p, digest=p.stem)
            kinds[str(stored_key.get("kind"))] += 1
            ok += 1
        except golden_store.BadEntry as exc:
            bad.append({"file": str(p), "problem": str(exc)})
    return {"ok": ok, "bad": bad, "kinds": dict(sorted(kinds.items()))}

"""`--shard i/n`: a deterministic split of a case plan across nodes.

Every node computes the same plan (same code, tier, seed, selection), so each can take its share
without talking to the others. Cases are balanced by estimated cost when the operator has a cost
model (OpSpec.cost: bytes moved and flops -> roofline time), by count otherwise: longest first,
each to the least-loaded shard (LPT), ties broken by plan position. Within a shard the plan order
is kept.
"""
from __future__ import annotations

import heapq
import re

from .errors import UsageError

# A nominal roofline; only ratios between cases matter for balancing, not the absolute figures.
NOMINAL_BYTES_PER_S = 1.8e12   # peak GM bandwidth example of the triton-ascend guide (benchmarking.md)
NOMINAL_FLOPS_PER_S = 3.0e14   # fp16 matrix peak, order of magnitude only
# Fixed per-case overhead (launch, input build, golden, comparison): keeps tiny and negative
# cases from counting as free, so a shard of many small cases is not overloaded.
CASE_OVERHEAD_S = 2e-3


def parse(text: str) -> tuple[int, int]:
    """'i/n' with 1 <= i <= n -> (i, n); 'auto': this Slurm array task's share (slurm_shard); anything
    else is a UsageError naming the expected form."""
    if (text or "").strip() == "auto":
        return slurm_shard()
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise UsageError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 2/4")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {text!r}: shard index must be between 1 and {max(n, 1)} (I/N, 1-based)")
    return i, n


def slurm_shard(env=None) -> tuple[int, int]:
    """(i, n) of a Slurm job array task: SLURM_ARRAY_TASK_ID counted from SLURM_ARRAY_TASK_MIN (an
    array may start at 0 or 1), of SLURM_ARRAY_TASK_COUNT tasks. Arrays with a step (--array=0-9:2)
    or gaps are refused: their ids do not number the shards 1..n."""
    import os

    env = os.environ if env is None else env
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_COUNT")
    missing = [k for k in names if not env.get(k)]
    if missing:
        raise UsageError(f"--shard auto reads a Slurm job array; {', '.join(missing)} not set (not an array task?)")
    try:
        tid, lo, hi, count = (int(env[k]) for k in names)
    except ValueError:
        raise UsageError("--shard auto: " + ", ".join(f"{k}={env[k]!r}" for k in names) + " are not integers") \
            from None
    if hi - lo + 1 != count or not lo <= tid <= hi:
        raise UsageError(f"--shard auto: array ids {lo}..{hi} with {count} task(s) (id {tid}) do not number the "
                         f"shards 1..{count}; use --array=A-B without a step, or give --shard I/N")
    return tid - lo + 1, count


def case_cost(spec, case) -> float:
    """Estimated seconds of one case: overhead + roofline time of its cost model (0 if none)."""
    if case.negative or spec.cost is None:
        return CASE_OVERHEAD_S
    try:
        nbytes, flops = spec.cost(case.params)
    except Exception:  # a cost model is advisory; a case it cannot price counts as overhead only
        return CASE_OVERHEAD_S
    return CASE_OVERHEAD_S + max((nbytes or 0) / NOMINAL_BYTES_PER_S, (flops or 0) / NOMINAL_FLOPS_PER_S)


def assign(plan: list, n: int, weight=None) -> list[int]:
    """Shard index (0-based) of every plan entry; `weight(entry) -> float` defaults to case_cost."""
    weight = weight or (lambda e: case_cost(*e))
    w = [float(weight(e)) for e in plan]
    order = sorted(range(len(plan)), key=lambda k: (-w[k], k))
    heap = [(0.0, s) for s in range(n)]
    out = [0] * len(plan)
    for k in order:
        load, s = heapq.heappop(heap)
        out[k] = s
        heapq.heappush(heap, (load + w[k], s))
    return out


def select(plan: list, i: int, n: int, weight=None) -> list:
    """The entries of shard i (1-based) of n, in plan order."""
    if n == 1:
        return list(plan)
    owner = assign(plan, n, weight)
    return [e for e, s in zip(plan, owner) if s == i - 1]

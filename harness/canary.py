"""Machine-speed canary: a small fixed workload timed at the start and at the end of every run
process, so that `compare` can tell a slower kernel from a slower machine.

Two latency runs taken one after the other (not interleaved) on a shared host see whatever load
the host had at each time; the run-median rule of harness.regress cannot tell that apart from a
code change. The canary is the same code on both sides: if its time moved between BASE and NEW,
the machine moved, and SLOWER/FASTER verdicts are not evidence (harness.regress.apply_canary).

Stored in run.json as
  "canary": {"version": 1, "start": {WORKLOAD: us}, "end": {WORKLOAD: us}, "us": {WORKLOAD: us}}
("us" is the geometric mean of start and end, the run's value), and in a `run --repeat` merged
run directory as {"version": 1, "replicates": [one such dict per replicate]}. `run_values(meta)`
reads either.
"""
from __future__ import annotations

import math
import time

import numpy as np

VERSION = 1
COPY_BYTES = 32 << 20  # 32 MiB copied (64 MiB touched): beyond a 32 MiB L3, so it measures DRAM bandwidth,
                       # 3-12 ms here. A 4 MiB copy stays in L3 and did not move under a CPU hog that made
                       # this one 1.3-2.7x slower (and the ms-long paged_cache_load goldens 1.7-3.6x).
EXP_N = 1 << 16       # float32 exp over 64 Ki elements (256 KiB, cache-resident): compute-bound, ~0.1 ms.
                      # Not a matmul: BLAS thread pools make back-to-back small matmuls wait out other
                      # processes' time slices (24 ms per 128x128 call measured here), which is a BLAS
                      # artefact, not machine speed.
BLOCK_S = 0.008       # calls are timed in blocks of ~8 ms, longer than a scheduler time slice (CFS: 3-4 ms
                      # with a few runnable tasks), so a block sees the share of CPU the process gets, as a
                      # kernel of several ms does. Timing single 0.1 ms calls and taking the median would
                      # dodge preemption and miss exactly the drift that doubled ms-long kernels (issue 9).
REPS = 5              # median of 5 blocks per workload: 0.1-0.15 s per probe, 0.2-0.3 s per run process


def _time_us(fn, reps: int) -> float:
    """Median over `reps` blocks of the per-call time (microseconds); a block lasts ~BLOCK_S."""
    t0 = time.perf_counter_ns()
    fn()  # first touch (page faults), untimed; also sizes the block
    one = max((time.perf_counter_ns() - t0) / 1e9, 1e-6)
    k = max(1, min(1000, round(BLOCK_S / one)))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(k):
            fn()
        ts.append((time.perf_counter_ns() - t0) / 1e3 / k)
    return float(np.median(ts))


def probe(reps: int = REPS) -> dict:
    """{workload: median microseconds per call} of the fixed canary workloads."""
    src = np.ones(COPY_BYTES // 8, dtype=np.float64)
    dst = np.empty_like(src)
    x = np.linspace(-4.0, 4.0, EXP_N, dtype=np.float32)
    y = np.empty_like(x)
    return {"memcpy_us": _time_us(lambda: np.copyto(dst, src), reps),
            "exp_us": _time_us(lambda: np.exp(x, out=y), reps)}


def record(start: dict, end: dict) -> dict:
    """run.json's "canary" entry from the start and end probes of one process."""
    us = {k: math.sqrt(start[k] * end[k]) for k in start if k in end and start[k] > 0 and end[k] > 0}
    return {"version": VERSION, "start": start, "end": end, "us": us}


def merged(records: list) -> dict | None:
    """The "canary" entry of a merged `run --repeat` directory (None if no replicate had one)."""
    recs = [r for r in records if isinstance(r, dict) and r.get("us")]
    return {"version": VERSION, "replicates": recs} if recs else None


def run_values(meta: dict) -> list[dict]:
    """One {workload: us} per process run described by a run.json (empty: no canary recorded)."""
    c = (meta or {}).get("canary")
    if not isinstance(c, dict):
        return []
    if isinstance(c.get("replicates"), list):
        return [r["us"] for r in c["replicates"] if isinstance(r, dict) and isinstance(r.get("us"), dict)]
    return [c["us"]] if isinstance(c.get("us"), dict) and c["us"] else []

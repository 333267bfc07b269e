"""Regression statistics, as pure functions (no I/O).

Two-run decision (`decide_latency`): the unit of evidence is one *process-level run* (a replicate),
summarised by its median. Samples inside one process share that process's drift (clocks, thermals,
allocator placement), so testing them as independent turns any drift into "significance"
(benchmarking.md section 5: asv's sample-level MWU gave 70-89% false alarms at 1-3% drift). We decide
on the ratio of the medians of run medians, gated by an effect floor, and test with a one-sided
Mann-Whitney U over the run medians (exact distribution; p-values are conservative under ties).

  SLOWER / FASTER   the ratio is beyond the floor and the run medians are separated (p <= alpha)
  SAME              the ratio is within the floor
  AMBIGUOUS         beyond the floor but not separated (or fewer than 2 runs on a side): rerun
                    with more `--repeat`; or the machine-speed canary moved between the runs
                    (`apply_canary`)

Accuracy (`decide_accuracy`): a case's verdict that got worse, or an error metric that grew past a
factor, is a regression.

Nightly (`nightly_status`): a rolling baseline (median of the previous `window` points) and the
PyTorch HUD rule: the last >= 2 points in a row violating is a regression, a single violation or an
earlier run of violations is suspicious. `detect_steps` finds level shifts for trend plots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .verdicts import VERDICT_ORDER  # one vocabulary (harness.verdicts); re-exported for rowcheck

SAME, FASTER, SLOWER, AMBIGUOUS = "SAME", "FASTER", "SLOWER", "AMBIGUOUS"
DEFAULT_FLOOR = 0.05   # 5%: the default effect floor; asv uses 10%, nvbench's clear gap is 0.5%
DEFAULT_ALPHA = 0.05   # one-sided, on run medians: with 3 vs 3 runs only complete separation reaches it
ACC_GROWTH = 2.0       # an error metric growing more than 2x (same verdict) is reported as a regression
ACC_MIN_ULP = 2.0      # ... unless it stays within 2 ULP, where double rounding alone moves it


def median(xs) -> float:
    return float(np.median(np.asarray(list(xs), dtype=np.float64)))


@lru_cache(maxsize=256)
def _u_distribution(m: int, n: int) -> tuple[int, ...]:
    """Counts of each U value (0..m*n) over all C(m+n, m) rankings without ties."""
    # f[i][j][u]: rankings of i x's and j y's with U (x-before-y pairs... counted for y) = u
    prev = [[1] + [0] * (m * n) for _ in range(n + 1)]  # i = 0: U is 0 for any j
    for i in range(1, m + 1):
        cur = [[0] * (m * n + 1) for _ in range(n + 1)]
        cur[0][0] = 1
        for j in range(1, n + 1):
            # the largest element is an x (adds j to U: it beats all j y's) or a y (adds nothing)
            a, b, c = prev[j], cur[j - 1], cur[j]
            for u in range(m * n + 1):
                c[u] = (a[u - j] if u >= j else 0) + b[u]
        prev = cur
    return tuple(prev[n])


def mwu_greater(x, y) -> float:
    """One-sided Mann-Whitney U p-value for "x tends to be larger than y".

    Exact (no-tie distribution, ties counted half, so the p-value is conservative) up to 30 per
    side, normal approximation with continuity correction above."""
    x = np.asarray(list(x), dtype=np.float64)
    y = np.asarray(list(y), dtype=np.float64)
    m, n = x.size, y.size
    if m == 0 or n == 0:
        return 1.0
    pooled = np.concatenate([x, y])
    order = np.argsort(pooled, kind="mergesort")
    ranks = np.empty(m + n)
    ranks[order] = np.arange(1, m + n + 1)
    vals, inv = np.unique(pooled, return_inverse=True)
    if vals.size < m + n:  # midranks for ties
        ranks = (np.bincount(inv, ranks) / np.bincount(inv))[inv]
    u = float(ranks[:m].sum() - m * (m + 1) / 2)
    if m <= 30 and n <= 30:
        dist = _u_distribution(m, n)
        total = math.comb(m + n, m)
        k = math.ceil(u)  # U with half-ties rounds up to the next attainable value: conservative
        return float(sum(dist[k:]) / total)
    mu, sd = m * n / 2.0, math.sqrt(m * n * (m + n + 1) / 12.0)
    z = (u - 0.5 - mu) / sd
    return float(0.5 * math.erfc(z / math.sqrt(2)))


def min_p(m: int, n: int) -> float:
    """The smallest one-sided p the exact test can give with m and n runs."""
    return 1.0 / math.comb(m + n, m)


def bootstrap_ratio_ci(base, new, confidence: float = 0.90, n_boot: int = 2000, seed: int = 0):
    """Bootstrap over *runs* (resampling run medians per side) of median(new)/median(base)."""
    b = np.asarray(list(base), dtype=np.float64)
    a = np.asarray(list(new), dtype=np.float64)
    if b.size == 0 or a.size == 0:
        return (None, None)
    rng = np.random.default_rng(seed)
    rb = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1)
    ra = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    ratios = ra / rb
    lo = (1 - confidence) / 2
    return float(np.quantile(ratios, lo)), float(np.quantile(ratios, 1 - lo))


@dataclass
class PerfVerdict:
    verdict: str
    ratio: float | None
    p_value: float | None = None
    ci: tuple = (None, None)
    n_base: int = 0
    n_new: int = 0
    floor: float = DEFAULT_FLOOR
    reason: str = ""


def decide_latency(base_runs, new_runs, floor: float = DEFAULT_FLOOR, alpha: float = DEFAULT_ALPHA) -> PerfVerdict:
    """SAME / FASTER / SLOWER / AMBIGUOUS from per-run medians (microseconds) of the two sides."""
    base = [float(v) for v in base_runs if v is not None and v > 0]
    new = [float(v) for v in new_runs if v is not None and v > 0]
    if not base or not new:
        return PerfVerdict(AMBIGUOUS, None, n_base=len(base), n_new=len(new), floor=floor,
                           reason="no latency on one side")
    ratio = median(new) / median(base)
    ci = bootstrap_ratio_ci(base, new)
    v = PerfVerdict(SAME, ratio, ci=ci, n_base=len(base), n_new=len(new), floor=floor)
    if 1 / (1 + floor) <= ratio <= 1 + floor:
        v.reason = f"within the {floor:.0%} floor"
        return v
    slower = ratio > 1 + floor
    if len(base) < 2 or len(new) < 2:
        v.verdict = AMBIGUOUS
        v.reason = "beyond the floor with a single run on a side: rerun with --repeat >= 3"
        return v
    v.p_value = mwu_greater(new, base) if slower else mwu_greater(base, new)
    if v.p_value <= alpha:
        v.verdict = SLOWER if slower else FASTER
        v.reason = f"run medians separated (one-sided MWU p={v.p_value:.3g} over {len(base)}+{len(new)} runs)"
    else:
        v.verdict = AMBIGUOUS
        v.reason = (f"beyond the floor but run medians overlap (p={v.p_value:.3g}; the best attainable with "
                    f"{len(base)}+{len(new)} runs is {min_p(len(base), len(new)):.3g}): rerun with more --repeat")
    return v


# ---- machine-speed canary -------------------------------------------------------------------------
# Every run process times a fixed workload at its start and end (harness.canary). Its time moving
# between BASE and NEW means the machine moved (another job started, thermal state, frequency), and
# a latency ratio is then no evidence about the code.
CANARY_FRACTION = 1.0  # the canary "moved" when its ratio leaves 1 +- CANARY_FRACTION x the row's effect
                       # floor: the floor is the smallest change we claim to see, so machine drift of that
                       # size can produce every verdict we would report. A smaller fraction would turn the
                       # canary's own run-to-run spread (10-20% per process here) into drift on A/A runs.


def canary_ratio(base_runs, new_runs) -> float | None:
    """NEW/BASE machine slowdown from per-run canary values ({workload: us}, one dict per process):
    per workload the ratio of the medians over runs, combined by geometric mean over the workloads
    both sides measured. None when either side has no canary (old run directories)."""
    base = [r for r in base_runs if isinstance(r, dict)]
    new = [r for r in new_runs if isinstance(r, dict)]
    names = sorted({k for r in base for k in r} & {k for r in new for k in r})
    logs = []
    for k in names:
        b = [float(r[k]) for r in base if isinstance(r.get(k), (int, float)) and r[k] > 0]
        n = [float(r[k]) for r in new if isinstance(r.get(k), (int, float)) and r[k] > 0]
        if b and n:
            logs.append(math.log(median(n) / median(b)))
    return math.exp(sum(logs) / len(logs)) if logs else None


def canary_moved(ratio: float | None, floor: float = DEFAULT_FLOOR, fraction: float = CANARY_FRACTION) -> bool:
    if ratio is None:
        return False
    lim = 1 + fraction * floor
    return ratio > lim or ratio < 1 / lim


def canary_reason(ratio: float) -> str:
    return (f"machine speed changed between runs (canary ratio {ratio:.2f}); rerun interleaved "
            f"(--interleave-cwd) or on a quiet machine")


def apply_canary(v: PerfVerdict, ratio: float | None, fraction: float = CANARY_FRACTION) -> PerfVerdict:
    """SLOWER / FASTER becomes AMBIGUOUS when the canary moved beyond the verdict's floor, in either
    direction. Neither the size nor the direction of the latency ratio is evidence against drift:
    load changes slow workloads by different factors (a CPU hog moved the canary 1.4x and ms-long
    numpy goldens 1.7-3.6x), and in one measured A/A pair the canary's DRAM copy got 8% faster while
    a 0.15 ms kernel got 1.6x slower."""
    if v.verdict not in (SLOWER, FASTER) or not canary_moved(ratio, v.floor, fraction):
        return v
    v.verdict = AMBIGUOUS
    v.reason = f"{canary_reason(ratio)}; without it: {v.reason}"
    return v


# ---- accuracy -----------------------------------------------------------------------------------
ERROR_METRICS = ("baseline_ratio", "max_ulp", "max_rel_err", "max_abs_err")


@dataclass
class AccVerdict:
    status: str                 # SAME, WORSE, GREW, BETTER, SKIPPED, MISSING
    base_verdict: str | None
    new_verdict: str | None
    metric: str | None = None
    base_value: float | None = None
    new_value: float | None = None
    reason: str = ""

    @property
    def regressed(self) -> bool:
        return self.status in ("WORSE", "GREW")


def _worst(rows) -> dict | None:
    rows = list(rows)
    if not rows:
        return None
    return max(rows, key=lambda r: VERDICT_ORDER.index(r.get("verdict")) if r.get("verdict") in VERDICT_ORDER else 0)


def _metric(rows, name):
    vals = [r.get(name) for r in rows if isinstance(r.get(name), (int, float)) and math.isfinite(r.get(name))]
    return max(vals) if vals else None


def decide_accuracy(base_rows, new_rows, growth: float = ACC_GROWTH) -> AccVerdict:
    """Rows of one (case, backend) on each side (one per output region)."""
    wb, wn = _worst(base_rows), _worst(new_rows)
    if wb is None or wn is None:
        return AccVerdict("MISSING", wb and wb.get("verdict"), wn and wn.get("verdict"),
                          reason="case/backend present on one side only")
    bv, nv = wb.get("verdict"), wn.get("verdict")
    bok = all(r.get("ok", True) for r in base_rows)
    nok = all(r.get("ok", True) for r in new_rows)
    if nv == "skipped" and bv != "skipped":
        return AccVerdict("SKIPPED", bv, nv, reason=f"ran before ({bv}), skipped now: {wn.get('reason')}")
    if (bok and not nok) or (bok == nok and VERDICT_ORDER.index(nv) > VERDICT_ORDER.index(bv)
                             and bv != "skipped"):
        return AccVerdict("WORSE", bv, nv, reason=f"verdict {bv} -> {nv}: {wn.get('reason') or ''}".strip())
    if (nok and not bok) or VERDICT_ORDER.index(nv) < VERDICT_ORDER.index(bv):
        return AccVerdict("BETTER", bv, nv, reason=f"verdict {bv} -> {nv}")
    for name in ERROR_METRICS:
        b, n = _metric(base_rows, name), _metric(new_rows, name)
        if b is None or n is None:
            continue
        grew = n > growth * b if b > 0 else n > 0
        if grew and not (name == "max_ulp" and n <= ACC_MIN_ULP):
            return AccVerdict("GREW", bv, nv, name, b, n,
                              reason=f"{name} grew {b:.3g} -> {n:.3g} (more than {growth:g}x)")
        return AccVerdict("SAME", bv, nv, name, b, n)
    return AccVerdict("SAME", bv, nv)


# ---- nightly history ----------------------------------------------------------------------------
@dataclass
class NightlyStatus:
    status: str                 # ok, regression, suspicious, insufficient_data
    baseline: float | None = None
    violations: list = field(default_factory=list)  # per point: True/False/None (None: no baseline yet)
    reason: str = ""


def rolling_violations(values, window: int = 7, threshold: float = 0.10, min_baseline: int = 3):
    """Per point: (baseline, violated) with baseline = median of up to `window` previous points."""
    out = []
    vals = [float(v) if v is not None else None for v in values]
    for i, v in enumerate(vals):
        prev = [x for x in vals[max(0, i - window):i] if x is not None]
        if v is None or len(prev) < min_baseline:
            out.append((None, None))
            continue
        base = median(prev)
        out.append((base, v > base * (1 + threshold)))
    return out


def nightly_status(values, window: int = 7, threshold: float = 0.10, min_baseline: int = 3,
                   consecutive: int = 2) -> NightlyStatus:
    """PyTorch HUD rule over a latency series (oldest first, one value per night)."""
    rv = rolling_violations(values, window, threshold, min_baseline)
    flags = [f for _, f in rv]
    known = [f for f in flags if f is not None]
    if len(known) < consecutive:
        return NightlyStatus("insufficient_data", None, flags, f"fewer than {min_baseline + consecutive} points")
    tail = 0
    for f in reversed(flags):
        if not f:
            break
        tail += 1
    base = rv[-1][0]
    if tail >= consecutive:
        return NightlyStatus("regression", base, flags, f"last {tail} points above {1 + threshold:.2f}x the "
                                                        f"rolling median")
    if tail == 1:
        return NightlyStatus("suspicious", base, flags, "last point above the rolling baseline (once)")
    run = best = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    if best >= 3:
        return NightlyStatus("suspicious", base, flags, f"an earlier run of {best} violations")
    return NightlyStatus("ok", base, flags)


def detect_steps(values, threshold: float = 0.10, min_size: int = 2) -> list[int]:
    """Indices where a level shift of more than `threshold` (relative) starts.

    Binary segmentation with an L1 cost around segment medians (a robust cousin of asv's Potts
    fit): split where the cost drops most, keep the split if both segments have `min_size` points
    and their medians differ by more than the threshold, recurse on each side."""
    x = [float(v) for v in values]
    steps: list[int] = []

    def cost(seg):
        m = np.median(seg)
        return float(np.sum(np.abs(np.asarray(seg) - m)))

    def split(lo, hi):
        seg = x[lo:hi]
        if len(seg) < 2 * min_size:
            return
        whole = cost(seg)
        best, where = whole, None
        for k in range(min_size, len(seg) - min_size + 1):
            c = cost(seg[:k]) + cost(seg[k:])
            if c < best:
                best, where = c, k
        if where is None:
            return
        a, b = median(seg[:where]), median(seg[where:])
        if a > 0 and abs(b / a - 1) > threshold:
            steps.append(lo + where)
            split(lo, lo + where)
            split(lo + where, hi)

    split(0, len(x))
    return sorted(steps)

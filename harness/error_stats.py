"""Error statistics of a float comparison, gathered chunk by chunk (pure functions; harness.compare
decides verdicts from them).

Every statistic the policy reads is a max, a sum or a count, so it is gathered over CHUNK elements
at a time and combined: each step's float64 temporaries (the error, |g|, ULP(g), ...) stay in cache
instead of streaming whole-array copies through memory.

    chunks(a, g, dtype)             -> Chunk per CHUNK elements (a, g flat; a in any dtype)
    metric_totals(...) / metrics()  -> the row's error metrics (max / rel / RMSE / ULP / small values ...)
    relative_totals(...)            -> RelativeStats of one side against the golden (ratios' numerators)
    floor_totals(...)               -> what correct rounding costs (ratios' floors)
    Worst                           -> the worst element judged bad, by flat index
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import policy as P
from .dtypes import is_float, ulp

# Elements per step. Each step's dozen float64 temporaries (512 KiB each) stay in a 2 MiB L2 and are
# reused; over whole arrays a 1M-element reduction comparison took 66 ns per element, in 64K chunks
# 27 ns (measured on this project's 2-core CI host, bench/harness_speed.py section 2).
CHUNK = 1 << 16


@dataclass(frozen=True)
class RelativeStats:
    """Error statistics used in ratios to the baseline, each with its floor (policy.RATIO_FLOOR)."""

    max_err: float
    rmse: float
    mere: float          # normal domain, |a-g|/|g|
    mare: float
    small_errs: int


class Chunk:
    """One step of (a, g): float64 values, the signed and absolute error, |g|, ULP(g) in the output
    dtype and the small-value mask (|g| below the dtype's threshold); `at` is its flat offset."""

    def __init__(self, a: np.ndarray, g: np.ndarray, dtype: str, at: int = 0):
        self.at = at
        self.a = np.asarray(a, dtype=np.float64)
        self.g = g
        with np.errstate(invalid="ignore", over="ignore"):   # inf - inf where a NaN/inf sits
            self.d = self.a - g
        self.err = np.abs(self.d)
        self.abs_g = np.abs(g)
        self.u = self.small = None
        self.any_small = False
        if is_float(dtype):
            self.u = ulp(g, dtype)
            thr = P.SMALL_THRESHOLD.get(dtype)
            self.small = self.abs_g < thr if thr is not None else np.zeros(g.shape, bool)
            self.any_small = bool(self.small.any())

    def zero_small(self, x: np.ndarray) -> np.ndarray:
        """x with its small-value elements set to 0 (x itself when nothing is small): sums, and maxes of
        values >= 0, over the normal domain without compacting it (a where is ~2x cheaper than a mask)."""
        return np.where(self.small, 0.0, x) if self.any_small else x

    def n_normal(self) -> int:
        return self.g.size - (int(np.count_nonzero(self.small)) if self.any_small else 0)


def chunks(a: np.ndarray, g: np.ndarray, dtype: str):
    """Chunks of flat `a` (any dtype, converted per step) against flat float64 `g`."""
    for lo in range(0, a.size, CHUNK):
        yield Chunk(a[lo:lo + CHUNK], g[lo:lo + CHUNK], dtype, lo)


class Worst:
    """The element judged bad with the largest error (the first of equal ones), by flat index."""

    def __init__(self):
        self.err, self.index, self.count = -1.0, 0, 0

    def add(self, c: Chunk, bad: np.ndarray) -> int:
        k = int(np.count_nonzero(bad))
        if k:
            e = np.where(bad, c.err, -1.0)
            i = int(np.argmax(e))
            if e[i] > self.err:
                self.err, self.index = float(e[i]), c.at + i
        self.count += k
        return k


# ---- the row's metrics ------------------------------------------------------------------------
_SUMS = ("max_err", "max_rel", "sum_rel", "sum_err2", "max_ulp", "beyond_1ulp", "small", "small_err",
         "aa", "gg", "ag", "pos", "neg")


def new_sums() -> dict:
    return dict.fromkeys(_SUMS, 0) | {"max_err": -math.inf, "max_rel": -math.inf, "max_ulp": 0.0}


def add_metrics(s: dict, c: Chunk, dtype: str) -> None:
    """Fold one chunk into the metric sums (see metrics())."""
    err = c.err
    rel = err / (c.abs_g + 1e-7)
    s["max_err"] = max(s["max_err"], float(err.max()))
    s["max_rel"] = max(s["max_rel"], float(rel.max()))
    s["sum_rel"] += float(rel.sum())
    s["sum_err2"] += float(np.dot(err, err))
    if is_float(dtype):
        in_ulp = c.zero_small(err / c.u)          # >= 0: a zeroed small element changes no max or count
        if in_ulp.size:
            s["max_ulp"] = max(s["max_ulp"], float(in_ulp.max()))
            s["beyond_1ulp"] += int(np.count_nonzero(in_ulp > 1.0))
        if c.any_small:
            s["small"] += int(np.count_nonzero(c.small))
            s["small_err"] += int(np.count_nonzero(c.small & (err > P.SMALL_ATOL.get(dtype, 0.0))))
    s["aa"] += float(np.dot(c.a, c.a))
    s["gg"] += float(np.dot(c.g, c.g))
    s["ag"] += float(np.dot(c.a, c.g))
    # a > g exactly where a - g > 0: a float difference of two distinct floats is never 0
    s["pos"] += int(np.count_nonzero(c.d > 0))
    s["neg"] += int(np.count_nonzero(c.d < 0))


def metrics(s: dict, n: int, dtype: str, m: dict) -> dict:
    """The error metrics of n compared elements, from their sums, into the row dict m.

    max_rel_err / mere are CANN's MARE / MERE (denominator |g| + 1e-7, all elements); max_ulp and
    beyond_1ulp_frac are over the normal values (near zero the spacing is subnormal, bf16 2^-133,
    so float32 noise on a zero golden read as 1e22 ULP; small values have their own counts)."""
    if n == 0:
        return m
    m.update(max_abs_err=s["max_err"], max_rel_err=s["max_rel"], mere=s["sum_rel"] / n,
             rmse=math.sqrt(s["sum_err2"] / n))
    if is_float(dtype):
        m.update(max_ulp=s["max_ulp"], beyond_1ulp_frac=s["beyond_1ulp"] / n, small_count=s["small"],
                 small_err_count=s["small_err"], small_err_frac=s["small_err"] / s["small"] if s["small"] else 0.0)
    na, ng = math.sqrt(s["aa"]), math.sqrt(s["gg"])
    m["cosine"] = s["ag"] / (na * ng) if na > 0 and ng > 0 else (1.0 if na == ng else 0.0)
    m["error_balance"] = abs(s["pos"] - s["neg"]) / n
    return m


# ---- ratios to the baseline -------------------------------------------------------------------
def new_relative() -> dict:
    return {"max_err": 0.0, "sum_e2": 0.0, "sum_rel": 0.0, "max_rel": 0.0, "n": 0, "small_errs": 0}


def add_relative(r: dict, c: Chunk, small_atol: float, noise: float = 0.0) -> None:
    """Fold one chunk of one side (c.a against c.g) into its relative sums: max error over all
    elements; RMSE, MERE, MARE over the normal values (msprobe drops small values from them,
    precision.md section 7); the count of small values off by more than small_atol.

    `noise`: an absolute error the spec allows everywhere (float32 cancellation noise, OutputRule
    small_atol): it is taken off each error before the relative ones, whose denominators near the
    small-value threshold would otherwise turn that noise into ratios of 30 (measured: NSA grad dK
    with 99% of its values near zero, bench/verdict_calibration.py)."""
    err = c.err
    if err.size:
        r["max_err"] = max(r["max_err"], float(err.max()))
    if c.any_small:
        r["small_errs"] += int(np.count_nonzero(c.small & (err > small_atol)))
    n = c.n_normal()
    if n:
        en = c.zero_small(err)
        with np.errstate(divide="ignore", invalid="ignore"):     # |g| = 0 only where small: zeroed
            rel = c.zero_small((np.maximum(err - noise, 0.0) if noise else err) / c.abs_g)
        r["sum_e2"] += float(np.dot(en, en))
        r["sum_rel"] += float(rel.sum())
        r["max_rel"] = max(r["max_rel"], float(rel.max()))
        r["n"] += n


def relative(r: dict) -> RelativeStats:
    n = r["n"]
    return RelativeStats(r["max_err"], math.sqrt(r["sum_e2"] / n) if n else 0.0, r["sum_rel"] / n if n else 0.0,
                         r["max_rel"] if n else 0.0, r["small_errs"])


def new_floors() -> dict:
    return {"max_u": 0.0, "sum_u2": 0.0, "sum_ur": 0.0, "max_ur": 0.0, "n": 0}


def add_floors(f: dict, c: Chunk) -> None:
    """Fold one chunk of the golden into what correct rounding costs there (see floors())."""
    if c.u.size:
        f["max_u"] = max(f["max_u"], float(c.u.max()))
    n = c.n_normal()
    if n:
        un = c.zero_small(c.u)
        with np.errstate(divide="ignore", invalid="ignore"):     # |g| = 0 only where small: zeroed
            ur = c.zero_small(c.u / c.abs_g)
        f["sum_u2"] += float(np.dot(un, un))
        f["sum_ur"] += float(ur.sum())
        f["max_ur"] = max(f["max_ur"], float(ur.max()))
        f["n"] += n


def floors(f: dict) -> RelativeStats:
    """What correct rounding costs (u = ULP(g)), times RATIO_FLOOR: the smallest denominators a
    ratio may use (over the same domains as the relative stats)."""
    k, n = P.RATIO_FLOOR, f["n"]
    return RelativeStats(k * P.ROUNDING_MAX_ULP * f["max_u"],
                         k * P.ROUNDING_RMS_ULP * math.sqrt(f["sum_u2"] / n) if n else 0.0,
                         k * P.ROUNDING_MEAN_ULP * f["sum_ur"] / n if n else 0.0,
                         k * P.ROUNDING_MAX_ULP * f["max_ur"] if n else 0.0, 0)


# ---- bias --------------------------------------------------------------------------------------
def new_bias() -> dict:
    return {"sum_e": 0.0, "sum_t": 0.0, "sum_e2": 0.0, "n": 0}


def add_bias(b: dict, c: Chunk) -> None:
    """Fold one chunk's signed errors in ULP of each element (normal values) into the bias sums."""
    if c.u is None:
        return
    n = c.n_normal()
    if n:
        e = c.zero_small(c.d / c.u)
        b["sum_e"] += float(e.sum())
        b["sum_t"] += float(np.dot(np.sign(c.g), e))
        b["sum_e2"] += float(np.dot(e, e))
        b["n"] += n


def bias(b: dict) -> tuple[float, float]:
    """(bias, limit) in ULP of each element: the larger of the mean signed error and the mean error
    signed towards |g| (a scale error), and the bound a correctly rounded result stays within."""
    n = b["n"]
    if n == 0:
        return 0.0, math.inf
    plain, towards = b["sum_e"] / n, b["sum_t"] / n
    sd = max(P.ROUNDING_SD_ULP, math.sqrt(max(b["sum_e2"] / n - plain * plain, 0.0)))  # heavy-tailed paths widen it
    limit = P.BIAS_ULP + P.BIAS_SIGMAS * sd / math.sqrt(n)
    return max(abs(plain), abs(towards)), limit

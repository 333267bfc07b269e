"""The comparison policy of shared/reference/precision.md section 6, as pure functions.

compare(actual, golden, rule, dtype, baseline) -> Comparison(verdict, reason, metrics)

Kinds:
  exact        bit patterns equal (both-NaN counts as a match).       [CANN, msprobe, FA V-cache]
  quant_int8   |actual - golden| <= 1; off-by-one fraction recorded.   [CANN AE<=1, vLLM atol=1]
  elementwise  |a - g| <= rtol*|g| + 2 ULP(max|g|) in the output dtype. [FlashAttention rotary test]
  reduction    max|a-g| <= k * max|b-g| + 2 ULP(max|g|) and
               mean|a-g| <= 1.5 * mean|b-g| + 0.5 * mean ULP(g), b = same-precision baseline.
                                                                      [FlashAttention, CANN MERE L1]
               When the backend is the baseline itself the ratio is 1 by construction, so it is judged
               by an absolute cap scaled to max|g| instead (precision.md, "two consequences").
NaN and inf positions (and inf signs) must match the golden for every float kind [msprobe].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .dtypes import bits, is_float, name_of, ulp
from .spec import OutputRule

# msprobe absolute-threshold rtol per dtype (precision.md section 1 table).
ELEMENTWISE_RTOL = {"float16": 2.0**-10, "bfloat16": 2.0**-8, "float32": 2.0**-20, "float64": 1e-12}

# Absolute caps (atol, rtol on max|golden|) for judging the baseline itself: xformers forward
# tolerances (precision.md section 3). Outputs with long reductions override via OutputRule.abs_cap.
BASELINE_CAP = {"float16": (4e-3, 4e-4), "bfloat16": (2e-2, 5e-3), "float32": (3e-4, 2e-5), "float64": (1e-10, 1e-12)}

# CANN commercial-grade L1 ratios (precision.md section 1): above them a passing result is a warning.
WARN_RMSE_RATIO = 1.5
WARN_MERE_RATIO = 1.5

# An int8 result with more than this fraction of off-by-ones passes but warns: isolated
# off-by-ones come from .5 boundaries (FlashInfer, precision.md section 4); many suggest a
# systematic rounding-mode difference worth a look.
WARN_OFF_BY_ONE_FRAC = 0.05

METRIC_KEYS = ("max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "mismatch_count", "mismatch_frac",
               "cosine", "error_balance", "baseline_ratio", "baseline_max_err", "off_by_one_frac", "numel")


@dataclass
class Comparison:
    verdict: str                 # "pass" | "warn" | "fail"
    reason: str
    metrics: dict = field(default_factory=dict)


def _empty_metrics(n: int) -> dict:
    m = {k: None for k in METRIC_KEYS}
    m.update(mismatch_count=0, mismatch_frac=0.0, numel=int(n))
    return m


def error_metrics(a: np.ndarray, g: np.ndarray, dtype: str) -> dict:
    """Error statistics of a against g (float64 arrays of equal shape, finite entries only)."""
    n = a.size
    m = _empty_metrics(n)
    if n == 0:
        return m
    err = np.abs(a - g)
    rel = err / (np.abs(g) + 1e-7)
    m["max_abs_err"] = float(err.max())
    m["max_rel_err"] = float(rel.max())
    m["mere"] = float(rel.mean())
    m["rmse"] = float(np.sqrt(np.mean(err * err)))
    if is_float(dtype):
        m["max_ulp"] = float((err / ulp(g, dtype)).max())
    na, ng = float(np.linalg.norm(a)), float(np.linalg.norm(g))
    m["cosine"] = float(np.dot(a.ravel(), g.ravel()) / (na * ng)) if na > 0 and ng > 0 else (1.0 if na == ng else 0.0)
    m["error_balance"] = float(abs(int(np.count_nonzero(a > g)) - int(np.count_nonzero(a < g))) / n)
    return m


def _worst(a: np.ndarray, g: np.ndarray, bad: np.ndarray, shape) -> str:
    """Text naming the worst bad element: index, actual, golden."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf at a NaN/inf mismatch
        err = np.where(bad, np.abs(a.astype(np.float64) - g.astype(np.float64)), -1.0)
    err = np.where(np.isnan(err), np.inf, err)
    flat = int(np.nanargmax(err.ravel())) if err.size else 0
    idx = np.unravel_index(flat, shape) if shape else ()
    return f"worst at index {tuple(int(i) for i in idx)}: actual {a.ravel()[flat]!r}, golden {g.ravel()[flat]!r}"


def _nonfinite_mismatch(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Elements where NaN-ness or inf (with sign) differ."""
    nan_a, nan_g = np.isnan(a), np.isnan(g)
    inf_a, inf_g = np.isinf(a), np.isinf(g)
    return (nan_a != nan_g) | (inf_a != inf_g) | (inf_a & inf_g & (np.sign(a) != np.sign(g)))


def compare(actual: np.ndarray, golden: np.ndarray, rule: OutputRule, dtype: str | None = None,
            baseline: np.ndarray | None = None) -> Comparison:
    """Judge `actual` against `golden` by `rule`; `baseline` is the same-precision reference."""
    actual, golden = np.asarray(actual), np.asarray(golden)
    dtype = dtype or name_of(actual)
    if actual.shape != golden.shape:
        m = _empty_metrics(golden.size)
        return Comparison("fail", f"shape {actual.shape} != golden shape {golden.shape}", m)
    if rule.kind == "exact":
        return _exact(actual, golden)
    a = actual.astype(np.float64)
    g = golden.astype(np.float64)
    bad_nf = _nonfinite_mismatch(a, g)
    finite = np.isfinite(a) & np.isfinite(g)
    m = error_metrics(a[finite], g[finite], dtype)
    m["numel"] = int(a.size)
    if bad_nf.any():
        m["mismatch_count"] = int(bad_nf.sum())
        m["mismatch_frac"] = m["mismatch_count"] / max(a.size, 1)
        return Comparison("fail", f"{int(bad_nf.sum())} NaN/inf position(s) differ from the golden; "
                          + _worst(actual, golden, bad_nf, a.shape), m)
    af, gf = a[finite], g[finite]
    if rule.kind == "quant_int8":
        return _quant_int8(actual, golden, af, gf, finite, m)
    if rule.kind == "elementwise":
        return _elementwise(actual, golden, af, gf, finite, m, dtype)
    return _reduction(actual, golden, af, gf, finite, m, dtype, rule, baseline)


def _exact(actual, golden) -> Comparison:
    m = _empty_metrics(golden.size)
    if actual.dtype != golden.dtype:
        return Comparison("fail", f"dtype {name_of(actual)} != golden dtype {name_of(golden)}", m)
    same = bits(actual) == bits(golden)
    if actual.dtype.kind == "f" or name_of(actual) == "bfloat16":
        a64, g64 = actual.astype(np.float64), golden.astype(np.float64)
        same |= np.isnan(a64) & np.isnan(g64)
    bad = ~same
    m["mismatch_count"] = int(bad.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(golden.size, 1)
    if golden.size and (actual.dtype.kind in "fiub" or name_of(actual) == "bfloat16"):
        with np.errstate(invalid="ignore", over="ignore"):
            a64, g64 = actual.astype(np.float64), golden.astype(np.float64)
            ok = np.isfinite(a64) & np.isfinite(g64)
            if ok.any():
                m.update({k: v for k, v in error_metrics(a64[ok], g64[ok], name_of(actual)).items()
                          if k not in ("mismatch_count", "mismatch_frac", "numel")})
    if bad.any():
        return Comparison("fail", f"{m['mismatch_count']} of {golden.size} element(s) differ bitwise; "
                          + _worst(actual, golden, bad, golden.shape), m)
    return Comparison("pass", "bitwise equal", m)


def _quant_int8(actual, golden, af, gf, finite, m) -> Comparison:
    diff = np.abs(af - gf)
    n = max(diff.size, 1)
    m["off_by_one_frac"] = float(np.count_nonzero(diff == 1) / n)
    badmask = np.zeros(actual.shape, bool)
    badmask[finite] = diff > 1
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / n
    if badmask.any():
        return Comparison("fail", f"{m['mismatch_count']} element(s) off by more than 1; "
                          + _worst(actual, golden, badmask, actual.shape), m)
    if m["off_by_one_frac"] > WARN_OFF_BY_ONE_FRAC:
        return Comparison("warn", f"off-by-one fraction {m['off_by_one_frac']:.3%} > {WARN_OFF_BY_ONE_FRAC:.0%}", m)
    return Comparison("pass", f"|diff| <= 1, off-by-one fraction {m['off_by_one_frac']:.3%}", m)


def _elementwise(actual, golden, af, gf, finite, m, dtype) -> Comparison:
    rtol = ELEMENTWISE_RTOL.get(dtype, 0.0)
    gmax = float(np.abs(gf).max()) if gf.size else 0.0
    two_ulp = 2 * float(ulp(gmax, dtype)) if is_float(dtype) else 0.0
    allowed = rtol * np.abs(gf) + two_ulp
    badmask = np.zeros(actual.shape, bool)
    badmask[finite] = np.abs(af - gf) > allowed
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(af.size, 1)
    if badmask.any():
        return Comparison("fail", f"{m['mismatch_count']} element(s) beyond rtol {rtol:.3g}*|g| + 2 ULP "
                          f"({two_ulp:.3g}); " + _worst(actual, golden, badmask, actual.shape), m)
    return Comparison("pass", f"within rtol {rtol:.3g}*|g| + 2 ULP", m)


def _reduction(actual, golden, af, gf, finite, m, dtype, rule: OutputRule, baseline) -> Comparison:
    gmax = float(np.abs(gf).max()) if gf.size else 0.0
    two_ulp = 2 * float(ulp(gmax, dtype)) if is_float(dtype) else 0.0
    err = np.abs(af - gf)
    max_err = float(err.max()) if err.size else 0.0
    mean_err = float(err.mean()) if err.size else 0.0
    if baseline is None:
        atol, rtol = rule.abs_cap or BASELINE_CAP.get(dtype, (0.0, 0.0))
        allowed_max = atol + rtol * gmax + two_ulp
        badmask = np.zeros(actual.shape, bool)
        badmask[finite] = err > allowed_max
        m["mismatch_count"] = int(badmask.sum())
        m["mismatch_frac"] = m["mismatch_count"] / max(err.size, 1)
        if max_err > allowed_max:
            return Comparison("fail", f"baseline judged by absolute cap: max err {max_err:.4g} > "
                              f"{atol:g} + {rtol:g}*max|g| + 2 ULP = {allowed_max:.4g}; "
                              + _worst(actual, golden, badmask, actual.shape), m)
        return Comparison("pass", f"max err {max_err:.4g} <= absolute cap {allowed_max:.4g} (backend is the baseline)", m)
    b = np.asarray(baseline).astype(np.float64)[finite]
    berr = np.abs(b - gf)
    bmax = float(berr.max()) if berr.size else 0.0
    bmean = float(berr.mean()) if berr.size else 0.0
    m["baseline_max_err"] = bmax
    m["baseline_ratio"] = (max_err / bmax) if bmax > 0 else (1.0 if max_err == 0 else math.inf)
    allowed_max = rule.k * bmax + two_ulp
    mean_slack = 0.5 * float(ulp(gf, dtype).mean()) if (is_float(dtype) and gf.size) else 0.0
    allowed_mean = 1.5 * bmean + mean_slack
    badmask = np.zeros(actual.shape, bool)
    badmask[finite] = err > allowed_max
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(err.size, 1)
    if max_err > allowed_max:
        return Comparison("fail", f"max err {max_err:.4g} > {rule.k:g} x baseline {bmax:.4g} + 2 ULP; "
                          + _worst(actual, golden, badmask, actual.shape), m)
    if mean_err > allowed_mean:
        return Comparison("fail", f"mean err {mean_err:.4g} > 1.5 x baseline mean {bmean:.4g} + 0.5 ULP", m)
    b_rmse = float(np.sqrt(np.mean(berr * berr))) if berr.size else 0.0
    b_mere = float(np.mean(berr / (np.abs(gf) + 1e-7))) if berr.size else 0.0
    rmse_ratio = m["rmse"] / b_rmse if b_rmse > 0 else 1.0
    mere_ratio = m["mere"] / b_mere if b_mere > 0 else 1.0
    if (m["rmse"] or 0) > 0 and (rmse_ratio > WARN_RMSE_RATIO or mere_ratio > WARN_MERE_RATIO):
        return Comparison("warn", f"within policy, but RMSE ratio {rmse_ratio:.2f} / MERE ratio {mere_ratio:.2f} "
                          f"exceed CANN L1 ({WARN_RMSE_RATIO})", m)
    return Comparison("pass", f"max err {max_err:.4g} <= {rule.k:g} x baseline {bmax:.4g} + 2 ULP", m)


def worst_verdict(verdicts) -> str:
    order = ["pass", "skipped", "rejected", "warn", "fail", "error", "timeout", "crash"]
    vs = list(verdicts)
    return max(vs, key=order.index) if vs else "pass"

"""The comparison policy (precision.md sections 1, 6, 7), as pure functions. Numbers: harness.policy.

compare(actual, golden, rule, dtype, baseline) -> Comparison(verdict, reason, metrics)

Kinds:
  exact        bit patterns equal (both-NaN counts as a match).          [CANN, msprobe, FA V-cache]
  quant_int8   |a - g| <= 1; against a baseline, the off-by-one count at most the grade's ratio
               times the baseline's (plus chance).                       [CANN AE<=1, vLLM atol=1]
  elementwise  normal values: |a - g| <= rtol*|g| + 2 ULP(max|g|); small values (|g| below the
               dtype's threshold): |a - g| <= an absolute bound; and no bias: the mean signed error
               (plain, and towards |g|) within a quarter ULP plus noise.  [msprobe, FA rotary]
  reduction    against the same-precision baseline b: per element |a-g| <= k*max|b-g| + 0.5 ULP(g_i);
               MARE / MERE / RMSE ratios to b's within the output's CANN grade; small-value error
               count at most 2x b's.                                     [FlashAttention, CANN, msprobe]
               When the backend is the baseline itself the ratio is 1 by construction, so it is judged
               by an absolute cap scaled to max|g| instead (precision.md, "two consequences").
NaN and inf positions (and inf signs) must match the golden for every float kind [msprobe].
`warn`: within the policy, beyond the next stricter grade (or many int8 off-by-ones): worth a look.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import policy as P
from .dtypes import bits, is_float, name_of, ulp
from .spec import OutputRule
from .verdicts import worst_verdict  # noqa: F401  (re-exported: callers import it from here)

METRIC_KEYS = ("max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "mismatch_count", "mismatch_frac",
               "cosine", "error_balance", "baseline_ratio", "baseline_max_err", "off_by_one_frac", "numel",
               "mare_ratio", "mere_ratio", "rmse_ratio", "grade", "small_count", "small_err_count",
               "small_err_frac", "beyond_1ulp_frac", "bias_ulp")


@dataclass
class Comparison:
    verdict: str                 # "pass" | "warn" | "fail"
    reason: str
    metrics: dict = field(default_factory=dict)


def _empty_metrics(n: int) -> dict:
    m = {k: None for k in METRIC_KEYS}
    m.update(mismatch_count=0, mismatch_frac=0.0, numel=int(n))
    return m


# ---- metrics (pure) ---------------------------------------------------------------------------
def small_mask(g: np.ndarray, dtype: str) -> np.ndarray:
    """Elements in the small-value domain: |g| below the dtype's threshold (policy.SMALL_THRESHOLD)."""
    thr = P.SMALL_THRESHOLD.get(dtype)
    return np.abs(g) < thr if thr is not None else np.zeros(g.shape, bool)


@dataclass
class Diff:
    """What every rule reads of (a, g), computed once per comparison: float64 arrays of the finite
    elements, the signed and absolute error, |g|, ULP(g) in the output dtype and the small-value mask
    (one pass each; the old code recomputed them per metric, 3x the time on large outputs)."""

    a: np.ndarray
    g: np.ndarray
    dtype: str
    d: np.ndarray = None
    err: np.ndarray = None
    abs_g: np.ndarray = None
    u: np.ndarray | None = None
    small: np.ndarray | None = None
    any_small: bool = False

    def __post_init__(self):
        if self.d is None:
            self.d = self.a - self.g
        self.err = np.abs(self.d)
        self.abs_g = np.abs(self.g)
        if is_float(self.dtype):
            self.u = ulp(self.g, self.dtype)
            thr = P.SMALL_THRESHOLD.get(self.dtype)
            self.small = self.abs_g < thr if thr is not None else np.zeros(self.g.shape, bool)
            self.any_small = bool(self.small.any())

    def normal(self, x: np.ndarray) -> np.ndarray:
        """x over the normal-value domain (no copy when nothing is small)."""
        return x[~self.small] if self.any_small else x.ravel()


def error_metrics(a: np.ndarray, g: np.ndarray, dtype: str, diff: Diff | None = None) -> dict:
    """Error statistics of a against g (float64 arrays of equal shape, finite entries only).

    max_rel_err / mere are CANN's MARE / MERE (denominator |g| + 1e-7, all elements); the ratios
    to a baseline use the normal-value domain instead (see relative_stats), and so do max_ulp and
    beyond_1ulp_frac (a fraction of all elements).
    """
    n = a.size
    m = _empty_metrics(n)
    if n == 0:
        return m
    x = diff if diff is not None else Diff(a, g, dtype)
    err = x.err
    rel = err / (x.abs_g + 1e-7)
    m["max_abs_err"] = float(err.max())
    m["max_rel_err"] = float(rel.max())
    m["mere"] = float(rel.mean())
    m["rmse"] = float(np.sqrt(np.dot(err.ravel(), err.ravel()) / n))
    if is_float(dtype):
        # ULP statistics over the normal values: near zero the spacing is subnormal (bf16: 2^-133),
        # so float32 noise on a zero golden read as 1e22 ULP; small values have their own counts.
        in_ulp = x.normal(err) / x.normal(x.u)
        m["max_ulp"] = float(in_ulp.max()) if in_ulp.size else 0.0
        m["beyond_1ulp_frac"] = float(np.count_nonzero(in_ulp > 1.0) / n)
        m["small_count"] = int(np.count_nonzero(x.small)) if x.any_small else 0
        m["small_err_count"] = (int(np.count_nonzero(x.small & (err > P.SMALL_ATOL.get(dtype, 0.0))))
                                if x.any_small else 0)
        m["small_err_frac"] = m["small_err_count"] / m["small_count"] if m["small_count"] else 0.0
    na, ng = float(np.linalg.norm(a)), float(np.linalg.norm(g))
    m["cosine"] = float(np.dot(a.ravel(), g.ravel()) / (na * ng)) if na > 0 and ng > 0 else (1.0 if na == ng else 0.0)
    # a > g exactly where a - g > 0: a float difference of two distinct floats is never 0
    m["error_balance"] = float(abs(int(np.count_nonzero(x.d > 0)) - int(np.count_nonzero(x.d < 0))) / n)
    return m


def bias_ulp(a: np.ndarray, g: np.ndarray, dtype: str, d: np.ndarray | None = None,
             u: np.ndarray | None = None) -> tuple[float, float]:
    """(bias, limit) in ULP of each element: the larger of the mean signed error and the mean error
    signed towards |g| (a scale error), and the bound a correctly rounded result stays within.
    `d` = a - g and `u` = ULP(g), when the caller has them."""
    if a.size == 0 or not is_float(dtype):
        return 0.0, math.inf
    e = (a - g if d is None else d) / (ulp(g, dtype) if u is None else u)
    plain, towards = float(e.mean()), float((np.sign(g) * e).mean())
    sd = max(P.ROUNDING_SD_ULP, float(e.std()))          # heavy-tailed legit paths widen the noise
    limit = P.BIAS_ULP + P.BIAS_SIGMAS * sd / math.sqrt(a.size)
    return max(abs(plain), abs(towards)), limit


@dataclass(frozen=True)
class RelativeStats:
    """Error statistics used in ratios to the baseline, each with its floor (policy.RATIO_FLOOR)."""

    max_err: float
    rmse: float
    mere: float          # normal domain, |a-g|/|g|
    mare: float
    small_errs: int


def relative_stats(x: np.ndarray, g: np.ndarray, small: np.ndarray, small_atol: float,
                   noise: float = 0.0, err: np.ndarray | None = None, any_small: bool = True) -> RelativeStats:
    """Max error over all elements; RMSE, MERE, MARE over the normal values (msprobe drops small
    values from them, precision.md section 7); the count of small values off by more than small_atol.

    `noise`: an absolute error the spec allows everywhere (float32 cancellation noise, OutputRule
    small_atol): it is taken off each error before the relative ones, whose denominators near the
    small-value threshold would otherwise turn that noise into ratios of 30 (measured: NSA grad dK
    with 99% of its values near zero, bench/verdict_calibration.py)."""
    err = np.abs(x - g) if err is None else err
    if any_small:
        normal = ~small
        en, gn = err[normal], g[normal]
        small_errs = int(np.count_nonzero(small & (err > small_atol)))
    else:                                   # nothing small (`any_small` False): no masked copies
        en, gn, small_errs = err.ravel(), g.ravel(), 0
    num = np.maximum(en - noise, 0.0) if noise else en
    rel = num / np.abs(gn) if en.size else np.zeros(0)
    return RelativeStats(float(err.max()) if err.size else 0.0,
                         float(np.sqrt(np.dot(en, en) / en.size)) if en.size else 0.0,
                         float(rel.mean()) if rel.size else 0.0, float(rel.max()) if rel.size else 0.0, small_errs)


def rounding_floors(g: np.ndarray, u: np.ndarray, small: np.ndarray, any_small: bool = True) -> RelativeStats:
    """What correct rounding costs (u = ULP(g)), times RATIO_FLOOR: the smallest denominators a
    ratio may use (over the same domains as relative_stats)."""
    un, gn = (u[~small], g[~small]) if any_small else (u.ravel(), g.ravel())
    ur = un / np.abs(gn) if un.size else np.zeros(0)
    f = P.RATIO_FLOOR
    return RelativeStats(f * P.ROUNDING_MAX_ULP * float(u.max()) if u.size else 0.0,
                         f * P.ROUNDING_RMS_ULP * float(np.sqrt(np.dot(un, un) / un.size)) if un.size else 0.0,
                         f * P.ROUNDING_MEAN_ULP * float(ur.mean()) if ur.size else 0.0,
                         f * P.ROUNDING_MAX_ULP * float(ur.max()) if ur.size else 0.0, 0)


def _ratio(x: float, base: float, floor: float) -> float:
    d = max(base, floor)
    return x / d if d > 0 else (1.0 if x == 0 else math.inf)


def count_limit(base_count: int, ratio: float) -> float:
    """Largest count of errors allowed against a baseline with `base_count`: ratio x base plus chance
    (policy.COUNT_SIGMAS * sqrt(base) + 2)."""
    return ratio * base_count + P.COUNT_SIGMAS * math.sqrt(base_count) + 2


# ---- verdicts ---------------------------------------------------------------------------------
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
    if baseline is not None and np.shape(baseline) != golden.shape:
        baseline = None                  # a baseline of another shape cannot be a third party here
    if rule.kind == "exact":
        return _exact(actual, golden)
    a = actual.astype(np.float64)
    g = np.asarray(golden, dtype=np.float64)          # the golden is float64 already: no copy
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf at a NaN/inf position
        d = a - g
    if np.isfinite(d).all():             # the common case: both finite everywhere (a NaN or inf on
        finite = None                    # either side makes d NaN or inf), no masks, no masked copies
        af, gf, diff = a, g, Diff(a, g, dtype, d)
    else:
        bad_nf = _nonfinite_mismatch(a, g)
        finite = np.isfinite(a) & np.isfinite(g)
        af, gf = a[finite], g[finite]
        diff = Diff(af, gf, dtype, d[finite])
        if bad_nf.any():
            m = error_metrics(af, gf, dtype, diff)
            m["numel"] = int(a.size)
            m["mismatch_count"] = int(bad_nf.sum())
            m["mismatch_frac"] = m["mismatch_count"] / max(a.size, 1)
            return Comparison("fail", f"{int(bad_nf.sum())} NaN/inf position(s) differ from the golden; "
                              + _worst(actual, golden, bad_nf, a.shape), m)
    m = error_metrics(af, gf, dtype, diff)
    m["numel"] = int(a.size)
    bf = None
    if baseline is not None:
        bf = np.asarray(baseline).astype(np.float64)
        bf = bf if finite is None else bf[finite]
        if not np.isfinite(bf).all():
            bf = None                    # a baseline with its own NaN/inf is no yardstick
    if rule.kind == "quant_int8":
        return _quant_int8(actual, golden, af, gf, bf, finite, m, rule)
    if rule.kind == "elementwise":
        return _elementwise(actual, golden, diff, finite, m, dtype, rule)
    return _reduction(actual, golden, diff, bf, finite, m, dtype, rule)


def _bad_mask(shape, finite, bad_of_finite: np.ndarray) -> np.ndarray:
    """Elements judged bad, in the output's shape (`finite` None: every element was judged)."""
    if finite is None:
        return bad_of_finite.reshape(shape)
    out = np.zeros(shape, bool)
    out[finite] = bad_of_finite
    return out


def _exact(actual, golden) -> Comparison:
    m = _empty_metrics(golden.size)
    if actual.dtype != golden.dtype:
        return Comparison("fail", f"dtype {name_of(actual)} != golden dtype {name_of(golden)}", m)
    is_fp = actual.dtype.kind == "f" or name_of(actual) == "bfloat16"
    same = bits(actual) == bits(golden)
    if is_fp and not same.all():          # both-NaN is a match whatever the payload
        same |= np.isnan(actual.astype(np.float32)) & np.isnan(golden.astype(np.float32))
    bad = ~same
    m["mismatch_count"] = int(bad.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(golden.size, 1)
    numeric = golden.size and (actual.dtype.kind in "fiub" or is_fp)
    if numeric and not bad.any():         # bitwise equal: every error metric is zero (no arithmetic on
        m.update(_zero_error_metrics(golden, name_of(golden), is_fp))   # millions of cache rows)
    elif numeric:
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


def _zero_error_metrics(golden, dtype: str, is_fp: bool) -> dict:
    """error_metrics of an array against itself, without the arithmetic."""
    m = {"max_abs_err": 0.0, "max_rel_err": 0.0, "mere": 0.0, "rmse": 0.0, "cosine": 1.0, "error_balance": 0.0}
    if is_fp:
        m.update(max_ulp=0.0, beyond_1ulp_frac=0.0, small_count=_small_count_bitwise(golden, dtype),
                 small_err_count=0, small_err_frac=0.0)
    return m


def _small_count_bitwise(x: np.ndarray, dtype: str) -> int:
    """Elements with |x| below the small-value threshold, counted on the bit patterns (no float copy
    of a cache of millions of rows). With the sign bit cleared, the patterns of IEEE floats order as
    their magnitudes, and NaN and inf sort above every finite threshold, so they are never small."""
    thr = P.SMALL_THRESHOLD.get(dtype, 0.0)
    if not thr or x.size == 0:
        return 0
    b = bits(x)
    magnitude = np.array(np.iinfo(b.dtype).max >> 1, b.dtype)         # all bits but the sign
    limit = bits(np.asarray(thr).astype(x.dtype).reshape(1))[0]        # thresholds are powers of two: exact
    return int(np.count_nonzero((b & magnitude) < limit))


def _quant_int8(actual, golden, af, gf, bf, finite, m, rule: OutputRule) -> Comparison:
    diff = np.abs(af - gf)
    n = max(diff.size, 1)
    ob1 = int(np.count_nonzero(diff == 1))
    m["off_by_one_frac"] = ob1 / n
    badmask = _bad_mask(actual.shape, finite, diff > 1)
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / n
    if badmask.any():
        return Comparison("fail", f"{m['mismatch_count']} element(s) off by more than 1; "
                          + _worst(actual, golden, badmask, actual.shape), m)
    if bf is not None:
        grade = P.GRADES[rule.grade]
        m["grade"] = rule.grade
        base_ob1 = int(np.count_nonzero(np.abs(bf - gf) >= 1))
        limit = count_limit(base_ob1, grade.rmse)
        if ob1 > limit:
            return Comparison("fail", f"{ob1} off-by-one(s) > {limit:.1f} allowed against the baseline's {base_ob1} "
                              f"({rule.grade}: {grade.rmse:g}x + chance)", m)
    if m["off_by_one_frac"] > P.WARN_OFF_BY_ONE_FRAC:
        return Comparison("warn", f"off-by-one fraction {m['off_by_one_frac']:.3%} > {P.WARN_OFF_BY_ONE_FRAC:.0%}", m)
    return Comparison("pass", f"|diff| <= 1, off-by-one fraction {m['off_by_one_frac']:.3%}", m)


def _elementwise(actual, golden, x: Diff, finite, m, dtype, rule: OutputRule) -> Comparison:
    gf = x.g
    rtol = P.ELEMENTWISE_RTOL.get(dtype, 0.0)
    gmax = float(x.abs_g.max()) if gf.size else 0.0
    slack = P.ELEMENTWISE_ULP_OF_MAX * float(ulp(gmax, dtype)) if is_float(dtype) else 0.0
    small = x.small if x.small is not None else small_mask(gf, dtype)
    if rule.small_ulp_of_max is not None:
        small_bound = rule.small_ulp_of_max * float(ulp(gmax, dtype))
        small_text = f"{rule.small_ulp_of_max:g} ULP(max|g|) ({rule.small_why})"
    else:
        small_bound = P.SMALL_ATOL.get(dtype, 0.0)
        small_text = "the small-value bound"
    err = x.err
    allowed = rtol * x.abs_g + slack
    if x.any_small:
        allowed = np.where(small, small_bound, allowed)
    badmask = _bad_mask(actual.shape, finite, err > allowed)
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(gf.size, 1)
    if badmask.any():
        n_small = int(np.count_nonzero(small & (err > allowed)))
        return Comparison("fail", f"{m['mismatch_count']} element(s) beyond rtol {rtol:.3g}*|g| + 2 ULP ({slack:.3g})"
                          f" ({n_small} of them small values |g| < {P.SMALL_THRESHOLD.get(dtype, 0):.3g} beyond "
                          f"{small_text} {small_bound:.3g}); " + _worst(actual, golden, badmask, actual.shape), m)
    bias, limit = bias_ulp(x.normal(x.a), x.normal(gf), dtype, x.normal(x.d),
                           x.normal(x.u) if x.u is not None else None)
    m["bias_ulp"] = bias
    if bias > limit:
        return Comparison("fail", f"biased: mean signed error {bias:.3f} ULP > {limit:.3f} (a correctly rounded "
                          f"result averages 0; each element is within its bound)", m)
    return Comparison("pass", f"within rtol {rtol:.3g}*|g| + 2 ULP, small values within {small_bound:.3g}, "
                      f"bias {bias:.3f} ULP", m)


def _reduction(actual, golden, x: Diff, bf, finite, m, dtype, rule: OutputRule) -> Comparison:
    if not is_float(dtype):
        return Comparison("fail", f"reduction rule on a non-float dtype {dtype!r}: a spec error", m)
    gf, err, u, small = x.g, x.err, x.u, x.small
    max_err = float(err.max()) if err.size else 0.0
    if bf is None:
        return _against_cap(actual, golden, x, max_err, finite, m, dtype, rule)
    grade = P.GRADES[rule.grade]
    m["grade"] = rule.grade
    small_atol = max(rule.small_atol or 0.0, P.SMALL_ATOL[dtype])   # an opt-in only ever loosens
    noise = rule.small_atol or 0.0
    mine = relative_stats(x.a, gf, small, small_atol, noise, err=err, any_small=x.any_small)
    base = relative_stats(bf, gf, small, small_atol, noise, any_small=x.any_small)
    floor = rounding_floors(gf, u, small, x.any_small)
    m["baseline_max_err"] = base.max_err
    ratios = {"max err": _ratio(max_err, base.max_err, floor.max_err),
              "MARE": _ratio(mine.mare, base.mare, floor.mare),
              "MERE": _ratio(mine.mere, base.mere, floor.mere),
              "RMSE": _ratio(mine.rmse, base.rmse, floor.rmse)}
    m.update(baseline_ratio=ratios["max err"], mare_ratio=ratios["MARE"], mere_ratio=ratios["MERE"],
             rmse_ratio=ratios["RMSE"])
    allowed = rule.k * base.max_err + P.REDUCTION_ULP_FLOOR * u
    if x.any_small:
        allowed = np.where(small, np.maximum(allowed, small_atol), allowed)   # small values: by their bound
    badmask = _bad_mask(actual.shape, finite, err > allowed)
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(err.size, 1)
    if badmask.any():
        return Comparison("fail", f"{m['mismatch_count']} element(s) beyond {rule.k:g} x baseline max err "
                          f"{base.max_err:.4g} + 0.5 ULP(g_i); " + _worst(actual, golden, badmask, actual.shape), m)
    limits = {"MARE": grade.mare, "MERE": grade.mere, "RMSE": grade.rmse}
    over = [f"{k} ratio {ratios[k]:.2f} > {v:g}" for k, v in limits.items() if ratios[k] > v]
    if over:
        return Comparison("fail", f"beyond CANN grade {rule.grade} ({rule.grade_why}): " + ", ".join(over), m)
    small_lim = count_limit(base.small_errs, P.SMALL_RATIO_LIMIT)
    if mine.small_errs > small_lim:
        return Comparison("fail", f"{mine.small_errs} small-value error(s) (|g| < {P.SMALL_THRESHOLD[dtype]:.3g}, "
                          f"|err| > {small_atol:.3g}) > {small_lim:.1f} allowed against the baseline's "
                          f"{base.small_errs}", m)
    text = ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    stricter = P.STRICTER[rule.grade]
    if stricter:
        sg = P.GRADES[stricter]
        near = [k for k, v in {"MARE": sg.mare, "MERE": sg.mere, "RMSE": sg.rmse}.items() if ratios[k] > v]
        if near:
            return Comparison("warn", f"within {rule.grade}, but {', '.join(near)} beyond {stricter}; ratios {text}", m)
    return Comparison("pass", f"within {rule.grade} of the baseline; ratios {text}", m)


def _against_cap(actual, golden, x: Diff, max_err, finite, m, dtype, rule: OutputRule) -> Comparison:
    """The backend is the baseline (or none is available): absolute caps (precision.md section 6)."""
    gf, err = x.g, x.err
    gmax = float(x.abs_g.max()) if gf.size else 0.0
    two_ulp = 2 * float(ulp(gmax, dtype))
    atol, rtol = rule.abs_cap or P.BASELINE_CAP.get(dtype, (0.0, 0.0))
    allowed_max = atol + rtol * gmax + two_ulp
    badmask = _bad_mask(actual.shape, finite, err > allowed_max)
    m["mismatch_count"] = int(badmask.sum())
    m["mismatch_frac"] = m["mismatch_count"] / max(err.size, 1)
    if max_err > allowed_max:
        return Comparison("fail", f"baseline judged by absolute cap: max err {max_err:.4g} > "
                          f"{atol:g} + {rtol:g}*max|g| + 2 ULP = {allowed_max:.4g}; "
                          + _worst(actual, golden, badmask, actual.shape), m)
    return Comparison("pass", f"max err {max_err:.4g} <= absolute cap {allowed_max:.4g} (backend is the baseline)", m)

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

from . import error_stats as S
from . import policy as P
from .dtypes import bits, is_float, name_of, ulp_scalar
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


# ---- metrics (pure; gathered chunk by chunk in harness.error_stats) ----------------------------
def error_metrics(a: np.ndarray, g: np.ndarray, dtype: str) -> dict:
    """Error statistics of a against g (arrays of equal shape, finite entries only): see
    harness.error_stats.metrics."""
    m = _empty_metrics(np.size(a))
    t = S.fold(np.asarray(a).reshape(-1), np.asarray(g, dtype=np.float64).reshape(-1), dtype)
    return S.metrics(t, dtype, m)


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
    return _worst_at(a, g, None, flat)


def _worst_at(actual: np.ndarray, golden: np.ndarray, index: np.ndarray | None, k: int) -> str:
    """The same text for compared element k (`index`: the compared elements' flat positions, None: all)."""
    flat = k if index is None else int(index[k])
    idx = np.unravel_index(flat, actual.shape) if actual.shape else ()
    return (f"worst at index {tuple(int(i) for i in idx)}: actual {actual.ravel()[flat]!r}, "
            f"golden {golden.ravel()[flat]!r}")


def _nonfinite_mismatch(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Elements where NaN-ness or inf (with sign) differ."""
    nan_a, nan_g = np.isnan(a), np.isnan(g)
    inf_a, inf_g = np.isinf(a), np.isinf(g)
    return (nan_a != nan_g) | (inf_a != inf_g) | (inf_a & inf_g & (np.sign(a) != np.sign(g)))


def _all_finite(x: np.ndarray) -> bool:
    """No NaN or inf in flat x, without a float64 copy (bfloat16: on its exponent bits), in chunks."""
    if x.dtype.kind in "iub":
        return True
    if name_of(x) == "bfloat16":
        ones = np.uint16(0x7F80)
        return not any(np.any((bits(c) & ones) == ones) for c in _pieces(x))
    return all(bool(np.isfinite(c).all()) for c in _pieces(x))


# Elements per slice of the numpy passes here (bitwise equality, finiteness, max|g|): a boolean or
# float64 temporary of 1M elements stays in L2-L3, and a cache of 1.5G elements is 1.5K Python steps.
PIECE = 1 << 20


def _pieces(x: np.ndarray, n: int = PIECE):
    """Flat x in slices of n elements: a boolean temporary per slice stays in cache."""
    return (x[lo:lo + n] for lo in range(0, x.size, n)) if x.size else iter([x])


class FoldMemo:
    """The folds (harness.error_stats) of one golden part against the arrays already folded there: a
    case's baseline, then a backend whose output equals it bit for bit (the torch backend is the
    baseline: its output is the stored one), get the Totals again instead of a second pass. A fold
    depends on its array, the golden part, the dtype and its `relative` settings, nothing else.
    One memo per golden part (References keeps one per output region)."""

    def __init__(self):
        self._seen: list = []            # (golden, array, dtype, relative, Totals)
        self._judged: list = []          # (golden, actual, baseline, rule, dtype, Comparison)

    def judged(self, golden, actual: np.ndarray, baseline, rule: OutputRule, dtype: str) -> Comparison | None:
        """The Comparison of an actual with these bits, already judged against this golden part by this
        rule with this baseline (the same object, or both none): a comparison is a function of them
        alone. Backends often agree bit for bit (a cache's untouched rows; a split or cast both
        compute exactly), and a second backend then costs a bit comparison, not a second judgement."""
        for gold, a, base, r, dt, c in self._judged:
            if (gold is golden and base is baseline and r is rule and dt == dtype and a.shape == actual.shape
                    and a.dtype == actual.dtype and _same_bits(a, actual)):
                return c
        return None

    def keep(self, golden, actual: np.ndarray, baseline, rule: OutputRule, dtype: str, c: Comparison) -> None:
        self._judged.append((golden, actual, baseline, rule, dtype, c))

    def fold(self, golden, a: np.ndarray, g: np.ndarray, dtype: str, relative, floors: bool = False) -> S.Totals:
        for gold, x, dt, rel, t in self._seen:
            if (gold is golden and dt == dtype and rel == relative and (t.has(S.FLOORS) or not floors)
                    and x.shape == a.shape and x.dtype == a.dtype and _same_bits(x, a)):
                return t
        t = S.fold(a, g, dtype, relative=relative, floors=floors)
        self._seen.append((golden, a, dtype, relative, t))
        return t


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    """x and y (same shape and dtype) bit for bit: 0.3 ns an element against a fold's 2; the first
    256 first, where another backend's output already differs."""
    bx, by = bits(x).reshape(-1), bits(y).reshape(-1)
    return np.array_equal(bx[:256], by[:256]) and np.array_equal(bx, by)


def _folded(memo: FoldMemo | None, golden, a, g, dtype, relative, index, floors: bool = False) -> S.Totals:
    """fold(a, g) with no bound, through `memo` where a and g are the whole arrays (index None)."""
    if memo is None or index is not None:
        return S.fold(a, g, dtype, relative=relative, floors=floors)
    return memo.fold(golden, a, g, dtype, relative, floors)


def compare(actual: np.ndarray, golden: np.ndarray, rule: OutputRule, dtype: str | None = None,
            baseline: np.ndarray | None = None, memo: FoldMemo | None = None) -> Comparison:
    """Judge `actual` against `golden` by `rule`; `baseline` is the same-precision reference; `memo`
    (optional, per golden part) saves folding an array twice, and judging the same bits twice."""
    actual, golden = np.asarray(actual), np.asarray(golden)
    dtype = dtype or name_of(actual)
    if memo is not None:
        c = memo.judged(golden, actual, baseline, rule, dtype)
        if c is None:
            c = _compare(actual, golden, rule, dtype, baseline, memo)
            memo.keep(golden, actual, baseline, rule, dtype, c)
        return c
    return _compare(actual, golden, rule, dtype, baseline, memo)


def _compare(actual, golden, rule: OutputRule, dtype: str, baseline, memo) -> Comparison:
    if actual.shape != golden.shape:
        m = _empty_metrics(golden.size)
        return Comparison("fail", f"shape {actual.shape} != golden shape {golden.shape}", m)
    if baseline is not None and np.shape(baseline) != golden.shape:
        baseline = None                  # a baseline of another shape cannot be a third party here
    if rule.kind == "exact":
        return _exact(actual, golden)
    a = actual.reshape(-1)                             # converted to float64 chunk by chunk
    g = np.asarray(golden, dtype=np.float64).reshape(-1)   # the golden is float64 already: no copy
    b = None if baseline is None else np.asarray(baseline).reshape(-1)
    if rule.kind != "quant_int8":        # the folds count NaN / inf on the way: filter only where there are any
        judged = _judge(actual, golden, a, g, b, None, dtype, rule, memo)
        if judged is not None:
            return judged
    index = None                         # flat positions of the compared elements (None: all of them)
    if not (_all_finite(a) and _all_finite(g)):
        af64 = a.astype(np.float64)
        bad_nf = _nonfinite_mismatch(af64, g)
        finite = np.isfinite(af64) & np.isfinite(g)
        index = np.flatnonzero(finite)
        a, g = a[finite], g[finite]
        b = None if b is None else b[finite]
        if bad_nf.any():
            m = error_metrics(a, g, dtype)
            m["numel"] = int(actual.size)
            m["mismatch_count"] = int(bad_nf.sum())
            m["mismatch_frac"] = m["mismatch_count"] / max(actual.size, 1)
            return Comparison("fail", f"{int(bad_nf.sum())} NaN/inf position(s) differ from the golden; "
                              + _worst(actual, golden, bad_nf.reshape(actual.shape), actual.shape), m)
    if b is not None and not _all_finite(b):
        b = None                         # a baseline with its own NaN/inf is no yardstick
    if rule.kind == "quant_int8":
        m = error_metrics(a, g, dtype)
        m["numel"] = int(actual.size)
        return _quant_int8(actual, golden, a.astype(np.float64), g, None if b is None else b.astype(np.float64),
                           index, m, rule)
    judged = _judge(actual, golden, a, g, b, index, dtype, rule)
    assert judged is not None, "a, g and b are finite here"
    return judged


def _judge(actual, golden, a, g, b, index, dtype, rule: OutputRule, memo=None) -> Comparison | None:
    """An elementwise or reduction verdict; None where a or g holds a NaN or inf (the caller filters)."""
    m = _empty_metrics(actual.size)
    if rule.kind == "elementwise":
        return _elementwise(actual, golden, a, g, index, m, dtype, rule)
    return _reduction(actual, golden, a, g, b, index, m, dtype, rule, memo)


def _max_abs(g: np.ndarray) -> float:
    """max|g| of flat float64 g, chunk by chunk (no whole-array |g|)."""
    if g.size <= PIECE:                  # one piece: no generator (most outputs are smaller than one)
        return float(np.abs(g).max()) if g.size else 0.0
    return max(float(np.abs(c).max()) for c in _pieces(g))


def _exact(actual, golden) -> Comparison:
    m = _empty_metrics(golden.size)
    if actual.dtype != golden.dtype:
        return Comparison("fail", f"dtype {name_of(actual)} != golden dtype {name_of(golden)}", m)
    is_fp = actual.dtype.kind == "f" or name_of(actual) == "bfloat16"
    ba, bg = bits(actual).reshape(-1), bits(golden).reshape(-1)
    if (golden.size and (actual.dtype.kind in "fiub" or is_fp)
            and (np.array_equal(ba, bg) if ba.size <= PIECE
                 else all(np.array_equal(x, y) for x, y in zip(_pieces(ba), _pieces(bg))))):
        # bitwise equal (the common case, caches of millions of rows): every error metric is zero
        m.update(_zero_error_metrics(golden, name_of(golden), is_fp))
        return Comparison("pass", "bitwise equal", m)
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
    if x.size == 0 or not P.SMALL_THRESHOLD.get(dtype, 0.0):
        return 0
    b = bits(x).reshape(-1)
    magnitude, limit = _small_bits(dtype, x.dtype)
    if b.size <= PIECE:
        return int(np.count_nonzero((b & magnitude) < limit))
    return sum(int(np.count_nonzero((c & magnitude) < limit)) for c in _pieces(b))


_SMALL_BITS: dict = {}


def _small_bits(dtype: str, np_type) -> tuple:
    """(all bits but the sign, the small-value threshold's bits) of a float dtype, found once each."""
    memo = (dtype, np.dtype(np_type).str)           # the byte order too: bits are compared as stored
    if memo not in _SMALL_BITS:
        u = bits(np.zeros(1, np_type)).dtype
        magnitude = np.array(np.iinfo(u).max >> 1, u)
        limit = bits(np.asarray(P.SMALL_THRESHOLD[dtype]).astype(np_type).reshape(1))[0]   # powers of two: exact
        _SMALL_BITS[memo] = (magnitude, limit)
    return _SMALL_BITS[memo]


def _quant_int8(actual, golden, af, gf, bf, index, m, rule: OutputRule) -> Comparison:
    diff = np.abs(af - gf)
    n = max(diff.size, 1)
    ob1 = int(np.count_nonzero(diff == 1))
    m["off_by_one_frac"] = ob1 / n
    bad = diff > 1
    m["mismatch_count"] = int(bad.sum())
    m["mismatch_frac"] = m["mismatch_count"] / n
    if m["mismatch_count"]:
        worst = int(np.argmax(np.where(bad, diff, -1.0)))
        return Comparison("fail", f"{m['mismatch_count']} element(s) off by more than 1; "
                          + _worst_at(actual, golden, index, worst), m)
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


def _elementwise(actual, golden, a, g, index, m, dtype, rule: OutputRule) -> Comparison:
    n = g.size
    rtol = P.ELEMENTWISE_RTOL.get(dtype, 0.0)
    gmax = _max_abs(g)
    slack = P.ELEMENTWISE_ULP_OF_MAX * ulp_scalar(gmax, dtype) if is_float(dtype) else 0.0
    if rule.small_ulp_of_max is not None:
        small_bound = rule.small_ulp_of_max * ulp_scalar(gmax, dtype)
        small_text = f"{rule.small_ulp_of_max:g} ULP(max|g|) ({rule.small_why})"
    else:
        small_bound = P.SMALL_ATOL.get(dtype, 0.0)
        small_text = "the small-value bound"
    t = S.fold(a, g, dtype, bias=True, bound=S.Bound(slack, rtol, 0.0, small_bound, keep_normal=False))
    if not t.finite:
        return None
    S.metrics(t, dtype, m)
    m["mismatch_count"] = t.bad
    m["mismatch_frac"] = t.bad / max(n, 1)
    if t.bad:
        return Comparison("fail", f"{t.bad} element(s) beyond rtol {rtol:.3g}*|g| + 2 ULP ({slack:.3g})"
                          f" ({t.bad_small} of them small values |g| < {P.SMALL_THRESHOLD.get(dtype, 0):.3g} beyond "
                          f"{small_text} {small_bound:.3g}); " + _worst_at(actual, golden, index, t.worst), m)
    bias, limit = S.bias(t)
    m["bias_ulp"] = bias
    if bias > limit:
        return Comparison("fail", f"biased: mean signed error {bias:.3f} ULP > {limit:.3f} (a correctly rounded "
                          f"result averages 0; each element is within its bound)", m)
    return Comparison("pass", f"within rtol {rtol:.3g}*|g| + 2 ULP, small values within {small_bound:.3g}, "
                      f"bias {bias:.3f} ULP", m)


def _side(rule: OutputRule, dtype: str) -> tuple[float, float]:
    """A reduction's relative settings (harness.error_stats.fold): the small-value tolerance (an opt-in
    only ever loosens it) and the absolute noise the spec allows everywhere."""
    return max(rule.small_atol or 0.0, P.SMALL_ATOL[dtype]), rule.small_atol or 0.0


def _bad_folded(t: S.Totals, a, g, dtype, relative, bound: S.Bound) -> S.Totals:
    """t (folded without a bound) with the elements beyond `bound` counted and the worst one found:
    a second fold, only where some element can be beyond it. Every element's bound is at least
    bound.c0 (its other terms are not negative, and a rounded sum of non-negative terms is never
    below one of them), so a max error within c0 means no element is bad."""
    if t[S.MAX_ERR] <= bound.c0:
        return t
    return S.fold(a, g, dtype, relative=relative, bound=bound)


def _reduction(actual, golden, a, g, b, index, m, dtype, rule: OutputRule, memo=None) -> Comparison:
    n = g.size
    if not is_float(dtype):
        m.update(error_metrics(a, g, dtype), numel=int(actual.size))
        return Comparison("fail", f"reduction rule on a non-float dtype {dtype!r}: a spec error", m)
    side = _side(rule, dtype)
    if b is None:
        return _against_cap(actual, golden, a, g, index, m, dtype, rule, memo)
    grade = P.GRADES[rule.grade]
    m["grade"] = rule.grade
    small_atol = side[0]
    tb = _folded(memo, golden, b, g, dtype, side, index, floors=True)   # the baseline first: the bound needs it
    if tb[S.NONFINITE_G]:
        return None
    if tb[S.NONFINITE_A]:                # a baseline with its own NaN/inf is no yardstick
        return _against_cap(actual, golden, a, g, index, m, dtype, rule, memo)
    base, floor = S.relative(tb), S.floors(tb)
    t = _folded(memo, golden, a, g, dtype, side, index)
    if not t.finite:
        return None
    t = _bad_folded(t, a, g, dtype, side,   # small values by their own bound
                    S.Bound(rule.k * base.max_err, 0.0, P.REDUCTION_ULP_FLOOR, small_atol))
    S.metrics(t, dtype, m)
    mine = S.relative(t)
    max_err = mine.max_err
    m["baseline_max_err"] = base.max_err
    ratios = {"max err": _ratio(max_err, base.max_err, floor.max_err),
              "MARE": _ratio(mine.mare, base.mare, floor.mare),
              "MERE": _ratio(mine.mere, base.mere, floor.mere),
              "RMSE": _ratio(mine.rmse, base.rmse, floor.rmse)}
    m.update(baseline_ratio=ratios["max err"], mare_ratio=ratios["MARE"], mere_ratio=ratios["MERE"],
             rmse_ratio=ratios["RMSE"])
    m["mismatch_count"] = t.bad
    m["mismatch_frac"] = t.bad / max(n, 1)
    if t.bad:
        return Comparison("fail", f"{t.bad} element(s) beyond {rule.k:g} x baseline max err "
                          f"{base.max_err:.4g} + 0.5 ULP(g_i); " + _worst_at(actual, golden, index, t.worst), m)
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


def _against_cap(actual, golden, a, g, index, m, dtype, rule: OutputRule, memo=None) -> Comparison:
    """The backend is the baseline (or none is available): absolute caps (precision.md section 6)."""
    n = g.size
    side = _side(rule, dtype)
    t = _folded(memo, golden, a, g, dtype, side, index)
    if not t.finite:
        return None
    gmax = t[S.MAX_G] if n else 0.0
    two_ulp = 2 * ulp_scalar(gmax, dtype)
    atol, rtol = rule.abs_cap or P.BASELINE_CAP.get(dtype, (0.0, 0.0))
    allowed_max = atol + rtol * gmax + two_ulp
    t = _bad_folded(t, a, g, dtype, side, S.Bound(allowed_max))
    S.metrics(t, dtype, m)
    max_err = t[S.MAX_ERR] if n else 0.0
    m["mismatch_count"] = t.bad
    m["mismatch_frac"] = t.bad / max(n, 1)
    if max_err > allowed_max:
        return Comparison("fail", f"baseline judged by absolute cap: max err {max_err:.4g} > "
                          f"{atol:g} + {rtol:g}*max|g| + 2 ULP = {allowed_max:.4g}; "
                          + _worst_at(actual, golden, index, t.worst), m)
    return Comparison("pass", f"max err {max_err:.4g} <= absolute cap {allowed_max:.4g} (backend is the baseline)", m)

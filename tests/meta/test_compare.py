"""The comparison policy with injected faults (precision.md section 6)."""
from __future__ import annotations

import numpy as np
import pytest

from harness.compare import compare
from harness.dtypes import bits, cast, np_dtype, ulp
from harness.spec import OutputRule

EXACT, QUANT, ELEM = OutputRule("exact"), OutputRule("quant_int8"), OutputRule("elementwise")
RED = OutputRule("reduction", k=2.0)


def _rand(dtype, shape=(64, 33), seed=0):
    return cast(np.random.default_rng(seed).uniform(-5, 5, shape), dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
def test_one_flipped_bit_in_a_copy_fails(dtype):
    g = _rand(dtype) if dtype != "int8" else np.random.default_rng(0).integers(-128, 127, (64, 33)).astype(np.int8)
    a = g.copy()
    b = bits(a)
    b[5, 7] ^= 1  # lowest mantissa bit: the smallest possible corruption
    c = compare(a, g, EXACT)
    assert c.verdict == "fail" and c.metrics["mismatch_count"] == 1
    assert "(5, 7)" in c.reason
    assert compare(g.copy(), g, EXACT).verdict == "pass"


def test_exact_treats_both_nan_as_match_and_sign_of_zero_as_difference():
    g = np.array([np.nan, 1.0, 0.0], np.float16)
    assert compare(g.copy(), g, EXACT).verdict == "pass"
    a = np.array([np.nan, 1.0, -0.0], np.float16)
    assert compare(a, g, EXACT).verdict == "fail"


def test_int8_off_by_one_passes_off_by_two_fails():
    g = np.arange(-100, 100, dtype=np.int8)
    a = g.copy()
    a[3] += 1
    c = compare(a, g.astype(np.float64), QUANT, "int8")
    assert c.verdict == "pass" and c.metrics["off_by_one_frac"] == pytest.approx(1 / 200)
    a[4] += 2
    c = compare(a, g.astype(np.float64), QUANT, "int8")
    assert c.verdict == "fail" and c.metrics["mismatch_count"] == 1 and "(4,)" in c.reason


def test_many_off_by_ones_warn():
    g = np.zeros(100, np.int8)
    a = g.copy()
    a[:10] = 1
    assert compare(a, g.astype(np.float64), QUANT, "int8").verdict == "warn"


def test_reduction_equal_to_baseline_passes_and_ratio_is_one():
    g = np.linspace(-3, 3, 1000)
    base = cast(g, "float16")
    c = compare(base.copy(), g, RED, "float16", base)
    assert c.verdict == "pass" and c.metrics["baseline_ratio"] == pytest.approx(1.0)


def test_reduction_without_baseline_uses_absolute_cap():
    g = np.linspace(-3, 3, 1000)
    assert compare(cast(g, "float16"), g, RED, "float16").verdict == "pass"
    assert compare(cast(g + 0.05, "float16"), g, RED, "float16").verdict == "fail"


@pytest.mark.parametrize("rule", [ELEM, RED, QUANT])
def test_nan_where_golden_has_none_fails(rule):
    g = np.linspace(-3, 3, 50)
    a = cast(g, "float16")
    a[10] = np.nan
    c = compare(a, g, rule, "float16", cast(g, "float16"))
    assert c.verdict == "fail" and "NaN" in c.reason


def test_inf_sign_must_match():
    g = np.array([np.inf, 1.0])
    assert compare(np.array([np.inf, 1.0], np.float16), g, ELEM, "float16").verdict == "pass"
    assert compare(np.array([-np.inf, 1.0], np.float16), g, ELEM, "float16").verdict == "fail"


def test_elementwise_two_ulp_passes_and_a_percent_fails():
    g = np.linspace(0.5, 4.0, 200)
    a = cast(g, "float16")
    assert compare(a, g, ELEM, "float16").verdict == "pass"
    assert compare(cast(g * 1.01, "float16"), g, ELEM, "float16").verdict == "fail"


def test_shape_mismatch_fails():
    assert compare(np.zeros(3, np.float16), np.zeros(4), ELEM, "float16").verdict == "fail"


def test_metrics_are_recorded():
    g = np.array([1.0, 2.0, -1.0, 0.5])
    a = cast(g + [0.001, 0.0, 0.0, -0.001], "float16")
    m = compare(a, g, ELEM, "float16").metrics
    for key in ("max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "mismatch_frac", "cosine", "error_balance"):
        assert m[key] is not None, key
    assert m["cosine"] == pytest.approx(1.0, abs=1e-6)


def test_ulp_of_one():
    assert float(ulp(1.0, "float16")) == 2.0**-10
    assert float(ulp(1.0, "bfloat16")) == 2.0**-7
    assert float(ulp(1.0, "float32")) == 2.0**-23
    assert float(ulp(0.0, "float16")) == 2.0**-24  # smallest subnormal spacing
    assert np_dtype("bfloat16").itemsize == 2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_ulp_scalar_is_the_array_ulp(dtype):
    """The comparison's plain-Python ULP of max|g| against the array one, on powers of two and their
    neighbours over all of float64's range, subnormals, zeros, inf and NaN."""
    from harness.dtypes import ulp_scalar

    rng = np.random.default_rng(2)
    powers = np.ldexp(1.0, np.arange(-1074, 1024))
    xs = np.concatenate([powers, np.nextafter(powers, 0), np.nextafter(powers, np.inf), -powers,
                         rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 40, 2000), [0.0, -0.0, 5e-324]])
    xs = xs[np.isfinite(xs)]
    want = ulp(xs, dtype)
    got = np.array([ulp_scalar(x, dtype) for x in xs])
    assert np.array_equal(got, want)
    assert ulp_scalar(np.inf, dtype) == np.inf and np.isnan(ulp_scalar(np.nan, dtype))


# ---- the policy's teeth (issue 13; precision.md section 7 measured these against msprobe) ----------
def _matmul(dtype, m=64, k=128, n=48, seed=3):
    """(golden float64, same-precision baseline: float32 accumulation then one rounding) of A @ B."""
    rng = np.random.default_rng(seed)
    a = cast(rng.uniform(-1, 1, (m, k)), dtype).astype(np.float64)
    b = cast(rng.uniform(-1, 1, (k, n)), dtype).astype(np.float64)
    g = a @ b
    base = cast((a.astype(np.float32) @ b.astype(np.float32)), dtype)
    return g, base


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduction_three_times_the_baselines_error_fails(dtype):
    g, base = _matmul(dtype)
    bad = cast(g + 3.0 * (base.astype(np.float64) - g), dtype)
    c = compare(bad, g, RED, dtype, base)
    assert c.verdict == "fail", c.reason
    assert c.metrics["rmse_ratio"] > 2.0 and c.metrics["grade"] == "L0"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduction_legit_variants_pass(dtype):
    g, base = _matmul(dtype)
    golden_rounded = cast(g, dtype)                     # the correctly rounded result
    c = compare(golden_rounded, g, RED, dtype, base)
    assert c.verdict == "pass", c.reason
    assert c.metrics["rmse_ratio"] <= 1.0
    rng = np.random.default_rng(9)                      # another summation order: float32-level noise
    other = cast(g + rng.normal(0, 2.0**-24, g.shape) * np.abs(g).max() * 4, dtype)
    assert compare(other, g, RED, dtype, base).verdict == "pass"
    assert compare(base.copy(), g, RED, dtype, base).verdict == "pass"


def test_reduction_grade_decides_between_levels():
    g, _ = _matmul("float16")
    e = np.random.default_rng(8).normal(0, 1, g.shape) * ulp(g, "float16") * 0.3
    base = g + e                                        # unrounded arrays: the ratios are exact
    mid = g + 1.6 * e                                   # 1.6x the baseline's error everywhere
    ratio = compare(mid, g, RED, "float16", base).metrics["rmse_ratio"]
    assert 1.2 < ratio < 2.0
    assert compare(mid, g, OutputRule("reduction", grade="L0"), "float16", base).verdict == "warn"
    assert compare(mid, g, OutputRule("reduction", grade="L2"), "float16", base).verdict == "fail"


@pytest.mark.parametrize("kind", ["reduction", "elementwise"])
def test_systematic_half_percent_bias_in_bf16_fails(kind):
    g, base = _matmul("bfloat16")
    biased = cast(g * 1.005, "bfloat16")
    c = compare(biased, g, OutputRule(kind), "bfloat16", base)
    assert c.verdict == "fail", c.reason
    if kind == "elementwise":
        assert "biased" in c.reason and c.metrics["bias_ulp"] > 0.5
    plus = cast(g + 0.005 * np.abs(g).mean(), "bfloat16")   # an additive offset is a bias too
    assert compare(plus, g, OutputRule("elementwise"), "bfloat16").verdict == "fail"


def test_elementwise_correct_rounding_is_unbiased():
    g = np.random.default_rng(4).uniform(-4, 4, 5000)
    c = compare(cast(g, "bfloat16"), g, ELEM, "bfloat16")
    assert c.verdict == "pass" and c.metrics["bias_ulp"] < 0.05


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_small_value_noise_fails_and_is_counted(dtype):
    rng = np.random.default_rng(5)
    g = rng.uniform(-4, 4, 1000)
    g[:300] = rng.uniform(0.5e-5, 1.5e-5, 300)          # 30% small values near 1e-5
    noisy = g.copy()
    noisy[:300] += rng.choice([-1, 1], 300) * 2.0**-13
    c = compare(cast(noisy, dtype), g, ELEM, dtype)
    assert c.verdict == "fail" and "small values" in c.reason
    assert c.metrics["small_count"] == 300 and c.metrics["small_err_count"] == 300
    assert c.metrics["small_err_frac"] == pytest.approx(1.0)
    ok = compare(cast(g, dtype), g, ELEM, dtype)
    assert ok.verdict == "pass" and ok.metrics["small_err_count"] == 0
    loose = OutputRule("elementwise", small_ulp_of_max=2.0, small_why="test: cancellation")
    assert compare(cast(noisy, dtype), g, loose, dtype).verdict == "pass"   # the opt-in looser rule


def test_looser_small_rule_needs_a_reason():
    with pytest.raises(Exception, match="small_why"):
        OutputRule("elementwise", small_ulp_of_max=2.0)


def test_reduction_small_value_errors_against_the_baseline():
    g, base = _matmul("float16")
    g = g.copy()
    g[0, :40] = 1e-5                                     # small goldens the baseline gets right
    base = base.copy()
    base[0, :40] = cast(g[0, :40], "float16")
    bad = base.copy()
    bad[0, :40] = cast(g[0, :40] + 2.0**-12, "float16")  # the same error rows ... far off near zero
    c = compare(bad, g, RED, "float16", base)
    assert c.verdict == "fail"
    assert c.metrics["small_err_count"] == 40


def test_int8_off_by_ones_held_against_the_baseline():
    rng = np.random.default_rng(6)
    g = rng.integers(-120, 120, 2000).astype(np.float64)
    base = g.copy()
    base[:20] += 1                                       # the baseline's own near-.5 flips: 1%
    dev = g.copy()
    dev[:30] += 1
    assert compare(dev.astype(np.int8), g, QUANT, "int8", base.astype(np.int8)).verdict == "pass"
    dev[:200] += 1                                       # 10%: a scale or rounding-mode error
    dev[:200] = np.minimum(dev[:200], g[:200] + 1)
    c = compare(dev.astype(np.int8), g, QUANT, "int8", base.astype(np.int8))
    assert c.verdict == "fail" and "off-by-one" in c.reason


def test_new_metrics_are_recorded():
    g, base = _matmul("float16")
    m = compare(base.copy(), g, RED, "float16", base).metrics
    for key in ("mare_ratio", "mere_ratio", "rmse_ratio", "grade", "small_count", "small_err_count",
                "small_err_frac", "beyond_1ulp_frac"):
        assert m[key] is not None, key
    assert m["rmse_ratio"] == pytest.approx(1.0) and m["beyond_1ulp_frac"] == 0.0


def test_bfloat16_cast_goes_through_float32_whatever_ml_dtypes_version():
    """1 + 2^-8 + 2^-30 rounds to 1 + 2^-7 in one step, but to float32 1 + 2^-8 first, a bf16 tie that
    goes to even (1.0): harness.dtypes.cast takes the float32 path under ml_dtypes 0.6 and 0.7 alike."""
    x = np.array([1 + 2.0**-8 + 2.0**-30])
    assert float(cast(x, "bfloat16")[0]) == 1.0
    assert float(cast(x.astype(np.float32), "bfloat16")[0]) == 1.0


# ---- folds shared through a memo (harness.compare.FoldMemo), bad elements counted on a second fold ----
def _same(c1, c2):
    assert (c1.verdict, c1.reason) == (c2.verdict, c2.reason)
    assert c1.metrics == c2.metrics


@pytest.mark.parametrize("shift", [0.0, 3.0])          # within the policy; beyond the per-element bound
def test_a_memo_gives_the_same_comparisons_as_none(shift):
    """The baseline's fold is shared; a backend returning the baseline bit for bit reuses it; a third
    array is folded on its own. Verdicts, reasons and every metric as without a memo."""
    from harness.compare import FoldMemo

    g, base = _matmul("bfloat16")
    other = cast(g + shift * (base.astype(np.float64) - g), "bfloat16")
    memo = FoldMemo()
    _same(compare(other, g, RED, "bfloat16", base, memo), compare(other, g, RED, "bfloat16", base))
    _same(compare(base.copy(), g, RED, "bfloat16", None, memo), compare(base.copy(), g, RED, "bfloat16"))
    assert len(memo._seen) == 2                        # the baseline (reused by the copy) and `other`
    flipped = base.copy()
    bits(flipped)[0, 0] ^= 1                           # one bit away from the baseline: not reused
    _same(compare(flipped, g, RED, "bfloat16", None, memo), compare(flipped, g, RED, "bfloat16"))
    assert len(memo._seen) == 3


@pytest.mark.parametrize("rule", [RED, ELEM, OutputRule("exact")], ids=["reduction", "elementwise", "exact"])
def test_a_memo_judges_the_same_bits_once_per_baseline(rule):
    """A second backend whose region equals the first's bit for bit, against the same golden part,
    rule and baseline, gets the first one's Comparison; other bits, or another baseline, are judged
    afresh, and every judgement is what it is without a memo."""
    from harness.compare import FoldMemo

    g, base = _matmul("bfloat16")
    g = cast(g, "bfloat16") if rule.kind == "exact" else g
    a = cast(np.asarray(g, np.float64) * (1 + 2.0**-9), "bfloat16")
    memo = FoldMemo()
    first = compare(a, g, rule, "bfloat16", base, memo)
    assert compare(a.copy(), g, rule, "bfloat16", base, memo) is first          # same bits: reused
    _same(first, compare(a.copy(), g, rule, "bfloat16", base))
    other = compare(a.copy(), g, rule, "bfloat16", None, memo)                 # another baseline
    assert other is not first
    _same(other, compare(a.copy(), g, rule, "bfloat16", None))
    flipped = a.copy()
    bits(flipped)[0, 0] ^= 1
    again = compare(flipped, g, rule, "bfloat16", base, memo)
    assert again is not first
    _same(again, compare(flipped, g, rule, "bfloat16", base))


def test_bad_elements_are_counted_and_named_where_the_max_error_passes_its_first_term():
    """A reduction folds without a bound first; only where the max error exceeds k x the baseline's
    does it fold again, and that fold must count every element beyond its bound and name the worst."""
    g, base = _matmul("float16")
    a = base.copy()
    err = np.abs(base.astype(np.float64) - g).max()
    a[7, 9] = cast(np.array(g[7, 9] + 40 * err), "float16")   # far beyond 2 x the baseline's max error
    a[3, 1] = cast(np.array(g[3, 1] + 20 * err), "float16")
    c = compare(a, g, RED, "float16", base)
    assert c.verdict == "fail" and c.metrics["mismatch_count"] == 2 and "index (7, 9)" in c.reason
    capped = compare(cast(g + 0.05, "float16"), g, RED, "float16")   # the cap: all 3072 beyond it
    assert capped.verdict == "fail" and capped.metrics["mismatch_count"] == g.size


@pytest.mark.parametrize("shape, mask_shape", [((6, 3, 5), (6, 3)), ((6, 3, 5), (6,)), ((7,), (7,)), ((0, 4), (0,))])
def test_a_region_part_is_boolean_indexing(shape, mask_shape):
    from harness.spec import Region

    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    mask = rng.random(mask_shape) < 0.5
    r = Region("x", mask, ELEM)
    got = r.part(x)
    assert got.shape == x[mask].shape and np.array_equal(got, x[mask])
    assert np.array_equal(r.part(x[..., ::-1]), x[..., ::-1][mask])     # a strided view too
    assert Region("x", None, ELEM).part(x) is x
    everything = Region("x", np.ones(mask_shape, bool), ELEM)
    assert np.array_equal(everything.part(x), x[np.ones(mask_shape, bool)])
    assert everything.part(x).shape == x[np.ones(mask_shape, bool)].shape
    with pytest.raises(IndexError, match="does not fit"):
        r.part(np.zeros((5,) + shape[1:]))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_a_bitwise_equal_exact_region_counts_its_small_values_on_the_bits(dtype):
    from harness import policy as P

    rng = np.random.default_rng(6)
    for n in (37, (1 << 20) + 5):                        # one piece; several
        g = cast(rng.standard_normal(n) * 10.0 ** rng.integers(-9, 2, n), dtype)
        c = compare(g.copy(), g, EXACT)
        want = np.count_nonzero(np.abs(g.astype(np.float64)) < P.SMALL_THRESHOLD[dtype])
        assert c.verdict == "pass" and c.metrics["small_count"] == want > 0

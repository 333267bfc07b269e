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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduction_error_three_times_baseline_fails(dtype):
    rng = np.random.default_rng(1)
    g = rng.uniform(-1, 1, 4096)
    noise = rng.uniform(-1, 1, g.size) * 1e-2
    base = cast(g + noise, dtype)
    berr = np.abs(base.astype(np.float64) - g)
    good = cast(g + noise * 1.5, dtype)
    bad = cast(g + noise * 3.0, dtype)
    assert compare(good, g, RED, dtype, base).verdict in ("pass", "warn")
    c = compare(bad, g, RED, dtype, base)
    assert c.verdict == "fail"
    assert c.metrics["baseline_ratio"] == pytest.approx(np.abs(bad.astype(np.float64) - g).max() / berr.max())
    assert c.metrics["baseline_ratio"] > 2.5


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

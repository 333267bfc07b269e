"""harness.half: float16 <-> float64 exactly as numpy's astype (values, ties, NaN payloads, memory order)."""
from __future__ import annotations

import numpy as np
import pytest

from harness.dtypes import cast
from harness.half import narrow, widen


def test_every_float16_bit_pattern_widens_to_astypes_bits():
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    assert widen(x).view(np.uint64).tobytes() == x.astype(np.float64).view(np.uint64).tobytes()


@pytest.mark.parametrize("view", [
    lambda a: a, lambda a: a.transpose(2, 0, 1), lambda a: a[:, ::2, 1:], lambda a: a[..., ::-1],
    lambda a: a.transpose(0, 2, 1)[:, 3:7], lambda a: a[1],
], ids=["dense", "transposed", "strided", "reversed", "both", "sub-block"])
def test_views_keep_astypes_values_and_memory_order(view):
    a = np.random.default_rng(1).standard_normal((3, 10, 8)).astype(np.float16)
    x = view(a)
    want, got = x.astype(np.float64), widen(x)
    assert got.shape == want.shape and got.strides == want.strides
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("x", [np.float16(-0.0), np.zeros((0, 4), np.float16), np.ones(5, np.float32),
                               np.arange(6, dtype=np.int8)], ids=["0-d", "empty", "float32", "int8"])
def test_other_inputs_are_astype(x):
    want, got = np.asarray(x).astype(np.float64), widen(x)
    assert got.dtype == np.float64 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


def _neighbours_of_every_half() -> np.ndarray:
    """Every finite float16 value, every midpoint between neighbours (the ties), one float64 ULP
    either side of each, the overflow boundary, and both signs."""
    h = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)   # 0 .. 65504
    mids = (h[:-1] + h[1:]) / 2                                                   # exact in float64
    top = np.array([65504.0, 65519.99, 65520.0, 65536.0, 1e300, np.inf, 2.0**-25, 2.0**-26, 5e-324])
    core = np.concatenate([h, mids, top])
    near = np.concatenate([np.nextafter(core, np.inf), np.nextafter(core, -np.inf)])
    x = np.concatenate([core, near])
    return np.concatenate([x, -x])


def test_narrow_rounds_every_tie_and_neighbour_as_astype():
    x = _neighbours_of_every_half()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    assert narrow(x).view(np.uint16).tobytes() == want.view(np.uint16).tobytes()


def test_narrow_of_random_values_and_nan_payloads_is_astype():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(200_000) * 10.0 ** rng.uniform(-12, 6, 200_000),
                        rng.uniform(-70000, 70000, 10_000)])
    payloads = rng.integers(1, 1 << 52, 1000, dtype=np.uint64) | np.uint64(0x7FF0000000000000)
    nans = np.concatenate([payloads, payloads | np.uint64(1 << 63), np.array([0x7FF0000000000001], np.uint64)])
    x = np.concatenate([x, nans.view(np.float64)])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16)
    assert np.array_equal(narrow(x).view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("view", [lambda a: a, lambda a: a.T, lambda a: a[::2, 1:]], ids=["dense", "transposed", "strided"])
def test_narrow_keeps_astypes_memory_order(view):
    x = view(np.random.default_rng(3).standard_normal((6, 9)))
    want, got = x.astype(np.float16), narrow(x)
    assert got.strides == want.strides and np.array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_max_magnitude_bits_is_the_max_of_abs(dtype):
    """Every pattern once (NaN patterns above inf), and random arrays against numpy's abs().max()."""
    from harness.half import max_magnitude_bits

    dt = cast(np.zeros(1), dtype).dtype
    every = np.arange(1 << 16, dtype=np.uint16).view(dt)
    assert max_magnitude_bits(every) == 0x7FFF
    rng = np.random.default_rng(5)
    for scale in (1e-6, 1.0, 300.0):
        x = cast(rng.standard_normal((7, 33)) * scale, dtype)
        want = np.abs(x.astype(np.float32)).max()
        assert np.array([max_magnitude_bits(x)], np.uint16).view(dt)[0].astype(np.float32) == want
        assert max_magnitude_bits(x[:, ::3]) == max_magnitude_bits(np.ascontiguousarray(x[:, ::3]))
    assert max_magnitude_bits(np.zeros(0, dt)) == 0
    with pytest.raises(TypeError, match="16-bit"):
        max_magnitude_bits(np.zeros(3, np.float32))

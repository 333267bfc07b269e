"""harness.widen: float16 -> float64 exactly as numpy's astype (values, NaN payloads, memory order)."""
from __future__ import annotations

import numpy as np
import pytest

from harness.widen import widen


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

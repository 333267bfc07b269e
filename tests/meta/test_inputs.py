"""Inputs are deterministic in (case, seed) and follow the declared distributions."""
from __future__ import annotations

import numpy as np
import pytest

from harness import registry
from harness.dtypes import bits
from harness.inputs import CHUNK, fill


def _same(a, b):
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(bits(a), bits(b))
    return a == b


@pytest.mark.parametrize("op_name", registry.op_names())
def test_inputs_are_deterministic_in_case_and_seed(op_name):
    spec = registry.op(op_name)
    case = [c for c in spec.cases("smoke") if not c.negative][0]
    a, b = spec.make_inputs(case, seed=3), spec.make_inputs(case, seed=3)
    assert a.keys() == b.keys()
    assert all(_same(a[k], b[k]) for k in a)
    c = spec.make_inputs(case, seed=4)
    floats = [k for k, v in a.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fV" and v.size > 8]
    assert floats and any(not _same(a[k], c[k]) for k in floats), "another seed must give other data"


def test_distributions():
    rng = np.random.default_rng(0)
    u = fill(rng, (10000,), "float16").astype(np.float64)
    assert u.min() >= -5 and u.max() <= 5 and u.std() > 2
    t = fill(rng, (10000,), "float32", "tiny")
    assert np.abs(t).max() <= 1e-3
    o = fill(rng, (100000,), "float32", "outliers")
    assert np.abs(o).max() > 100 and (np.abs(o) > 5).mean() < 0.01
    i8 = fill(rng, (10000,), "int8")
    assert i8.dtype == np.int8 and i8.min() == -128 and i8.max() == 127
    with pytest.raises(ValueError, match="unknown distribution"):
        fill(rng, (3,), "float16", "bogus")


@pytest.mark.parametrize("low, high", [(-5.0, 5.0), (-1e-3, 1e-3), (0.0, 1.0)])
def test_uniform_is_numpys_uniform_bit_for_bit(low, high):
    """fill's uniform draw (in place, two ufuncs) gives the doubles rng.uniform gives: the stored
    inputs and every golden built from them stay what they were."""
    from harness.inputs import _uniform

    n = 3 * CHUNK + 17                       # across chunk boundaries: each call takes the next numbers
    rng = np.random.default_rng(7)
    ours = np.concatenate([_uniform(rng, low, high, k) for k in (CHUNK, CHUNK, CHUNK, 17)])
    theirs = np.random.default_rng(7).uniform(low, high, size=n)
    assert np.array_equal(ours.view(np.int64), theirs.view(np.int64))
    a = fill(np.random.default_rng(3), (n,), "float32", "uniform", low, high)
    b = np.random.default_rng(3).uniform(low, high, size=n).astype(np.float32)
    assert np.array_equal(a.view(np.int32), b.view(np.int32))

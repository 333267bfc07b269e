"""Input data distributions (the CANN precision standard's, precision.md section 1).

uniform   U[-5, 5] (the default)
normal    N(mu, sigma) with mu drawn in [-100, 100] and sigma in [1, 25]
tiny      U[-1e-3, 1e-3]
outliers  U[-5, 5] with 0.1% of the elements multiplied by 1000
Integer dtypes draw uniformly over the dtype's range (int8) or [-1000, 1000] (wider ints).
Values are rounded to the target dtype once, so every backend sees the same numbers.
"""
from __future__ import annotations

import numpy as np

from .dtypes import cast, is_float

DISTRIBUTIONS = ("uniform", "normal", "tiny", "outliers")


def fill(rng: np.random.Generator, shape, dtype: str, dist: str = "uniform", low: float = -5.0,
         high: float = 5.0) -> np.ndarray:
    """An array of `shape` and `dtype` drawn from `dist` (see the module docstring)."""
    shape = tuple(int(s) for s in shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if not is_float(dtype):
        info = np.iinfo(np.dtype(dtype))
        lo, hi = (info.min, info.max) if info.bits <= 8 else (-1000, 1000)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    if dist == "uniform":
        x = rng.uniform(low, high, size=shape)
    elif dist == "normal":
        x = rng.normal(rng.uniform(-100, 100), rng.uniform(1, 25), size=shape)
    elif dist == "tiny":
        x = rng.uniform(-1e-3, 1e-3, size=shape)
    elif dist == "outliers":
        x = rng.uniform(low, high, size=shape)
        mask = rng.random(shape) < 1e-3
        x = np.where(mask, x * 1000.0, x)
    else:
        raise ValueError(f"unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
    return cast(x, dtype)

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

from .dtypes import cast, is_float, np_dtype

DISTRIBUTIONS = ("uniform", "normal", "tiny", "outliers")


# Draws are made and cast in chunks of this many elements into the output: a float64 temporary of a
# whole cache (1.5 GB for the largest nightly one) costs more in page faults than the draw itself
# (measured: 50M float16 elements 1.69 s at once, 0.34 s in chunks). The values are the same: each
# draw takes the next numbers of the generator's stream, whatever the call boundaries.
CHUNK = 1 << 18


def fill(rng: np.random.Generator, shape, dtype: str, dist: str = "uniform", low: float = -5.0,
         high: float = 5.0) -> np.ndarray:
    """An array of `shape` and `dtype` drawn from `dist` (see the module docstring)."""
    shape = tuple(int(s) for s in shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if not is_float(dtype):
        info = np.iinfo(np.dtype(dtype))
        lo, hi = (info.min, info.max) if info.bits <= 8 else (-1000, 1000)
        return _chunked(shape, dtype, lambda k: rng.integers(lo, hi, size=k, endpoint=True).astype(dtype))
    if dist == "uniform":
        draw = lambda k: rng.uniform(low, high, size=k)          # noqa: E731
    elif dist == "normal":
        mu, sigma = rng.uniform(-100, 100), rng.uniform(1, 25)
        draw = lambda k: rng.normal(mu, sigma, size=k)           # noqa: E731
    elif dist == "tiny":
        draw = lambda k: rng.uniform(-1e-3, 1e-3, size=k)        # noqa: E731
    elif dist == "outliers":                  # all values, then all masks: not chunked (a rare tier)
        x = rng.uniform(low, high, size=shape)
        mask = rng.random(shape) < 1e-3
        return cast(np.where(mask, x * 1000.0, x), dtype)
    else:
        raise ValueError(f"unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
    return _chunked(shape, dtype, lambda k: cast(draw(k), dtype))


def _chunked(shape: tuple, dtype: str, make) -> np.ndarray:
    """An array of `shape` filled by make(k) -> k elements of `dtype`, CHUNK at a time, in order."""
    n = int(np.prod(shape, dtype=np.int64))
    if n <= CHUNK:
        return make(n).reshape(shape)
    out = np.empty(n, np_dtype(dtype))
    for start in range(0, n, CHUNK):
        out[start:start + CHUNK] = make(min(CHUNK, n - start))
    return out.reshape(shape)

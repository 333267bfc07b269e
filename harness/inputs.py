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
        draw = lambda k: _uniform(rng, low, high, k)             # noqa: E731
    elif dist == "normal":
        mu, sigma = rng.uniform(-100, 100), rng.uniform(1, 25)
        draw = lambda k: rng.normal(mu, sigma, size=k)           # noqa: E731
    elif dist == "tiny":
        draw = lambda k: _uniform(rng, -1e-3, 1e-3, k)           # noqa: E731
    elif dist == "outliers":                  # all values, then all masks: not chunked (a rare tier)
        x = rng.uniform(low, high, size=shape)
        mask = rng.random(shape) < 1e-3
        return cast(np.where(mask, x * 1000.0, x), dtype)
    else:
        raise ValueError(f"unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
    return _chunked(shape, dtype, lambda k: cast(draw(k), dtype))


def _uniform(rng: np.random.Generator, low: float, high: float, k: int) -> np.ndarray:
    """rng.uniform(low, high, k) bit for bit (numpy computes low + (high - low) * u of the same doubles u),
    in place: 4.0 instead of 5.1 to 5.8 ns an element here, and the same IEEE product and sum on every
    CPU (a compiler may fuse numpy's C expression into one FMA; two ufuncs never are)."""
    u = rng.random(k)
    np.multiply(u, high - low, out=u)
    np.add(u, low, out=u)
    return u


def _chunked(shape: tuple, dtype: str, make) -> np.ndarray:
    """An array of `shape` filled by make(k) -> k elements of `dtype`, CHUNK at a time, in order."""
    n = int(np.prod(shape, dtype=np.int64))
    if n <= CHUNK:
        return make(n).reshape(shape)
    out = np.empty(n, np_dtype(dtype))
    for start in range(0, n, CHUNK):
        out[start:start + CHUNK] = make(min(CHUNK, n - start))
    return out.reshape(shape)

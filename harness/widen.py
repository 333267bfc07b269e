"""float16 -> float64, bit for bit as numpy's astype, four times faster.

numpy converts float16 element by element in C without SIMD (1.8 ns per element on this project's
2-core host); the goldens upcast every fp16 K and V they read, which was most of the IFA golden's
time at S = 2048 (bench/harness_speed.py section 4). A compiled loop on the bits takes 0.4 ns.

    widen(x)      x.astype(np.float64): same values, same memory order (order="K"), NaN payloads kept
    half_bits(h)  one float16 bit pattern as float64 (compiled; harness.error_stats reads with it)

Other dtypes go through astype (bfloat16 and float32 are already fast there).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_SUBNORMAL_STEP = 2.0 ** -24          # float16's subnormal spacing: an exact float64


def _half_bits(h):
    """The float64 of float16 bits h (an int): normals and inf/NaN by rebiasing the exponent (15 ->
    1023) and moving the sign and mantissa bits; zeros and subnormals as mantissa x 2**-24, exact."""
    h = np.int64(h)
    ex, man = (h >> 10) & 0x1F, h & 0x3FF
    if ex == 0:
        v = man * _SUBNORMAL_STEP
        return -v if h & 0x8000 else v
    e64 = 0x7FF if ex == 31 else ex + 1008
    return np.int64(((h & 0x8000) << 48) | (e64 << 52) | (man << 42)).view(np.float64)


def _widen_loop(src, dst):
    for i in range(src.size):
        dst[i] = half_bits(src[i])


half_bits = None
_loop = None


def compiled():
    """(half_bits, the array loop), compiled by numba on first use (cached on disk where it can be)."""
    global half_bits, _loop
    if _loop is None:
        from numba import njit

        opts = dict(nogil=True, error_model="numpy")
        try:
            half_bits = njit(cache=True, **opts)(_half_bits)
            _loop = njit(cache=True, **opts)(_widen_loop)
        except RuntimeError as exc:          # no writable cache directory (a read-only install)
            log.info("numba cannot cache the float16 conversion (%s); compiling it in every process", exc)
            half_bits = njit(**opts)(_half_bits)
            _loop = njit(**opts)(_widen_loop)
    return half_bits, _loop


def widen(x) -> np.ndarray:
    """np.asarray(x).astype(np.float64), bit for bit and in the same memory order."""
    x = np.asarray(x)
    if x.dtype != np.float16 or x.size == 0:
        return x.astype(np.float64)
    out = np.empty_like(x, dtype=np.float64)            # astype's layout: the source's order ("K")
    dst = out.ravel(order="K")                           # a view: `out` is dense in that order
    if not np.shares_memory(dst, out):
        return x.astype(np.float64)
    _, loop = compiled()
    loop(x.ravel(order="K").view(np.uint16), dst)        # x's elements in the same order (a copy only
    return out                                           # where x is not dense)

"""Dtype names used across opdiff and their numpy / torch counterparts.

Dtypes travel as strings ("float16", "bfloat16", "int8", ...) so that case parameters stay JSON.
bfloat16 arrays are numpy arrays of `ml_dtypes.bfloat16`.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from .half import narrow

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "uint8", "int16", "int32", "int64")
ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


def np_dtype(name: str) -> np.dtype:
    """numpy dtype for a dtype name; bfloat16 comes from ml_dtypes."""
    if name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    if name not in ALL_DTYPES:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(ALL_DTYPES)}")
    return np.dtype(name)


_NAMES: dict = {np.dtype(ml_dtypes.bfloat16): "bfloat16"}


def name_of(dtype) -> str:
    """The opdiff dtype name of a numpy dtype or array (memoized: the comparison asks ~10 times per
    output, and np.dtype(...).name builds its string each time, 4 us)."""
    dt = np.dtype(getattr(dtype, "dtype", dtype))
    name = _NAMES.get(dt)
    if name is None:
        name = _NAMES[dt] = dt.name
    return name


def itemsize(name: str, default: int | None = None) -> int:
    """Bytes per element of a dtype name; `default` (when given) for a name that is no dtype, e.g. "none"."""
    if default is not None and name not in ALL_DTYPES:
        return default
    return np_dtype(name).itemsize


def nz_c0(name: str) -> int:
    """Elements per row of a FRACTAL_NZ fractal (C0): 32 for int8, 16 otherwise (seed 003 elenum_aligned;
    ops.md section 4: nz[blk, h // C0, t, h % C0] = nd[blk, t, h])."""
    return 32 if name == "int8" else 16


def is_float(name: str) -> bool:
    return name in FLOAT_DTYPES


def finfo(name: str):
    return ml_dtypes.finfo(np_dtype(name)) if name == "bfloat16" else np.finfo(np_dtype(name))


def cast(x: np.ndarray, name: str) -> np.ndarray:
    """Cast with round-to-nearest-even (numpy's and ml_dtypes' float cast mode).

    To bfloat16, a float64 array goes through float32 first, as a device's last cast does (fp32 ->
    bf16). ml_dtypes 0.6 cast float64 that way itself; 0.7 rounds float64 once, which moved about 1
    in 10^5 values of every seeded bf16 input (and broke a replay of a dump made under 0.6). Going
    through float32 here keeps inputs and goldens the same under either version.
    """
    a = np.asarray(x)
    if name == "bfloat16" and a.dtype == np.float64:
        a = a.astype(np.float32)
    if name == "float16" and a.dtype == np.float64:
        # bit for bit as astype, 5x faster (100x below 2**-14, where astype takes a scalar path for
        # subnormals): every fp16 input is drawn in float64 and cast here (harness.half)
        return narrow(a)
    return a.astype(np_dtype(name))


#: a float64's exponent bits (harness.error_stats takes ULPs the same way in its compiled loop)
EXPONENT_MASK = 0x7FF0000000000000
_EXPONENT_BITS = np.uint64(EXPONENT_MASK)


_ULP_CONSTANTS: dict[str, tuple[float, float]] = {}


def ulp_constants(name: str) -> tuple[float, float]:
    """(smallest normal, 2**-nmant) of float dtype `name`: a ULP is the larger of 2**floor(log2|x|)
    and the smallest normal, times 2**-nmant (ulp, ulp_scalar and the comparison loop all take it so)."""
    if name not in _ULP_CONSTANTS:
        fi = finfo(name)
        _ULP_CONSTANTS[name] = (2.0 ** int(fi.minexp), 2.0 ** -int(fi.nmant))
    return _ULP_CONSTANTS[name]


def ulp(x, name: str) -> np.ndarray:
    """Spacing of the dtype `name` at |x| (one unit in the last place), as float64.

    Below the smallest normal the spacing is constant (subnormals).
    """
    smallest_normal, scale = ulp_constants(name)
    a = np.asarray(x, dtype=np.float64)
    # 2**floor(log2|x|) is x's float64 bit pattern with sign and mantissa cleared: one AND on the bits,
    # exact for every normal float64 (a zero or a float64 subnormal gives 0, floored below). 8x
    # faster than frexp (10M elements: 110 -> 13 ms); the comparison calls it on every output.
    power = (np.ascontiguousarray(a).view(np.uint64) & _EXPONENT_BITS).view(np.float64).reshape(a.shape)
    u = np.maximum(power, smallest_normal) * scale             # both factors powers of two: exact
    if not np.isfinite(u).all():                  # inf and NaN stay as they were (the mask made both inf)
        u = np.where(np.isfinite(a), u, np.abs(a))
    return u[()] if u.ndim == 0 else u            # a scalar in, a numpy scalar out


def ulp_scalar(x: float, name: str) -> float:
    """float(ulp(x, name)) for one number, in plain Python: the comparison asks it of max|g| on every
    output, and the array path costs 10 us a call. frexp gives 2**floor(log2|x|) exactly (a float64
    subnormal's is below every dtype's smallest normal, so the max takes that, as ulp's mask does)."""
    smallest_normal, scale = ulp_constants(name)
    ax = abs(float(x))
    if not math.isfinite(ax):
        return ax                                  # inf and NaN as ulp leaves them
    power = math.ldexp(1.0, math.frexp(ax)[1] - 1) if ax else 0.0
    return max(power, smallest_normal) * scale


def bits(x: np.ndarray) -> np.ndarray:
    """View an array's bytes as unsigned integers of the same width (for bitwise comparison)."""
    x = np.ascontiguousarray(x)
    width = x.dtype.itemsize
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    return x.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width])


def torch_dtype(name: str):
    import torch  # lazy: torch is optional for the numpy-only path

    return {
        "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
        "float64": torch.float64, "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
        "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
    }[name]

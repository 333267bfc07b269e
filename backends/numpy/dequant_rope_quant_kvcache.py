"""numpy golden of DequantRopeQuantKvcache (ops.md section 2), float64, vectorized.

Float outputs (q_out, k_out, v_out) are returned unrounded in float64; the caches are int8 with the
documented quantization `int8(clamp(rint(y), -128, 127))`, y = value / scale + offset computed in
float64 from the unrounded RoPE result. `compute(..., rounding="away")` exists only so that tests
can show a ties-away implementation is caught.
"""
from __future__ import annotations

import numpy as np

from cases.dequant_rope_quant_kvcache import write_rows   # the spec's Scatter rows (its regions use them too)


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def dims(inputs):
    """(T tokens, S per batch, Nq, Nkv, D) from the input shapes and size_splits."""
    xs, ks = tuple(inputs["x"].shape), tuple(inputs["k_cache"].shape)   # numpy or torch
    t = int(np.prod(xs[:-1]))
    b = xs[0]
    nkv, d = ks[-2], ks[-1]
    nq = int(inputs["size_splits"][0]) // d
    return t, t // b, nq, nkv, d


def dequant(inputs) -> np.ndarray:
    """x as float64 [T, H]; for int32 x: (x + int bias) * ws * as + float bias (ops.md#2 Dequant)."""
    x = np.asarray(inputs["x"])
    x2 = x.reshape(-1, x.shape[-1])
    if x.dtype != np.int32:
        return x2.astype(np.float64)      # weight_scale, activation_scale, bias are ignored
    bias = inputs.get("bias")
    xi = x2.astype(np.int64)
    if bias is not None and np.asarray(bias).dtype == np.int32:
        xi = xi + np.asarray(bias).astype(np.int64)   # int32 bias: added before the cast
    xf = xi.astype(np.float64) * _f64(inputs["weight_scale"])
    if inputs.get("activation_scale") is not None:
        xf = xf * _f64(inputs["activation_scale"]).reshape(-1, 1)
    if bias is not None and np.asarray(bias).dtype != np.int32:
        xf = xf + _f64(bias)                          # float bias: added after scaling
    return xf


def rope(t: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """NeoX rotate-half: t*cos + cat(-t2, t1)*sin over the last dim; t [T,N,D], cos/sin [T,1,D]."""
    h = t.shape[-1] // 2
    return t * cos + np.concatenate([-t[..., h:], t[..., :h]], -1) * sin


def roped(inputs):
    """q, k (after RoPE) and v, float64, each [T, N, D]."""
    t, _, nq, nkv, d = dims(inputs)
    xf = dequant(inputs)
    q, k, v = np.split(xf, np.cumsum([int(s) for s in inputs["size_splits"]])[:2], -1)
    q, k, v = q.reshape(t, nq, d), k.reshape(t, nkv, d), v.reshape(t, nkv, d)
    c = _f64(inputs["cos"]).reshape(t, 1, d)
    s = _f64(inputs["sin"]).reshape(t, 1, d)
    return rope(q, c, s), rope(k, c, s), v


def quant_inputs(inputs, kv=None) -> dict:
    """y = value / scale (+ offset only when both offsets are given: ops.md#2 hasQuantOffset), [T,Nkv,D].
    `kv`: roped()'s k and v where the caller has them already."""
    k, v = roped(inputs)[1:] if kv is None else kv
    nkv, d = k.shape[1:]
    both = inputs.get("offset_k") is not None and inputs.get("offset_v") is not None
    out = {}
    for name, val in (("k", k), ("v", v)):
        y = val / _f64(inputs[f"scale_{name}"]).reshape(1, nkv, d)
        if both:
            y = y + _f64(inputs[f"offset_{name}"]).reshape(1, nkv, d)
        out[name] = y
    return out


def quantize(y: np.ndarray, rounding: str = "even") -> np.ndarray:
    if rounding == "even":
        r = np.rint(y)                                 # CAST_RINT: ties to even
    elif rounding == "away":
        r = np.sign(y) * np.floor(np.abs(y) + 0.5)     # CAST_ROUND: ties away from zero
    else:
        raise ValueError(f"unknown rounding {rounding!r}; known: even, away")
    return np.clip(r, -128, 127).astype(np.int8)


def compute(params, inputs, rounding: str = "even") -> dict:
    x = np.asarray(inputs["x"])
    lead = x.shape[:-1]
    t, _, nq, nkv, d = dims(inputs)
    q, k, v = roped(inputs)
    y = quant_inputs(inputs, (k, v))
    tok, rows = write_rows(inputs)
    out = {"q_out": q.reshape(lead + (nq, d))}
    if inputs["kv_output"]:
        out["k_out"], out["v_out"] = k.reshape(lead + (nkv, d)), v.reshape(lead + (nkv, d))
    else:
        out["k_out"] = out["v_out"] = np.zeros((0,), np.float64)
    for name in ("k", "v"):
        cache = np.array(inputs[f"{name}_cache"], copy=True)
        flat = cache.reshape((-1, nkv, d))
        flat[rows] = quantize(y[name][tok], rounding)
        out[f"{name}_cache"] = flat.reshape(cache.shape)
    return out


def golden(params, inputs) -> dict:
    return compute(params, inputs)

"""aclnnDequantRopeQuantKvcache (torch: torch_npu.npu_dequant_rope_quant_kvcache / npu_rope_quant_kvcache).

Optionally dequantizes an int32 x, splits it into q, k, v by size_splits, applies NeoX (rotate-half)
RoPE to q and k, quantizes k and v to int8 with `int8(clamp(rint(x / scale + offset), -128, 127))`
and scatters them into int8 K/V caches (contiguous: per batch; page: per token, negative index
skipped). Seed 001_76384a1a5e84732b.txt; semantics and the kernel's precision path in
shared/reference/ops.md section 2.

Case parameters: x_dtype, cos_dtype, sin_dtype, x_rank (2: [B,H], 3: [B,S,H]), cos_rank, batch,
seq_len, num_q_heads, num_kv_heads, head_dim, cache_mode, cache_batch (C1), cache_seq (C2),
pad_tokens (page mode: tokens given a negative index), kv_output, offsets (none / both / k_only /
v_only), has_weight_scale, has_activation_scale, bias_dtype (none or a dtype), quant_mode (0 =
"static"), input_layout, cache_dtype, cache_rank, cache_contiguous, scale_shape, ties (inputs built
so that k and v quantize from exact .5 ties in every precision path), fault (a data-level fault of
a negative case).

Comparison (OpSpec.regions): cache rows not written are compared bitwise with the incoming cache,
written rows by quant_int8, and in `ties` cases the exact-tie elements bitwise (the rounding mode).
"""
from __future__ import annotations

import math
import random

import numpy as np

from harness.dtypes import cast, itemsize
from harness.constraint_kinds import no_fault
from harness.feasible import Chooser, broken_judged
from harness.spec import Constraint, OpSpec, OutputRule, Region, Source, edge

from ._capture_dequant_rope_quant_kvcache import infer as infer_call
from ._official_dequant_rope_quant_kvcache import NAMED

SEED = "001_76384a1a5e84732b.txt"
OPS = "ops.md#2"
FLOATS = ("float16", "bfloat16")
X_DTYPES = ("float16", "bfloat16", "int32")
BIAS_DTYPES = ("none", "float32", "float16", "bfloat16", "int32")
OFFSETS = ("none", "both", "k_only", "v_only")
CACHE_MODES = ("contiguous", "page")
MAX_HIDDEN = 4096          # seed: "x的尾轴小于等于4096,且按64对齐"
HIDDEN_ALIGN = 64
CONTIG_FAULTS = ("contig_index_out_of_range", "contig_index_negative")
TIE_EXP = 4                # ties: k/v values are m * 2**-TIE_EXP, scales 2**-(TIE_EXP-1): y = m/2 exactly


def hidden(p) -> int:
    return (p["num_q_heads"] + 2 * p["num_kv_heads"]) * p["head_dim"]


def tokens(p) -> int:
    return p["batch"] * p["seq_len"]


# ---- data-level checks (both references run them on the real inputs) --------------------------
def _index_data(inputs):
    return np.asarray(inputs["indices"]).astype(np.int64).ravel()


def _check_contig_index(p, inputs):
    if inputs["cache_mode"] != "contiguous":
        return None
    idx, c2 = _index_data(inputs), np.asarray(inputs["k_cache"]).shape[1]
    hi = c2 - p["seq_len"]
    if idx.size != p["batch"]:
        return f"indices has {idx.size} entries, contiguous mode needs one per batch ({p['batch']})"
    bad = (idx < 0) | (idx > hi)
    if bad.any():
        b = int(np.argmax(bad))
        return f"indices[{b}] = {int(idx[b])} outside [0, cache_dim1 - S] = [0, {hi}]"
    return None


def _check_page_index(p, inputs):
    if inputs["cache_mode"] != "page":
        return None
    idx, kc = _index_data(inputs), np.asarray(inputs["k_cache"])
    slots = kc.shape[0] * kc.shape[1]
    if (idx >= slots).any():
        return f"indices hold {int(idx.max())} >= cache_dim0 * cache_dim1 = {slots}"
    return None


def _check_page_unique(p, inputs):
    if inputs["cache_mode"] != "page":
        return None
    idx = _index_data(inputs)
    idx = idx[idx >= 0]
    if np.unique(idx).size != idx.size:
        return "indices repeat a cache slot (page mode needs unique indices)"
    return None


def _check_cache_contiguous(p, inputs):
    for k in ("k_cache", "v_cache"):
        if not np.asarray(inputs[k]).flags.c_contiguous:
            return f"{k} is not contiguous"
    return None


def _check_quant_shapes(p, inputs):
    want = p["num_kv_heads"] * p["head_dim"]
    for k in ("scale_k", "scale_v", "offset_k", "offset_v"):
        v = inputs.get(k)
        if v is not None and np.asarray(v).size != want:
            return f"{k} has shape {np.asarray(v).shape}, expected Nkv*D = {want} elements ([Nkv, D] or flat)"
    return None


def _check_splits(p, inputs):
    d, nkv = p["head_dim"], p["num_kv_heads"]
    want = [p["num_q_heads"] * d, nkv * d, nkv * d]
    got = [int(s) for s in inputs["size_splits"]]
    return None if got == want else f"size_splits {got}, expected [Nq*D, Nkv*D, Nkv*D] = {want}"


C = Constraint
CONSTRAINTS = (
    C("x_rank_2_or_3", Source(SEED, "x shape为[B,S,H]或[B,H] ... shape维度只支持2维或3维"),
      ("x_rank",), lambda p: p["x_rank"] in (2, 3),
      edges=[edge(x_rank=2), edge(x_rank=3)], violations=[dict(x_rank=4)],
      check_inputs=lambda p, i: None if np.asarray(i["x"]).ndim in (2, 3) else f"x is {np.asarray(i['x']).ndim}-D"),
    C("x_dtype_supported", Source(SEED, "x 数据类型支持FLOAT16、INT32、BFLOAT16"),
      ("x_dtype",), lambda p: p["x_dtype"] in X_DTYPES,
      edges=[edge(x_dtype=d) for d in X_DTYPES], violations=[dict(x_dtype="float32")]),
    C("rope_dtype_supported", Source(SEED, "cos/sin 数据类型支持FLOAT16、BFLOAT16"),
      ("cos_dtype",), lambda p: p["cos_dtype"] in FLOATS,
      edges=[edge(x_dtype="int32", cos_dtype=d) for d in FLOATS],
      violations=[dict(x_dtype="int32", cos_dtype="float32")]),
    C("cos_sin_same_dtype", Source(SEED, "cos 数据类型和sin保持一致"),
      ("cos_dtype", "sin_dtype"), lambda p: p["cos_dtype"] == p["sin_dtype"],
      edges=[edge(x_dtype="int32", cos_dtype="bfloat16", sin_dtype="bfloat16")],
      violations=[dict(x_dtype="int32", cos_dtype="float16", sin_dtype="bfloat16")]),
    C("float_x_matches_rope_dtype", Source(SEED, "输入x不为int32时,x、cos、sin与输出qOut、kOut、vOut的数据类型保持一致"),
      ("x_dtype", "cos_dtype"), lambda p: p["x_dtype"] not in FLOATS or p["cos_dtype"] == p["x_dtype"],
      edges=[edge(x_dtype=d, cos_dtype=d) for d in FLOATS],
      violations=[dict(x_dtype="float16", cos_dtype="bfloat16"), dict(x_dtype="bfloat16", cos_dtype="float16")]),
    C("int32_x_requires_weight_scale", Source(SEED, "x为int32时 ... 此时weightScaleOptional必选,activationScaleOptional、biasOptional可选"),
      ("x_dtype", "has_weight_scale"), lambda p: p["x_dtype"] != "int32" or p["has_weight_scale"],
      edges=[edge(x_dtype="int32", has_weight_scale=True, has_activation_scale=False, bias_dtype="none"),
             edge(x_dtype="int32", has_weight_scale=True, has_activation_scale=True, bias_dtype="none")],
      violations=[dict(x_dtype="int32", has_weight_scale=False)]),
    C("bias_dtype_supported", Source(SEED, "biasOptional 数据类型支持FLOAT、FLOAT16(HALF)、INT32、BFLOAT16"),
      ("bias_dtype",), lambda p: p["bias_dtype"] in BIAS_DTYPES,
      edges=[edge(x_dtype="int32", bias_dtype=d) for d in BIAS_DTYPES[1:]],
      violations=[dict(x_dtype="int32", bias_dtype="int8")]),
    C("hidden_max_4096", Source(SEED, "x的尾轴小于等于4096"),
      ("num_q_heads", "num_kv_heads", "head_dim"), lambda p: hidden(p) <= MAX_HIDDEN,
      edges=[edge(num_q_heads=30, num_kv_heads=1, head_dim=128, batch=1, seq_len=2, x_rank=3)],
      violations=[dict(num_q_heads=63, num_kv_heads=1, head_dim=64, batch=1)]),
    C("hidden_multiple_of_64", Source(SEED, "x的尾轴 ... 按64对齐"),
      ("num_q_heads", "num_kv_heads", "head_dim"), lambda p: hidden(p) % HIDDEN_ALIGN == 0,
      edges=[edge(num_q_heads=2, num_kv_heads=1, head_dim=16), edge(num_q_heads=1, num_kv_heads=2, head_dim=64)],
      violations=[dict(num_q_heads=1, num_kv_heads=1, head_dim=32)]),
    C("cos_sin_rank", Source(SEED, "cos: x为3维时shape为[B,S,1,D],x为二维时shape为[B,D] ... shape维度只支持2维或4维"),
      ("x_rank", "cos_rank"), lambda p: p["x_rank"] not in (2, 3) or p["cos_rank"] == (4 if p["x_rank"] == 3 else 2),
      edges=[edge(x_rank=3, cos_rank=4), edge(x_rank=2, cos_rank=2)],
      violations=[dict(x_rank=3, cos_rank=2), dict(x_rank=2, cos_rank=4)]),
    C("cache_int8", Source(SEED, "kCacheRef/vCacheRef 数据类型支持int8"),
      ("cache_dtype",), lambda p: p["cache_dtype"] == "int8",
      edges=[edge(cache_dtype="int8")], violations=[dict(cache_dtype="float16")],
      check_inputs=lambda p, i: None if np.asarray(i["k_cache"]).dtype == np.int8 == np.asarray(i["v_cache"]).dtype
      else "k_cache/v_cache are not int8"),
    C("cache_4d", Source(SEED, "kCacheRef shape为[C_1,C_2,Nkv,D] ... shape维度只支持4维"),
      ("cache_rank",), lambda p: p["cache_rank"] == 4,
      edges=[edge(cache_rank=4)], violations=[dict(cache_rank=3)],
      check_inputs=lambda p, i: None if np.asarray(i["k_cache"]).ndim == 4 == np.asarray(i["v_cache"]).ndim
      else "k_cache/v_cache are not 4-D"),
    C("cache_contiguous", Source(SEED, "kCacheRef/vCacheRef 不支持非连续的Tensor"),
      ("cache_contiguous",), lambda p: bool(p["cache_contiguous"]),
      edges=[edge(cache_contiguous=True)], violations=[dict(cache_contiguous=False)],
      check_inputs=_check_cache_contiguous),
    # The seed says "大于" (cache dim0 > x dim0) but its own example uses caches [320,...] with x [320,1,...],
    # and the kernel writes cache batch b for b < B only (ops.md #2 Scatter: "B' >= B"): we accept C1 == B.
    C("contiguous_cache_batch", Source(SEED, "cacheModeOptional为contiguous时:kCacheRef的第0维大于x的第0维 "
                                       "(example and ops.md#2: >= is what the kernel needs)"),
      ("cache_mode", "batch", "cache_batch"),
      lambda p: p["cache_mode"] != "contiguous" or p["cache_batch"] >= p["batch"],
      edges=[edge(cache_mode="contiguous", batch=3, cache_batch=3), edge(cache_mode="contiguous", batch=2, cache_batch=4)],
      violations=[dict(cache_mode="contiguous", batch=2, cache_batch=1)]),
    C("contiguous_index_bounds", Source(SEED, "contiguous时 indices数据值大于等于0且小于等于vCacheRef的第1维减x的第1维"),
      ("cache_mode", "seq_len", "cache_seq", "fault"),
      lambda p: p["fault"] not in CONTIG_FAULTS and (p["cache_mode"] != "contiguous" or p["cache_seq"] >= p["seq_len"]),
      edges=[edge(cache_mode="contiguous", x_rank=3, seq_len=4, cache_seq=4),
             edge(cache_mode="contiguous", x_rank=2, cache_seq=1)],
      violations=[dict(cache_mode="contiguous", fault="contig_index_out_of_range"),
                  dict(cache_mode="contiguous", fault="contig_index_negative"),
                  dict(cache_mode="contiguous", x_rank=3, seq_len=3, cache_seq=2)],
      check_inputs=_check_contig_index),
    # Negative page indices: the seed says indices >= 0, but the kernel skips them (ops.md#2 Scatter,
    # "if (index >= 0)"), so both references accept them as padding and leave those tokens unwritten.
    C("page_index_bounds", Source(SEED, "page时:inidces 数据值 ... 小于kCacheRef的第0维*第1维 "
                                  "(negative = skipped, ops.md#2)"),
      ("cache_mode", "batch", "seq_len", "cache_batch", "cache_seq", "pad_tokens", "fault"),
      lambda p: p["fault"] != "page_index_out_of_range" and (
          p["cache_mode"] != "page" or p["cache_batch"] * p["cache_seq"] >= tokens(p) - p["pad_tokens"]),
      edges=[edge(cache_mode="page", x_rank=3, batch=2, seq_len=3, pad_tokens=2, cache_batch=1, cache_seq=4),
             edge(cache_mode="page", x_rank=2, batch=3, pad_tokens=0, cache_batch=3, cache_seq=1),
             edge(cache_mode="page", x_rank=3, batch=2, seq_len=2, pad_tokens=4, cache_batch=1, cache_seq=2)],
      violations=[dict(cache_mode="page", fault="page_index_out_of_range"),
                  dict(cache_mode="page", x_rank=3, batch=2, seq_len=3, pad_tokens=0, cache_batch=1, cache_seq=4)],
      check_inputs=_check_page_index),
    C("page_index_unique", Source(SEED, "page时:inidces ... 且不重复"),
      ("fault",), no_fault("page_index_duplicate"),
      edges=[edge(cache_mode="page", x_rank=3, batch=2, seq_len=4, pad_tokens=0)],
      violations=[dict(cache_mode="page", fault="page_index_duplicate", x_rank=3, batch=2, seq_len=2, pad_tokens=0)],
      check_inputs=_check_page_unique),
    C("quant_mode_static", Source(SEED, "quantModeOptional ... 目前仅支持static (torch: quant_mode=0)"),
      ("quant_mode",), lambda p: p["quant_mode"] == 0,
      edges=[edge(quant_mode=0)], violations=[dict(quant_mode=1)]),
    C("layout_bsnd", Source(SEED, "layoutOptional ... 目前仅支持BSND"),
      ("input_layout",), lambda p: p["input_layout"] == "BSND",
      edges=[edge(input_layout="BSND")], violations=[dict(input_layout="BNSD")]),
    C("cache_mode_supported", Source(SEED, "cacheModeOptional ... 目前仅支持page和contiguous"),
      ("cache_mode",), lambda p: p["cache_mode"] in CACHE_MODES,
      edges=[edge(cache_mode=m) for m in CACHE_MODES], violations=[dict(cache_mode="block")]),
    # The seed says "shape维度只支持2维", but its own example passes scales and offsets of shape {128}
    # ([Nkv*D], 1-D), as does OT examples/test_aclnn_dequant_rope_quant_kvcache.cpp:102-105, and the
    # tiling checks only the element count (OT dequant_rope_quant_kvcache_tiling.cpp:386-391 scales,
    # :423-424 offsets): the "2-D only" clause is wrong, the element count Nkv*D is the constraint.
    C("quant_param_shape", Source(SEED, "scaleK/scaleV/offsetK/offsetV shape为[Nkv,D] (tiling.cpp:386-391: "
                                  "any shape of Nkv*D elements; the seed's example uses [Nkv*D])"),
      ("scale_shape",), lambda p: p["scale_shape"] in ("nkv_d", "flat"),
      edges=[edge(scale_shape="nkv_d", offsets="both"), edge(scale_shape="flat", offsets="both")],
      violations=[dict(scale_shape="half", offsets="both")], check_inputs=_check_quant_shapes),
    C("size_splits_qkv", Source(SEED, "sizeSplits size大小为3,值为[Nq * D,Nkv * D,Nkv * D]"),
      ("fault",), no_fault("size_splits_mismatch"),
      edges=[edge(num_q_heads=8, num_kv_heads=2, head_dim=32)],
      violations=[dict(fault="size_splits_mismatch", num_kv_heads=2)], check_inputs=_check_splits),
)

AXES = {
    "x_dtype": X_DTYPES,
    "cos_dtype": FLOATS,
    "x_rank": (2, 3),
    "cache_mode": CACHE_MODES,
    "ties": (False, True),
    "offsets": OFFSETS,
    "bias_dtype": BIAS_DTYPES,
    "kv_output": (False, True),
    "has_activation_scale": (False, True),
    "head_dim": (16, 64, 128),
}


def _heads(p: dict, rng: random.Random, small: bool) -> None:
    """Fill Nq, Nkv, D (those missing) so that H is a multiple of 64 and <= 4096 when possible."""
    cands = {"num_q_heads": [1, 2, 4, 8] if small else [1, 2, 4, 8, 16],
             "num_kv_heads": [1, 2] if small else [1, 2, 4],
             "head_dim": [16, 32, 64] if small else [16, 32, 64, 128]}
    missing = [k for k in cands if k not in p]
    trial = dict(p)
    for _ in range(200):   # redraw until the constraints on H (hidden_max_4096, hidden_multiple_of_64) hold
        for k in missing:
            trial[k] = rng.choice(cands[k])
        if not broken_judged(CONSTRAINTS, trial, missing):
            break
    p.update({k: trial[k] for k in missing})


pick = Chooser(CONSTRAINTS)


def complete(p: dict, rng: random.Random, tier: str) -> dict:
    """Fill missing params consistently with the constraints; given params are kept as they are."""
    small = tier == "smoke"
    p.setdefault("fault", "none")   # first: the index-bound constraints read it
    # free values drawn among (or the first of) those the constraints allow: cos/sin dtype and rank
    # (float_x_matches_rope_dtype, cos_sin_same_dtype, cos_sin_rank), the weight scale of int32 x
    pick(p, "x_dtype", X_DTYPES, rng)
    pick(p, "cos_dtype", FLOATS, rng)
    pick(p, "sin_dtype", (p["cos_dtype"],) + FLOATS)
    pick(p, "x_rank", (2, 3), rng)
    pick(p, "cos_rank", (2, 4))
    pick(p, "has_weight_scale", (False, True))
    int_x = p["x_dtype"] == "int32"
    p.setdefault("has_activation_scale", int_x and rng.random() < 0.5)
    p.setdefault("bias_dtype", rng.choice(BIAS_DTYPES) if int_x else "none")
    _heads(p, rng, small)
    p.setdefault("batch", rng.choice([1, 2, 3] if small else [1, 2, 4, 8]))
    p.setdefault("seq_len", 1 if p["x_rank"] == 2 else rng.choice([1, 2, 5] if small else [1, 3, 8, 16]))
    p.setdefault("cache_mode", rng.choice(CACHE_MODES))
    t = tokens(p)
    page = p["cache_mode"] == "page"
    p.setdefault("pad_tokens", rng.randint(0, t // 2) if page else 0)
    # cache dims: the least the index bounds allow (contiguous_cache_batch, contiguous_index_bounds,
    # page_index_bounds), plus a random spare
    if page:
        pick(p, "cache_seq", [1, 2, 4, 8], rng)
        p.setdefault("cache_batch", pick(dict(p), "cache_batch", range(1, t + 2)) + rng.choice([0, 1]))
    else:
        p.setdefault("cache_batch", pick(dict(p), "cache_batch", range(1, p["batch"] + 1)) + rng.choice([0, 1, 2]))
        p.setdefault("cache_seq", pick(dict(p), "cache_seq", range(1, p["seq_len"] + 1)) + rng.randint(0, 6))
    p.setdefault("kv_output", rng.random() < 0.5)
    p.setdefault("offsets", rng.choice(OFFSETS))
    p.setdefault("ties", False)
    p.setdefault("quant_mode", 0)
    p.setdefault("input_layout", "BSND")
    p.setdefault("cache_dtype", "int8")
    p.setdefault("cache_rank", 4)
    p.setdefault("cache_contiguous", True)
    p.setdefault("scale_shape", "nkv_d")
    return p


# ---- inputs -----------------------------------------------------------------------------------
def _rope_tables(p, rng, t):
    """cos/sin per token [T, D]: one angle per (token, i < D/2), duplicated over both halves
    (the NeoX layout). `ties` uses quarter turns only, so every RoPE product is exact."""
    half = p["head_dim"] // 2
    if p["ties"]:
        quarter = rng.integers(0, 4, size=(t, half))
        c = np.array([1.0, 0.0, -1.0, 0.0])[quarter]
        s = np.array([0.0, 1.0, 0.0, -1.0])[quarter]
    else:
        theta = rng.uniform(0, 2 * np.pi, size=(t, half))
        c, s = np.cos(theta), np.sin(theta)
    return np.concatenate([c, c], -1), np.concatenate([s, s], -1)


def _x_and_dequant(p, rng, t, h, nq_d):
    """x [T, H] and the dequant inputs. `ties`: every value of the k/v part dequantizes to
    m * 2**-e exactly with m odd (powers-of-two scales, integer or dyadic bias) so that, with quant
    scales 2**-(e-1), y = m/2 lands on an exact .5 tie in every precision path (ops.md#2); RoPE's
    quarter turns only permute and negate, so every written k/v element is a tie."""
    xd, bd, ties = p["x_dtype"], p["bias_dtype"], p["ties"]
    extra = {"weight_scale": None, "activation_scale": None, "bias": None}
    if xd != "int32":
        if ties:
            x = rng.uniform(-4, 4, size=(t, h))
            x[:, nq_d:] = (2 * rng.integers(-128, 128, size=(t, h - nq_d)) + 1) * 2.0 ** -TIE_EXP   # odd m
        else:
            x = rng.uniform(-4, 4, size=(t, h))
        exp = TIE_EXP
    else:
        shift = int(rng.integers(0, 2)) if (ties and p["has_activation_scale"]) else 0
        exp = TIE_EXP + shift
        x = rng.integers(-120, 121, size=(t, h)) if ties else rng.integers(-255, 256, size=(t, h))
        if ties:
            ws = np.full(h, 2.0 ** -TIE_EXP)
            act = np.full(t, 2.0 ** -shift)
        else:
            ws = rng.uniform(0.002, 0.012, size=h)
            act = rng.uniform(0.5, 1.5, size=t)
        if p["has_weight_scale"]:
            extra["weight_scale"] = ws.astype(np.float32)
        if p["has_activation_scale"]:
            extra["activation_scale"] = act.astype(np.float32)
        if bd == "int32":
            extra["bias"] = rng.integers(-7 if ties else -20, 8 if ties else 21, size=h).astype(np.int32)
        elif bd != "none":
            b = rng.integers(-7, 8, size=h) * 2.0 ** -exp if ties else rng.uniform(-1, 1, size=h)
            extra["bias"] = cast(b, bd) if bd in FLOATS or bd == "float32" else b.astype(bd)
        if ties:   # m = x + bias in units of 2**-exp (ops.md#2 Dequant): make it odd on the k/v part
            bias = extra["bias"]
            m_bias = np.zeros(h) if bias is None else np.asarray(bias, np.float64) * (1 if bd == "int32" else 2.0 ** exp)
            x[:, nq_d:] += (x[:, nq_d:] + np.rint(m_bias[nq_d:]).astype(np.int64)) % 2 == 0
    if xd != "int32" and bd != "none":   # ignored for float x (seed: "不生效"); passed to pin that
        extra["bias"] = cast(rng.uniform(-1, 1, size=h), bd) if bd != "int32" else rng.integers(-20, 21, h).astype(np.int32)
    if xd != "int32" and p["has_weight_scale"]:
        extra["weight_scale"] = rng.uniform(0.5, 2, size=h).astype(np.float32)
    if xd != "int32" and p["has_activation_scale"]:
        extra["activation_scale"] = rng.uniform(0.5, 2, size=t).astype(np.float32)
    x = x.astype(np.int32) if xd == "int32" else cast(x, xd)
    return x, extra, exp


def _build_indices(p, rng, t):
    b, s, c1, c2 = p["batch"], p["seq_len"], p["cache_batch"], p["cache_seq"]
    fault = p["fault"]
    if p["cache_mode"] != "page":
        hi = max(c2 - s, 0)
        idx = rng.integers(0, hi + 1, size=b)
        idx[0] = hi                       # the upper edge C2 - S is always present
        if b > 1:
            idx[-1] = 0
        if fault == "contig_index_out_of_range":
            idx[rng.integers(0, b)] = hi + 1
        if fault == "contig_index_negative":
            idx[rng.integers(0, b)] = -1
        return idx.astype(np.int32)
    slots = c1 * c2
    n_valid = max(t - p["pad_tokens"], 0)
    chosen = rng.permutation(slots)[: min(n_valid, slots)]
    if chosen.size and slots - 1 not in chosen:
        chosen[0] = slots - 1             # the last slot (upper edge) is always written
    if n_valid > slots:
        # more tokens to write than cache slots (a page_index_bounds negative case): the surplus
        # tokens can only get indices past the cache, which is what the data must then show
        chosen = np.concatenate([chosen, np.arange(slots, n_valid)])
    idx = np.full(t, -1, dtype=np.int64)
    pos = np.sort(rng.permutation(t)[: chosen.size])
    idx[pos] = chosen
    pad = np.setdiff1d(np.arange(t), pos)
    idx[pad] = rng.choice([-1, -2, -(2 ** 31)], size=pad.size)   # any negative index is skipped
    if fault == "page_index_out_of_range":
        idx[pos[0] if pos.size else 0] = slots
    if fault == "page_index_duplicate" and pos.size >= 2:
        idx[pos[1]] = idx[pos[0]]
    return idx.astype(np.int32)


def _cache(p, rng):
    shape = (p["cache_batch"], p["cache_seq"], p["num_kv_heads"], p["head_dim"])
    if p["cache_rank"] != 4:
        shape = (p["cache_batch"] * p["cache_seq"],) + shape[2:]
    if p["cache_dtype"] != "int8":
        return cast(rng.uniform(-5, 5, size=shape), p["cache_dtype"])
    c = rng.integers(-128, 128, size=shape, dtype=np.int8)
    if not p["cache_contiguous"]:      # same values, every other element of a wider buffer
        wide = np.zeros(shape[:-1] + (2 * shape[-1],), np.int8)
        wide[..., ::2] = c
        c = wide[..., ::2]
    return c


def build_inputs(p, rng: np.random.Generator) -> dict:
    b, s, nq, nkv, d = p["batch"], p["seq_len"], p["num_q_heads"], p["num_kv_heads"], p["head_dim"]
    t, h = tokens(p), hidden(p)
    x, extra, exp = _x_and_dequant(p, rng, t, h, nq * d)
    cos, sin = _rope_tables(p, rng, t)
    lead = {2: (b,), 3: (b, s)}.get(p["x_rank"], (b, s, 1))
    cos_shape = (b, s, 1, d) if p["cos_rank"] == 4 else (t, d)
    if p["ties"]:
        sk = sv = np.full((nkv, d), 2.0 ** -(exp - 1))
        ok, ov = (rng.integers(-4, 5, size=(2, nkv, d)) * 1.0)
    else:
        sk, sv = rng.uniform(0.03, 0.06, size=(2, nkv, d))
        ok, ov = rng.uniform(-4, 4, size=(2, nkv, d))
    qshape = {"nkv_d": (nkv, d), "flat": (nkv * d,)}.get(p["scale_shape"], (nkv * d // 2,))  # half: a negative
    f32 = lambda a: np.ascontiguousarray(a.reshape(-1)[: math.prod(qshape)], dtype=np.float32).reshape(qshape)  # noqa: E731
    splits = [nq * d, nkv * d, nkv * d]
    if p["fault"] == "size_splits_mismatch":
        splits = [nq * d + d, nkv * d - d, nkv * d]
    return {
        "x": x.reshape(lead + (h,)),
        "cos": cast(cos, p["cos_dtype"]).reshape(cos_shape),
        "sin": cast(sin, p["sin_dtype"]).reshape(cos_shape),
        "k_cache": _cache(p, rng), "v_cache": _cache(p, rng),
        "indices": _build_indices(p, rng, t),
        "scale_k": f32(sk), "scale_v": f32(sv),
        "size_splits": splits,
        "offset_k": f32(ok) if p["offsets"] in ("both", "k_only") else None,
        "offset_v": f32(ov) if p["offsets"] in ("both", "v_only") else None,
        **extra,
        "quant_mode": p["quant_mode"], "input_layout": p["input_layout"],
        "kv_output": bool(p["kv_output"]), "cache_mode": p["cache_mode"],
    }


# ---- outputs, regions, labels -------------------------------------------------------------------
def output_dtypes(p) -> dict:
    return {"q_out": p["cos_dtype"], "k_out": p["cos_dtype"], "v_out": p["cos_dtype"],
            "k_cache": "int8", "v_cache": "int8"}


TIES_RULE = OutputRule("exact", why="constructed exact .5 ties are exact in every precision path, so the "
                                    "int8 must follow ties-to-even bitwise (precision.md #6 int8 row, ops.md#2 Quant)")


# With fp16 cos/sin the kernel does RoPE in fp16 arithmetic, and with int32 x it rounds the
# dequantized q/k to the cos dtype before RoPE (ops.md#2, precision path). Either way q*cos - q'*sin
# near zero keeps only the rounding of terms up to max|q|: a small output can be off by about an ULP
# of max|g|, far above the absolute small-value bound. FlashAttention's rotary test allows
# 2 ULP(max|r|) everywhere (precision.md section 3); that is the looser rule.
ROPE_ROUNDED_RULE = OutputRule("elementwise", small_ulp_of_max=2.0,
                               small_why="RoPE on fp16 arithmetic or on rounded q/k cancels near zero (ops.md#2)",
                               why="RoPE with rounded terms: elementwise (precision.md #6, FlashAttention rotary)")


def rope_terms_rounded(p) -> bool:
    """The kernel's RoPE sees terms rounded to the output dtype (ops.md#2 precision path)."""
    return p["cos_dtype"] == "float16" or p["x_dtype"] == "int32"


def regions(p, inputs, output):
    """Caches: untouched rows bitwise vs the incoming cache, written rows quant_int8, ties bitwise."""
    if output in ("q_out", "k_out") and rope_terms_rounded(p):
        return [Region(output, None, ROPE_ROUNDED_RULE)]
    if output not in ("k_cache", "v_cache"):
        return None
    kc = np.asarray(inputs[output])
    c1, c2 = kc.shape[:2]
    _, rows = write_rows(inputs)
    written = np.zeros(c1 * c2, bool)
    written[rows] = True
    untouched = Region(f"{output}[untouched]", ~written.reshape(c1, c2), OutputRule("exact", why="not written: bitwise"))
    if p["ties"]:   # build_inputs makes every written element an exact tie
        return [untouched, Region(f"{output}[ties]", written.reshape(c1, c2), TIES_RULE)]
    return [untouched, Region(f"{output}[written]", written.reshape(c1, c2), SPEC.rules[output])]


def write_rows(inputs):
    """(token ids written, flat cache rows [C1*C2] they go to), for both cache modes: the Scatter of
    ops.md#2. contiguous: token (b, s) -> cache[b, indices[b] + s]; page: token t -> cache.view(-1)[indices[t]],
    negative indices skipped. Reads shapes and host values only (numpy inputs)."""
    xs = tuple(inputs["x"].shape)
    t = math.prod(xs[:-1])
    s = t // xs[0]
    c2 = inputs["k_cache"].shape[1]
    idx = np.asarray(inputs["indices"]).astype(np.int64).ravel()
    if inputs["cache_mode"] == "page":
        tok = np.nonzero(idx >= 0)[0]
        return tok, idx[tok]
    tok = np.arange(t)
    b = tok // s
    return tok, b * c2 + idx[b] + tok % s


def label(p) -> str:
    xd = p["x_dtype"] if p["x_dtype"] == p["cos_dtype"] else f"{p['x_dtype']}-{p['cos_dtype']}"
    parts = [xd, f"x{p['x_rank']}d", f"b{p['batch']}s{p['seq_len']}", f"q{p['num_q_heads']}kv{p['num_kv_heads']}"
             f"d{p['head_dim']}", p["cache_mode"][:4], f"c{p['cache_batch']}x{p['cache_seq']}"]
    if p["pad_tokens"]:
        parts.append(f"pad{p['pad_tokens']}")
    if p["offsets"] != "none":
        parts.append(f"off-{p['offsets']}")
    if p["bias_dtype"] != "none":
        parts.append(f"bias-{p['bias_dtype']}")
    flags = [("kv", p["kv_output"]), ("ws", p["has_weight_scale"] and p["x_dtype"] != "int32"),
             ("noWs", not p["has_weight_scale"] and p["x_dtype"] == "int32"), ("as", p["has_activation_scale"]),
             ("ties", p["ties"]), ("noncontig", not p["cache_contiguous"])]
    parts += [n for n, on in flags if on]
    for k, default in (("sin_dtype", p["cos_dtype"]), ("cos_rank", 4 if p["x_rank"] == 3 else 2), ("quant_mode", 0),
                       ("input_layout", "BSND"), ("cache_dtype", "int8"), ("cache_rank", 4),
                       ("scale_shape", "nkv_d"), ("fault", "none")):
        if p[k] != default:
            parts.append(f"{k}-{p[k]}")
    return "_".join(str(x) for x in parts)


def cost(p) -> tuple[float, float]:
    """Bytes (x, cos, sin, q/k/v outputs, the int8 rows written twice) and FLOPs (dequant, RoPE, quant)."""
    t, h, d = tokens(p), hidden(p), p["head_dim"]
    nq, nkv = p["num_q_heads"], p["num_kv_heads"]
    out_b = itemsize(p["cos_dtype"], 2)
    nbytes = t * h * itemsize(p["x_dtype"], 2) + 2 * t * d * out_b
    nbytes += t * (nq + (2 * nkv if p["kv_output"] else 0)) * d * out_b + 2 * t * nkv * d
    flops = t * ((3 * h if p["x_dtype"] == "int32" else 0) + 3 * (nq + nkv) * d + 2 * 2 * nkv * d)
    return float(nbytes), float(flops)


SPEC = OpSpec(
    name="dequant_rope_quant_kvcache",
    seed=SEED,
    summary="aclnnDequantRopeQuantKvcache: (int32 dequant,) split q/k/v, NeoX RoPE, int8 quant, K/V cache scatter",
    outputs=("q_out", "k_out", "v_out", "k_cache", "v_cache"),
    rules={"q_out": OutputRule("elementwise", why="RoPE/dequant: elementwise (precision.md #6, FlashAttention rotary)"),
           "k_out": OutputRule("elementwise", why="RoPE/dequant: elementwise (precision.md #6)"),
           "v_out": OutputRule("elementwise", why="dequant or copy: elementwise (precision.md #6)"),
           "k_cache": OutputRule("quant_int8", why="int8 quantisation: |diff| <= 1 (precision.md #4, #6; CANN, vLLM)"),
           "v_cache": OutputRule("quant_int8", why="int8 quantisation: |diff| <= 1 (precision.md #4, #6; CANN, vLLM)")},
    axes=AXES,
    constraints=CONSTRAINTS,
    complete=complete,
    build_inputs=build_inputs,
    output_dtypes=output_dtypes,
    label=label,
    dtype_key="x_dtype",
    regions=regions,
    cost=cost,
    named=NAMED,
    infer_call=infer_call,
)

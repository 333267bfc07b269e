"""torch_npu.npu_incre_flash_attention (aclnnIncreFlashAttentionV4): incremental (decode) attention.

One query token per batch against a KV cache: dense (BSH / BNSD / BSND) or paged (block_table), fp16 /
bf16 / int8-with-antiquant K/V, GQA, per-batch lengths with optional left padding, atten_mask,
pse_shift, optional int8 output quantization. Seed 004_9b455b0cf40d8ded.txt; semantics in
shared/reference/ops.md section 5. Constraints live in `cases/_ifa_constraints.py`, inputs in
`cases/_ifa_inputs.py`.

Case parameters:
  product          A2 | 310P (Atlas inference card): picks the documented limits and support
  layout, dtype    query layout and dtype; kv_dtype: the query dtype or int8 (antiquant)
  batch, num_heads, num_kv_heads, head_dim, kv_seq (key S; the longest logical length when paged)
  kv_heads_attr    num_key_value_heads passed as the kv head count (explicit), 0 (zero) or wrong
  num_heads_attr   match | wrong
  actual_seq       none | per_batch | broadcast ((1) entry) | wrong_count; seq_zero: a length of 0
  kv_padding       None or the kv_padding_size value (left padding); kv_pad_overflow: a window below 0
  mask_dtype, mask_shape, mask_full_row (batch 0 fully masked), pse, pse_dtype, aux_s (mask/pse S:
                   exact | longer | short than maxBlockNumPerSeq*blockSize in page attention)
  paged, cache_layout (BBH = (blocknum, blocksize, H), BNBD = (blocknum, N_kv, blocksize, D)),
  block_size, table_extra (extra block-table columns), spare_blocks
  antiquant        none | per_tensor | BSH | BNSD | BSND (per-channel shape of that layout);
                   antiquant_offset none | same | mismatch; antiquant_dtype
  quant2           none | 1 (per-tensor) | ND | 1N1D | 11ND | H | 11H | NkvD; quant2_dtype;
                   quant_offset2 none | same | dtype_mismatch | shape_mismatch
  int8_path_scales none | dequant_scale1 | quant_scale1 | dequant_scale2 (banned)
  inner_precise    0 | 1 (| 2 in a negative case); scale_value; fault (data-level faults); dist
"""
from __future__ import annotations

import math
import random

from harness.dtypes import itemsize
from harness.feasible import Chooser
from harness.spec import OpSpec, OutputRule, Region

from ._capture_incre_flash_attention import infer as infer_call
from ._ifa_constraints import (ANTIQUANT_SHAPES, CONSTRAINTS, LAYOUTS, MASK_DTYPES, MASK_SHAPES,
                               PSE_SHAPES, QDT, SEED)
from ._ifa_inputs import build_inputs, default_scale
from ._ifa_windows import kv_windows
from . import _ifa_ties
from ._official_incre_flash_attention import NAMED

AXES = {
    "layout": LAYOUTS,
    "dtype": QDT,
    "kv_dtype": ("float16", "bfloat16", "int8"),
    "actual_seq": ("none", "per_batch", "broadcast"),
    "mask_dtype": ("none",) + MASK_DTYPES,
    "mask_shape": ("none",) + MASK_SHAPES,   # "none" goes with mask_dtype "none" (atten_mask_shape)
    "pse": ("none",) + PSE_SHAPES,
    "paged": (False, True),
    "antiquant": ("none",) + ANTIQUANT_SHAPES,
    "quant2": ("none", "1", "ND", "H"),
    "inner_precise": (0, 1),
    "product": ("A2", "310P"),
}

PAGED_FAULTS = ("bt_rows", "bt_short", "blocknum_short", "bt_id", "bt_dtype")
DENSE_FAULTS = ("kv_rank", "seq_len_exceeds", "kv_pad_dtype")


pick = Chooser(CONSTRAINTS)
KV_DTYPES = QDT + ("int8",)
KV_HEADS_ATTRS = ("zero", "explicit")
# What complete() may give later to the params an early choice depends on: the product's support
# (inference_card_*) is judged against the dtypes and kv_heads_attr still to come, the head counts
# against kv_heads_attr (num_kv_heads_matches_kv), so no early choice strands a later one.
PRODUCT_AHEAD = {"dtype": QDT, "kv_dtype": KV_DTYPES, "kv_heads_attr": KV_HEADS_ATTRS}
HEADS_AHEAD = {"kv_heads_attr": KV_HEADS_ATTRS}


def _heads(p, rng, small):
    """Head counts and num_key_value_heads, each drawn among what the constraints allow."""
    if "num_heads" in p and "num_kv_heads" not in p:
        n = p["num_heads"]
        divs = pick.fitting(p, "num_kv_heads", range(1, n + 1), HEADS_AHEAD) or [n]
        p["num_kv_heads"] = rng.choice(divs[-3:])   # the three largest allowed: GQA ratios up to a few
    pick(p, "num_kv_heads", [1, 2] if small else [1, 2, 4], rng)
    nkv = p["num_kv_heads"]
    pick(p, "num_heads", [nkv * g for g in ((1, 2, 4) if small or "num_heads" in p else (1, 4, 8))], rng, HEADS_AHEAD)
    pick(p, "kv_heads_attr", KV_HEADS_ATTRS if rng.random() < 0.5 else KV_HEADS_ATTRS[::-1])


def complete(p: dict, rng: random.Random, tier: str) -> dict:
    """Fill missing params consistently with the constraints; given params are kept as they are.

    Each free value is drawn among (or is the first of) the candidates the constraints allow
    (`pick`); the preferences (how often 310P, int8 K/V, a mask, ...) are this function's own.
    """
    small = tier == "smoke"
    p.setdefault("fault", "none")
    pick(p, "product", ("310P", "A2") if rng.random() < 0.2 else ("A2",), ahead=PRODUCT_AHEAD)
    pick(p, "layout", LAYOUTS, rng)
    pick(p, "dtype", QDT, rng, ahead={"kv_dtype": KV_DTYPES})
    pick(p, "kv_dtype", ("int8",) + QDT if rng.random() < 0.3 else KV_DTYPES)
    _heads(p, rng, small)
    p.setdefault("num_heads_attr", "match")
    pick(p, "head_dim", [16, 32] if small else [16, 64, 128], rng)
    p.setdefault("batch", rng.choice([1, 2, 3] if small else [1, 2, 4]))
    if "paged" not in p:
        dense_only = (p.get("kv_padding") is not None or p["fault"] in DENSE_FAULTS
                      or p.get("cache_layout", "none") == "none" and "cache_layout" in p)
        p["paged"] = (p["fault"] in PAGED_FAULTS or p.get("cache_layout", "none") != "none"
                      or (not dense_only and rng.random() < 0.3))
    paged = p["paged"]
    if paged:
        pick(p, "cache_layout", ("BNBD", "BBH") if rng.random() < 0.5 else ("BBH", "BNBD"))
        pick(p, "block_size", (16, 32, 64) if small else (16, 32, 64, 128), rng)
    p.setdefault("cache_layout", "none")
    p.setdefault("block_size", 0)
    p.setdefault("table_extra", rng.choice([0, 1, 2]) if paged else 0)
    p.setdefault("spare_blocks", rng.choice([0, 2]) if paged else 0)
    if p["fault"] in ("seq_len_exceeds", "kv_pad_dtype") or p.get("kv_pad_overflow") or p.get("seq_zero"):
        p.setdefault("actual_seq", "per_batch")   # these need per-batch lengths in the data
    pick(p, "actual_seq", ("none", "per_batch", "broadcast"), rng)
    p.setdefault("seq_zero", p["actual_seq"] in ("per_batch", "broadcast") and rng.random() < 0.1)
    p.setdefault("kv_seq", rng.randint(1, 48) if small else rng.choice([rng.randint(1, 300), rng.randint(300, 2100)]))
    if p["kv_seq"] < 2 and p["fault"] in ("bt_short", "blocknum_short"):
        p["kv_seq"] = 2
    if "kv_padding" not in p:
        p["kv_padding"] = rng.randint(-2, 4) if not paged and p["fault"] not in PAGED_FAULTS and rng.random() < 0.2 else None
    p.setdefault("kv_pad_overflow", False)
    if p["fault"] == "mask_value":
        p.setdefault("mask_dtype", "int8")   # the fault writes non-binary values into an int8 mask
    pick(p, "mask_dtype", ("none", "none") + MASK_DTYPES, rng)
    pick(p, "mask_shape", ("none",) + MASK_SHAPES, rng)
    p.setdefault("mask_full_row", p["mask_dtype"] != "none" and rng.random() < 0.2)
    pick(p, "pse", ("none", "none") + PSE_SHAPES, rng)
    pick(p, "pse_dtype", ("none",) if p["pse"] == "none" else (p["dtype"],) + QDT)
    p.setdefault("aux_s", "longer" if paged and rng.random() < 0.3 else "exact")
    pick(p, "antiquant", ("none", "per_tensor") + LAYOUTS, rng)
    pick(p, "antiquant_offset", ("none", "same"), rng)
    pick(p, "antiquant_dtype", ("none",) if p["antiquant"] == "none" else (p["dtype"],) + QDT)
    if "quant2" not in p:
        per_channel = {"BSH": ("H", "11H", "ND"), "BNSD": ("1N1D", "ND"), "BSND": ("11ND", "ND")}.get(p["layout"], ("ND",))
        shapes = pick.fitting(p, "quant2", ("1",) + per_channel)
        p["quant2"] = rng.choice(shapes) if shapes and rng.random() >= 0.6 else "none"
    pick(p, "quant2_dtype", ("none",) if p["quant2"] == "none" else
         ("bfloat16", "float32") if rng.random() < 0.5 else ("float32",))
    pick(p, "quant_offset2", ("none", "same"), rng)
    p.setdefault("int8_path_scales", "none")
    p.setdefault("inner_precise", rng.choice([0, 1]))
    p.setdefault("scale_value", default_scale(p["head_dim"]))
    p.setdefault("dist", "uniform")
    return p


def output_dtypes(p) -> dict:
    return {"attention_out": "int8" if p["quant2"] != "none" else p["dtype"]}


def label(p) -> str:
    dt = p["dtype"] if p["kv_dtype"] == p["dtype"] else f"{p['dtype']}-{p['kv_dtype']}"
    parts = [p["product"], p["layout"], dt, f"b{p['batch']}n{p['num_heads']}k{p['num_kv_heads']}d{p['head_dim']}"
             f"s{p['kv_seq']}"]
    if p["paged"]:
        parts.append(f"page{p['cache_layout']}{p['block_size']}")
    if p["actual_seq"] != "none":
        parts.append({"per_batch": "actB", "broadcast": "act1", "wrong_count": "actX"}[p["actual_seq"]]
                     + ("z" if p["seq_zero"] else ""))
    if p["kv_padding"] is not None:
        parts.append(f"pad{p['kv_padding']}" + ("ovf" if p["kv_pad_overflow"] else ""))
    if p["mask_dtype"] != "none":
        parts.append(f"m{p['mask_dtype']}{p['mask_shape']}" + ("full" if p["mask_full_row"] else ""))
    if p["pse"] != "none":
        parts.append(f"pse{p['pse']}")
    if p["antiquant"] != "none":
        parts.append(f"aq{p['antiquant']}" + ("o" if p["antiquant_offset"] != "none" else ""))
    if p["quant2"] != "none":
        parts.append(f"q2{p['quant2']}{p['quant2_dtype'][:2]}" + ("o" if p["quant_offset2"] != "none" else ""))
    parts.append(f"ip{p['inner_precise']}")
    if p["fault"] != "none":
        parts.append(p["fault"])
    return "_".join(str(x) for x in parts)


# ---- comparison rules -------------------------------------------------------------------------
QUANT_RULE = OutputRule("quant_int8", why="int8 output of quant_scale2: AE <= 1 (CANN, vLLM; precision.md section 4)")


# xformers forward caps (atol, rtol) per dtype, precision.md section 3: the starting point of the caps
# for judging the torch baseline itself (precision.md section 6).
XFORMERS_CAP = {"float16": (4e-3, 4e-4), "bfloat16": (2e-2, 5e-3)}
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -9}


def baseline_cap(p) -> tuple[float, float]:
    """(atol, rtol) for judging the torch baseline itself against the float64 golden.

    Anchor: precision.md section 6 ("judge the baseline itself by absolute caps scaled to the dtype and
    the reduction length"), starting from the xformers forward caps (section 3), plus
      - the float32 accumulation over the KV length S: 2^-24 * sqrt(S) * max|V| (random-walk sum);
      - with int8 K/V at inner_precise=1 the device path also rounds K_deq and V_deq to the query
        dtype (ops.md #5, inner_precise / lowprecision_flag): V rounding adds u * max|V|, and the
        rounded K perturbs the scores, which softmax passes on to O; 8 * u * max|V| covers both
        (measured max error in the nightly tier: see notes/issue-3.md).
    max|V| is 5 for fp16/bf16 K/V (inputs U[-5, 5]) and ~7 after antiquant (cases/_ifa_inputs.py).
    """
    atol, rtol = XFORMERS_CAP.get(p["dtype"], XFORMERS_CAP["float16"])
    u = UNIT_ROUNDOFF.get(p["dtype"], UNIT_ROUNDOFF["float16"])
    vmax = 7.0 if p["kv_dtype"] == "int8" else 5.0
    atol += 2.0 ** -24 * math.sqrt(p["kv_seq"]) * vmax
    if p["kv_dtype"] == "int8" and p["inner_precise"] == 1:
        atol += 8 * u * vmax
    return atol, rtol


def float_rule(p) -> OutputRule:
    return OutputRule("reduction", k=2.0, abs_cap=baseline_cap(p), grade="L1",
                      grade_why="msprobe grades fused attention (npu_fusion_attention) L1 (precision.md section 1)",
                      why="FlashAttention forward k=2 (precision.md section 3/6); abs_cap: see baseline_cap")


TIES_RULE = OutputRule("exact", why="constructed exact .5 ties: the kernel's CAST_ROUND (ties away) is exact on "
                                    "every precision path (cases/_ifa_ties.py; precision.md #4, #6 int8 row)")


def regions(p, inputs, output):
    if _ifa_ties.constructed(p):
        return [Region(f"{output}[ties]", None, TIES_RULE)]
    if p["quant2"] != "none":
        return [Region(output, None, QUANT_RULE)]
    empty = ~kv_windows(inputs)[2]
    rule = float_rule(p)
    if not empty.any():
        return [Region(output, None, rule)]
    out = [Region(f"{output}[empty_window]", empty, OutputRule("exact", why="documented zeros: L=0 or window < 0"))]
    if (~empty).any():
        out.append(Region(output, ~empty, rule))
    return out


def cost(p) -> tuple[float, float]:
    """Bytes moved (q, K, V, out) and FLOPs (2 matmuls of B*N*S*D multiply-adds)."""
    B, N, nkv, D, S = p["batch"], p["num_heads"], p["num_kv_heads"], p["head_dim"], p["kv_seq"]
    kv = 2 * B * nkv * S * D * itemsize(p["kv_dtype"], 4)
    qo = B * N * D * (itemsize(p["dtype"], 4) + (1 if p["quant2"] != "none" else itemsize(p["dtype"], 4)))
    return float(kv + qo), 4.0 * B * N * S * D


SPEC = OpSpec(
    name="incre_flash_attention",
    seed=SEED,
    summary="torch_npu.npu_incre_flash_attention / aclnnIncreFlashAttentionV4: decode attention with GQA, "
            "masks, pse, page attention, int8 KV antiquant, int8 output quant, kv left padding",
    outputs=("attention_out",),
    rules={"attention_out": OutputRule("reduction", why="default; per-case rules come from regions()")},
    axes=AXES,
    constraints=CONSTRAINTS,
    complete=complete,
    build_inputs=build_inputs,
    output_dtypes=output_dtypes,
    label=label,
    regions=regions,
    cost=cost,
    named=NAMED + _ifa_ties.NAMED,
    infer_call=infer_call,
)

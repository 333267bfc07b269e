"""Constructed exact .5 ties for IncreFlashAttention's int8 output (precision.md section 4: rounding
-mode bugs only show on constructed ties, so a suite constructs them on purpose).

With a zero query every score is 0, so softmax is uniform: 1/S, exact in fp16, bf16 and float32
when S is a power of two, and P @ V of a V that is the same for every key is that V exactly (the
partial sums k * v / S need at most 11 + log2(S) mantissa bits). V = m + 0.5 (exact in fp16) and
quant_scale2 = 1 make y = O * qs exactly m + 0.5: the kernel's CAST_ROUND gives m + 1 (m >= 0) or
m (m < 0); ties to even gives the even neighbour. The whole output is then compared bitwise.
"""
from __future__ import annotations

import numpy as np

from harness.dtypes import cast
from harness.spec import pin

TIES = "ties"         # the value of the `dist` param that asks for these inputs
KV_SEQ = 16           # a power of two: 1/S exact in every dtype on the path

NAMED = (
    pin("int8_out_exact_ties", "ops.md#5 Output quant: kernel PostQuant casts fp32 -> half -> int8 with CAST_ROUND "
        "(ties away from zero)", "the FIA golden's quant rounds with np.round (ties to even) (ops.md#5)",
        layout="BSH", dtype="float16", kv_dtype="float16", batch=2, num_heads=4, num_kv_heads=2, head_dim=32,
        kv_seq=KV_SEQ, actual_seq="none", kv_padding=None, mask_dtype="none", pse="none", paged=False,
        antiquant="none", quant2="1", quant2_dtype="float32", quant_offset2="none", dist=TIES, product="A2",
        inner_precise=0),
)


def constructed(p) -> bool:
    return p.get("dist") == TIES


def apply(p, inputs: dict, rng: np.random.Generator) -> dict:
    """Turn inputs built from uniform data into the tie construction (module docstring)."""
    q, v = np.asarray(inputs["query"]), np.asarray(inputs["value"])
    ties = rng.integers(-100, 100, size=(v.shape[0],) + v.shape[2:]) + 0.5     # one row per batch
    v_new = np.broadcast_to(ties[:, None], v.shape) if v.ndim == 3 else np.broadcast_to(ties[:, :, None], v.shape)
    return dict(inputs, query=np.zeros_like(q), value=cast(np.ascontiguousarray(v_new), p["kv_dtype"]),
                quant_scale2=np.ones_like(np.asarray(inputs["quant_scale2"])))

"""Official shapes and kernel pins of DequantRopeQuantKvcache (issue 19).

Official: the first two ST json cases (ops.md#2 "Official test shapes", real_interfaces.md#4:
head_dim 384 and 448, beyond the matrix's 128) and the seed's aclnn example. Only what a source
states is set; `complete` fills the rest deterministically.

Pins: the ST executor (OT-y tests/st/aclnnDequantRopeQuantKvcache/executor_*.py) differs from the
kernel in two places (real_interfaces.md#3); these cases hold the kernel's behaviour, and
tests/test_official.py shows that the executor's behaviour, put into the numpy golden, fails them.
"""
from __future__ import annotations

from harness.spec import official, pin

ST = "OT-y tests/st/aclnnDequantRopeQuantKvcache/all_*.json"

NAMED = (
    official("st_case0_d384", f"{ST} case 0: fp16 x [1,2304], cos [1,384] (D=384, Nq=4, Nkv=1), cache [15,2,1,384], "
             "page mode, all optionals, kv_output=True (ops.md#2; real_interfaces.md#4); bias dtype not given: fp16",
             x_dtype="float16", cos_dtype="float16", x_rank=2, batch=1, num_q_heads=4, num_kv_heads=1, head_dim=384,
             cache_mode="page", cache_batch=15, cache_seq=2, pad_tokens=0, kv_output=True, offsets="both",
             has_weight_scale=True, has_activation_scale=True, bias_dtype="float16"),
    official("st_case1_d448", f"{ST} case 1: int32 x [1,3584], fp16 cos [1,448] (D=448, Nq=4, Nkv=2), cache "
             "[1,12,2,448], bias bf16 [3584], page mode (ops.md#2; real_interfaces.md#4)",
             x_dtype="int32", cos_dtype="float16", x_rank=2, batch=1, num_q_heads=4, num_kv_heads=2, head_dim=448,
             cache_mode="page", cache_batch=1, cache_seq=12, pad_tokens=0, has_weight_scale=True,
             bias_dtype="bfloat16"),
    # The example's activation {1280} and bias {8192} contradict its own parameter table (one scale per
    # token, bias [H]; ops.md#2): the table's shapes are used. Its scales/offsets {128} are 1-D, which
    # the corrected quant_param_shape constraint accepts (see there).
    official("seed_example_b320", "001_76384a1a5e84732b.txt 调用示例: int32 x [320,1,1280], fp16 cos [320,1,1,128], "
             "caches [320,1280,1,128], scales/offsets {128}, weight {1280}, float bias, kvOutput=true, contiguous",
             reduced=dict(batch=4, cache_batch=4, cache_seq=16),
             x_dtype="int32", cos_dtype="float16", x_rank=3, batch=320, seq_len=1, num_q_heads=8, num_kv_heads=1,
             head_dim=128, cache_mode="contiguous", cache_batch=320, cache_seq=1280, kv_output=True, offsets="both",
             has_weight_scale=True, has_activation_scale=True, bias_dtype="float32", scale_shape="flat"),
    pin("lone_offset_k", "OT dequant_rope_quant_kvcache_tiling.cpp:263-266: hasQuantOffset = 1 only when both "
        "offsetK and offsetV are given", "the ST executor applies a lone offset (real_interfaces.md#3)",
        x_dtype="float16", cos_dtype="float16", offsets="k_only", kv_output=True, cache_mode="contiguous"),
    pin("lone_offset_v", "OT dequant_rope_quant_kvcache_tiling.cpp:263-266: hasQuantOffset = 1 only when both "
        "offsetK and offsetV are given", "the ST executor applies a lone offset (real_interfaces.md#3)",
        x_dtype="int32", cos_dtype="bfloat16", offsets="v_only", cache_mode="page", x_rank=3, batch=2, seq_len=3),
    pin("page_negative_indices", "OT dequant_rope_quant_kvcache.h:330: the page scatter skips index < 0",
        "the ST executor writes a negative index through Python negative indexing (real_interfaces.md#3)",
        x_dtype="bfloat16", cos_dtype="bfloat16", cache_mode="page", x_rank=3, batch=2, seq_len=4, pad_tokens=3,
        cache_batch=2, cache_seq=4, offsets="both",
        # the heads and flags too: the ST executor crashes on an index below -C1*C2, so the pin keeps
        # the inputs whose padding indices (-1, -2) it writes back
        num_q_heads=2, num_kv_heads=1, head_dim=16, kv_output=False),
)

"""Official shapes and kernel pins of npu_incre_flash_attention (issue 19).

Official: the seed's two examples (004_9b455b0cf40d8ded.txt 调用示例), the op-plugin test shape
(ops.md#5 "Test shapes") and the V4 doc's FLOAT32 antiquant_scale (real_interfaces.md#4). Only what a
source states is set; `complete` fills the rest deterministically.

FLOAT32 antiquant_scale: the V4 doc's parameter table lists FLOAT16, BFLOAT16, FLOAT32, while its own
constraint section ("参数数据类型和query数据类型相同") and the seed (FLOAT16, BFLOAT16) do not. The
kernel sides with the constraint: the IncreFlashAttention op def registers antiquant_scale as FLOAT16 /
BF16 only (OT op_host/incre_flash_attention_def.cpp:207-212, which aclnnIncreFlashAttentionV4 reaches
through aclnnInnerIncreFlashAttention), and the tiling rejects a per-channel/per-tensor scale whose
dtype differs from the query (incre_flash_attention_tiling_check.cpp:854-856); FLOAT32 is for the
per-token mode, which V4 cannot select (no antiquant_mode attribute, def.cpp:288-293). So the doc table
is wrong, and these cases run as negatives of `antiquant_dtype`.

Pins: the FIA ST executor's IFA branch zeroes the whole output when any batch's left padding
overflows; the kernel zeroes only that batch (and an int8 output then runs PostQuant on the zeros).
The IFA-only V4 executor skips scale_value and masks multiplicatively; the kernel scales, then fills.
"""
from __future__ import annotations

from harness.spec import official, pin

SEED_EX = "004_9b455b0cf40d8ded.txt 调用示例"
FP32_AQ = ("the V4 doc table lists FLOAT32 but the op def (def.cpp:207-212) and the tiling "
           "(tiling_check.cpp:854-856) accept only the query dtype: the doc is wrong (module docstring)")
OVERFLOW_KERNEL = ("OT incre_flash_attention_split_Bbn2s2_Us2.h:1086-1090: startPosition < 0 -> "
                   "InitAllZeroOutput(bIdx), that batch only")
OVERFLOW_GOLDEN = "the FIA ST executor (IFA branch) zeroes the whole output when any batch overflows (real_interfaces.md#3)"
DENSE = dict(paged=False, actual_seq="per_batch", kv_padding=1, kv_pad_overflow=True, batch=3, mask_dtype="none",
             pse="none", kv_dtype="float16", dtype="float16", antiquant="none")

NAMED = (
    official("seed_single_op_bsh", f"{SEED_EX} 单算子: q/k/v [2,1,5120] fp16 BSH, num_heads=40, scale 1/sqrt(128)",
             layout="BSH", dtype="float16", kv_dtype="float16", batch=2, num_heads=40, num_kv_heads=40,
             kv_heads_attr="zero", head_dim=128, kv_seq=1, actual_seq="none", kv_padding=None, mask_dtype="none",
             pse="none", paged=False, antiquant="none", quant2="none", scale_value=1 / 128 ** 0.5, product="A2"),
    official("seed_graph_mask_s2048", f"{SEED_EX} 入图: q [2,1,5120], k/v [2,2048,5120] fp16 BSH, atten_mask "
             "[2,1,1,2048] bool, num_heads=40, scale 1/sqrt(128)", reduced=dict(kv_seq=64),
             layout="BSH", dtype="float16", kv_dtype="float16", batch=2, num_heads=40, num_kv_heads=40,
             kv_heads_attr="zero", head_dim=128, kv_seq=2048, actual_seq="none", kv_padding=None, mask_dtype="bool",
             mask_shape="B11S", pse="none", paged=False, antiquant="none", quant2="none", scale_value=1 / 128 ** 0.5,
             product="A2"),
    # ops.md#5 reads "q [1,32,1,128], k/v [1,32,2048,128] as BSH": those are BNSD-shaped, so BNSD here
    official("op_plugin_test_n32_s2048", "op-plugin test/test_custom_ops (ops.md#5 Test shapes): q [1,32,1,128], "
             "k/v [1,32,2048,128], N=32, fp16", reduced=dict(kv_seq=64),
             layout="BNSD", dtype="float16", kv_dtype="float16", batch=1, num_heads=32, num_kv_heads=32,
             head_dim=128, kv_seq=2048, actual_seq="none", kv_padding=None, paged=False, antiquant="none"),
    official("v4_doc_antiquant_scale_fp32", "aclnnIncreFlashAttentionV4.md parameter table: antiquantScale "
             "FLOAT16、BFLOAT16、FLOAT32 (real_interfaces.md#4)", violates="antiquant_dtype", note=FP32_AQ,
             dtype="float16", kv_dtype="int8", antiquant="per_tensor", antiquant_dtype="float32", layout="BSH"),
    official("v4_doc_antiquant_scale_fp32_bf16_bsnd", "aclnnIncreFlashAttentionV4.md parameter table: antiquantScale "
             "FLOAT16、BFLOAT16、FLOAT32 (real_interfaces.md#4)", violates="antiquant_dtype", note=FP32_AQ,
             dtype="bfloat16", kv_dtype="int8", antiquant="BSND", antiquant_dtype="float32", layout="BSND",
             antiquant_offset="same"),
    pin("kv_pad_overflow_one_batch", OVERFLOW_KERNEL, OVERFLOW_GOLDEN, layout="BNSD", quant2="none", **DENSE),
    pin("v4_executor_scale_and_mask", "OT incre_flash_attention_split_Bbn2s2_Us2.h:2632 (Muls by scaleValue) and "
        ":2667 (SelectWithBytesMask: masked scores take the fill value)", "the IFA-only V4 ST executor never "
        "multiplies by scale_value and masks by qk *= (1 - mask) (real_interfaces.md#3)",
        layout="BNSD", dtype="float16", kv_dtype="float16", batch=2, num_heads=2, num_kv_heads=2, head_dim=16,
        kv_seq=32, actual_seq="none", kv_padding=None, paged=False, mask_dtype="bool", mask_shape="B11S",
        mask_full_row=False, pse="none", antiquant="none", quant2="none",
        scale_value=0.05),   # scores ~ +-2 (U[-5,5], D=16): a score of 0 at a masked key still weighs
    pin("kv_pad_overflow_int8_out", OVERFLOW_KERNEL + "; int8 output: PostQuant runs on the zero rows",
        OVERFLOW_GOLDEN, layout="BSH", quant2="1", quant2_dtype="float32", quant_offset2="same", **DENSE),
)

"""Official shapes and the kernel pin of NsaSelectedAttentionGrad (issue 19), from ops.md#3
"Official test shapes" and real_interfaces.md#4 (the decode shape B=64, S1=1, S2=1024, count 16).

Pin: the op-plugin grad test (test/test_custom_ops/test_npu_nsa_select_attention_grad.py, masks
`atten_msk[0:select_s2 + 1] = 0` over natural positions once s1 >= count*bs) masks every key past
count*bs for late queries; the kernel masks only the tail of the diagonal block (p > s1). That test
only runs B=1, S1=1, so its branch never ran; the pin has queries well past count*bs.
"""
from __future__ import annotations

from harness.spec import official, pin

UT = "OT tests/utest/ts_nsag_tc.cpp (ops.md#3)"
DECODE = dict(q_lens=[1] * 64, kv_lens=[1024] * 64, n1=4, n2=1, d_qk=192, select_block_count=16,
              select_block_size=64, scale_value=1.0)
SMOKE = dict(q_lens=[1] * 2, kv_lens=[256] * 2, select_block_count=4)   # smoke: 2 sequences of 4 blocks

# dtype not given by the UT: fp16 and bf16 alternate over (D2, sparse mode)
_UT = [official(f"ut_decode_b64_dv{dv}_sparse{sm}", f"{UT}: B=64, S1=1, S2=1024, N1=4, N2=1, D=192, D2={dv}, "
                f"count 16, bs 64, scale 1.0, sparse {sm} (real_interfaces.md#4)", reduced=SMOKE,
                d_v=dv, sparse_mode=sm, dtype=dt, topk_mode="nsa" if sm == 2 else "random", **DECODE)
       for dv, sm, dt in [(192, 0, "float16"), (192, 2, "bfloat16"), (128, 0, "bfloat16"), (128, 2, "float16")]]

NAMED = (
    *_UT,
    official("aclnn_example", "aclnnNsaSelectedAttentionGrad.md example (ops.md#3): B=1, S1=1, S2=1024, N=1, "
             "D=192, sparse 0", q_lens=[1], kv_lens=[1024], n1=1, n2=1, d_qk=192, sparse_mode=0),
    official("op_plugin_grad_test", "op-plugin test/test_custom_ops/test_npu_nsa_select_attention_grad.py: bf16, q "
             "[1,1,192], k/v [1024,1,192], count 16, bs 64, scale 0.01, sparse 2",
             dtype="bfloat16", q_lens=[1], kv_lens=[1024], n1=1, n2=1, d_qk=192, d_v=192, select_block_count=16,
             select_block_size=64, scale_value=0.01, sparse_mode=2, topk_mode="nsa"),
    # the forward op's test shape, run through the grad (sparse 2: torch_npu hard-codes it, ops.md#3)
    official("op_plugin_forward_test_shape", "op-plugin test/test_custom_ops/test_npu_nsa_select_attention.py: fp16 q "
             "[1,115,192], k [1088,115,192], v [1088,115,128], count 16, bs 64, kvlen [1088], scale 1.0",
             reduced=dict(n1=3, n2=3), dtype="float16", q_lens=[1], kv_lens=[1088], n1=115, n2=115, d_qk=192,
             d_v=128, select_block_count=16, select_block_size=64, scale_value=1.0, sparse_mode=2, topk_mode="nsa"),
    pin("late_queries_causal", "OT nsa_selected_attention_grad basic_modules/vec_op.h:399-446 (CalAttenMsk: the "
        "diagonal block keeps s1 + 1 - topk*bs tokens, :412-416; later blocks are masked only while s1 + 1 < "
        "count*bs, :440)", "the op-plugin grad test masks natural positions > count*bs for s1 >= count*bs "
        "(real_interfaces.md#3)",
        dtype="float16", sparse_mode=2, topk_mode="nsa", q_lens=[200], kv_lens=[256], n1=2, n2=1, d_qk=128,
        d_v=128, select_block_size=64, select_block_count=2),
)

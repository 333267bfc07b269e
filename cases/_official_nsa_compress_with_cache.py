"""Official shapes of NsaCompressWithCache (issue 19), from ops.md#1 "Official test shapes".

The doc example, the kernel UT (OT tests/utest/op_kernel/ts_nsa_compress_with_cache_kernel.cpp: B=4,
N in {1,8,13,32,37}, D in {192,256}, two of four batches triggering, fp16 and bf16) and the first
four ST json cases. Per-batch lengths are the documented ones (`act_lens`); `trigger` says which
kind they are. Only what a source states is set; `complete` fills the rest deterministically.
"""
from __future__ import annotations

from harness.spec import official

UT = "OT tests/utest/op_kernel/ts_nsa_compress_with_cache_kernel.cpp (ops.md#1)"
ST = "OT-y tests/st/aclnnNsaCompressWithCache/all_aclnnNsaCompressWithCache.json (ops.md#1)"
UT_LENS = ([144, 192, 10, 45], [144, 1, 10, 45])     # 144 and 192 trigger (cbs 64, stride 16)
SMALL = dict(num_heads=2)   # smoke: 2 heads, inputs within tests/test_nsa_compress_with_cache's smoke bound

_UT = [official(f"ut_kernel_n{n}_d{d}_{dt}", f"{UT}: B=4, N={n}, D={d}, {dt}, act {UT_LENS[i % 2]}, cbs 64, "
                "stride 16, page 128", reduced=SMALL if n * d > 8 * 256 else None,
                dtype=dt, batch=4, num_heads=n, head_dim=d, compress_block_size=64,
                compress_stride=16, page_block_size=128, max_blocks_per_seq=2, num_blocks=8, act_lens=UT_LENS[i % 2],
                trigger="mixed")
       for i, (n, d, dt) in enumerate([(1, 192, "float16"), (8, 256, "bfloat16"), (13, 192, "bfloat16"),
                                       (32, 256, "float16"), (37, 256, "bfloat16")])]

NAMED = (
    # dtype not given in the doc example: fp16
    official("doc_example", "aclnnNsaCompressWithCache.md example (ops.md#1): B=4, N=24, D=192, page 128, cbs 32, "
             "stride 16, result_len 512, max_seq 512, actSeqLen [32,0,0,0]", reduced=SMALL,
             dtype="float16", batch=4, num_heads=24, head_dim=192, page_block_size=128, compress_block_size=32,
             compress_stride=16, result_len=512, max_blocks_per_seq=4, num_blocks=16, act_lens=[32, 0, 0, 0],
             trigger="mixed"),
    *_UT,
    official("st_case0_nothing_triggers", f"{ST} case 0: bf16 input [16,64,5,80], weight [48,5], cbs 48 / stride 48 / "
             "page 64, B=2, act (7, 257): nothing triggers",
             dtype="bfloat16", batch=2, num_heads=5, head_dim=80, num_blocks=16, page_block_size=64,
             compress_block_size=48, compress_stride=48, max_blocks_per_seq=8, act_lens=[7, 257], trigger="none"),
    official("st_case1", f"{ST} case 1: fp16 input [32,64,33,16], weight [32,33], cbs 32 / stride 16 / page 64, B=4, "
             "act (512, 7, 7, 1), out [127,33,16]",
             dtype="float16", batch=4, num_heads=33, head_dim=16, num_blocks=32, page_block_size=64,
             compress_block_size=32, compress_stride=16, max_blocks_per_seq=8, result_len=127,
             act_lens=[512, 7, 7, 1], trigger="mixed"),
    official("st_case2", f"{ST} case 2: fp16 input [4,128,54,48], weight [64,54], cbs 64 / stride 32 / page 128, B=1, "
             "act 19", dtype="float16", batch=1, num_heads=54, head_dim=48, num_blocks=4, page_block_size=128,
             compress_block_size=64, compress_stride=32, max_blocks_per_seq=4, act_lens=[19], trigger="none"),
    # stride is not listed for case 3; out [6463] = (808*128 - 32) // 16 + 1 pins it to 16 (min_result_len)
    official("st_case3_b202", f"{ST} case 3: bf16 input [808,128,1,16], cbs 32, page 128, B=202, act 512, "
             "out [6463,1,16] (stride 16 from the out rows)",
             dtype="bfloat16", batch=202, num_heads=1, head_dim=16, num_blocks=808, page_block_size=128,
             compress_block_size=32, compress_stride=16, max_blocks_per_seq=4, result_len=6463,
             act_lens=[512] * 202, trigger="all"),
)

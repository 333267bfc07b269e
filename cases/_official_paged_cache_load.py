"""Official shapes of PagedCacheLoad (issue 19): what ATB's and op-plugin's tests run.

Sources: ops.md #4 "Test shapes" (ATB csv and ND python tests, the op-plugin test) and
real_interfaces.md #4 (context lengths up to 1024; NZ kernel tests with N=64). Where a source leaves
a parameter open (dtype, block size), the case says which value it picks; everything it does not name
is filled by `complete`. Smoke runs the `reduced` form of the large ones.
"""
from __future__ import annotations

from harness.spec import official

CSV = "ATB tests/apitest/opstest/csv/paged_cache_load.csv (ops.md#4 Test shapes)"
ND_PY = "ATB tests/apitest/opstest/python/.../test_paged_cache_load_operation_nd.py (ops.md#4 Test shapes)"
CTX = "; context lengths up to 1024 (real_interfaces.md#4)"
SMALL = dict(batch=2, num_heads=2, num_blocks=8, max_context=200)   # smoke: same dims and flags, 2 sequences

# ATB ND python rows batch|seq|N|Dk|Dv|bs|nb, each run with fp16, bf16 and int8 and all four
# (cumsum, seqStarts) combinations: the 12 (dtype, combination) pairs are split over the two rows.
# seqStarts there is randint(0, 4) * bs: up to 3 blocks of offset, hence 3 spare table columns.
_ND_ROWS = {"b16_n16_dk144": dict(batch=16, num_heads=16, head_size_k=144, head_size_v=128, block_size=128,
                                  num_blocks=128, max_blocks_per_seq=8 + 3),
            "b32_n16_dk192": dict(batch=32, num_heads=16, head_size_k=192, head_size_v=128, block_size=64,
                                  num_blocks=256, max_blocks_per_seq=16 + 3)}
_COMBOS = [(False, False), (True, False), (False, True), (True, True)]
_PAIRS = [(dt, combo) for dt in ("float16", "bfloat16", "int8") for combo in _COMBOS]
_ND = [official(f"atb_nd_{row}_{dt}_{'cumsum' if cs else 'lens'}_{'starts' if st else 'nostarts'}",
                f"{ND_PY}: row {row}, {dt}, cumsum={cs}, seqStarts={st}{CTX}", reduced=SMALL,
                layout="ND", k_dtype=dt, v_dtype=dt, cumsum=cs, has_seq_starts=st, max_context=1024,
                **_ND_ROWS[row])
       for i, (dt, (cs, st)) in enumerate(_PAIRS) for row in [list(_ND_ROWS)[(i + i // 4) % 2]]]

NAMED = (
    official("atb_csv_nz_int8", f"{CSV}: NZ int8 caches [4,4,128,32], blockTable [3,1], contextLens [3], "
             "key/value [384,128] (3 full blocks of 128)",
             layout="NZ", k_dtype="int8", v_dtype="int8", batch=3, num_heads=1, head_size_k=128, head_size_v=128,
             block_size=128, num_blocks=4, max_blocks_per_seq=1, max_context=128, context_lens=[128, 128, 128]),
    official("atb_csv_modelcase_mla", f"{CSV} modelcase: NZ int8 K [290,16,128,32], bf16 V [290,4,128,16], "
             "blockTable [1,2], key [128,512], value [128,64] (DeepSeek MLA 512+64)", reduced=dict(num_blocks=4),
             layout="NZ", k_dtype="int8", v_dtype="bfloat16", batch=1, num_heads=1, head_size_k=512,
             head_size_v=64, block_size=128, num_blocks=290, max_blocks_per_seq=2, max_context=128,
             context_lens=[128]),
    # The csv's largest cache [290,4608,128,32] is 5.5 GiB per cache; the block count is cut to what one
    # 128-token sequence reads (2 blocks), the token size the NZ limit is about is kept (N*D = 147456).
    official("atb_csv_nz_max_token", f"{CSV}: max size [290,4608,128,32] (num_blocks cut from 290 to 2: 5.5 GiB)",
             reduced=dict(num_heads=1),
             layout="NZ", k_dtype="int8", v_dtype="int8", batch=1, num_heads=32, head_size_k=4608, head_size_v=4608,
             block_size=128, num_blocks=2, max_blocks_per_seq=1, max_context=128, context_lens=[128]),
    *_ND,
    official("op_plugin_mla_seq_starts", "op-plugin test/test_custom_ops/test_atb_paged_cache_load.py: MLA caches "
             "[1024,16,1,512] / [1024,16,1,64] fp16, B=8, max_seq 512, seq_starts in [0,256] not block-aligned "
             "(ops.md#4 Test shapes); 16 spare table columns hold the 256-token offset",
             reduced=dict(num_blocks=64, max_context=64, max_blocks_per_seq=4 + 2),
             layout="ND", k_dtype="float16", v_dtype="float16", batch=8, num_heads=1, head_size_k=512,
             head_size_v=64, block_size=16, num_blocks=1024, max_context=512, has_seq_starts=True, cumsum=False,
             max_blocks_per_seq=32 + 16),
    # dtype, block size and batch are not given for the NZ kernel tests: fp16 (C0=16) for one, int8 K
    # with bf16 V (C0=32 and 16) for the other; bs 128 and contexts up to 1024 as the ATB tests.
    official("atb_nz_kernel_n64_dk76_dv12", f"real_interfaces.md#4: NZ kernel tests N=64, Dk/Dv 76/12{CTX}",
             reduced=dict(batch=1, num_blocks=2, max_context=256),
             layout="NZ", k_dtype="float16", v_dtype="float16", num_heads=64, head_size_k=76, head_size_v=12,
             block_size=128, batch=4, max_context=1024),
    official("atb_nz_kernel_n64_dk276_dv212", f"real_interfaces.md#4: NZ kernel tests N=64, Dk/Dv 276/212{CTX}",
             reduced=dict(num_heads=8, num_blocks=2, max_context=256),
             layout="NZ", k_dtype="int8", v_dtype="bfloat16", num_heads=64, head_size_k=276, head_size_v=212,
             block_size=128, batch=2, max_context=1024),
)

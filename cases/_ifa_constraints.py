"""Documented constraints of torch_npu.npu_incre_flash_attention, written once as data.

Sources: the seed (torch doc, Chinese), ops.md section 5, and the aclnn doc
`aclnnIncreFlashAttentionV4.md` (OT `attention/incre_flash_attention/docs/`), which the brief names as
the aclnn entry. Predicates guard on the domain of other constraints (e.g. the kv dtype pairing is
judged only for a valid query dtype) so that every violation breaks exactly one constraint.

Data-level checks (`check_inputs`) read the inputs dict the references receive, so a negative case
built from a `fault` parameter reaches the backends as real, malformed inputs.
"""
from __future__ import annotations

import numpy as np

from harness.constraint_kinds import no_fault
from harness.spec import Constraint, Source, edge

SEED = "004_9b455b0cf40d8ded.txt"
OPS = "ops.md#5"
ACLNN = "aclnnIncreFlashAttentionV4.md"

QDT = ("float16", "bfloat16")
LAYOUTS = ("BSH", "BNSD", "BSND")
MASK_DTYPES = ("bool", "int8", "uint8")
MASK_SHAPES = ("BS", "B1S", "B11S")
PSE_SHAPES = ("BN1S", "1N1S")
ANTIQUANT_SHAPES = ("per_tensor",) + LAYOUTS          # per-channel shape named after its layout
QUANT2_PER_CHANNEL = ("ND", "1N1D", "11ND", "H", "11H")  # every shape whose dims multiply to N*D
INT8_PATH_SCALES = ("dequant_scale1", "quant_scale1", "dequant_scale2")

# Product-dependent limits (seed: "Atlas A2 ... B<=65535, N<=256, S<=262144, D<=512";
# "Atlas 推理系列加速卡产品 ... B<=256, N<=256, S<=65536, D<=512").
LIMITS = {"A2": dict(B=65535, N=256, S=262144, D=512), "310P": dict(B=256, N=256, S=65536, D=512)}
PAGE_H_MAX = 65536       # seed: "(blocknum, blocksize, H) ... H 超过64k时 ... 会被拦截报错"
BLOCK_SIZE_MAX = 512     # aclnn doc: "blocksize最大不超过512"
GQA_RATIO_MAX = 64       # seed: "num_heads与num_key_value_heads的比值不能大于64"


def _arr(x):
    return None if x is None else np.asarray(x)


# ---- data-level checks ------------------------------------------------------------------------
def _query_s(inputs):
    q, layout = _arr(inputs["query"]), inputs["input_layout"]
    return q.shape[2] if layout == "BNSD" else q.shape[1]


def _check_query_s(p, inputs):
    s = _query_s(inputs)
    return None if s == 1 else f"query S axis is {s}, IFA decodes one token (S must be 1)"


def _check_rank(p, inputs):
    if inputs.get("block_table") is not None:
        return None  # page attention: the cache layout is independent of the query rank (aclnn doc)
    q, k, v = (_arr(inputs[n]) for n in ("query", "key", "value"))
    if not (q.ndim == k.ndim == v.ndim):
        return f"query/key/value ranks {q.ndim}/{k.ndim}/{v.ndim} differ"
    return None


def _check_kv_shape(p, inputs):
    k, v = _arr(inputs["key"]), _arr(inputs["value"])
    return None if k.shape == v.shape else f"key shape {k.shape} != value shape {v.shape}"


def _check_num_heads(p, inputs):
    q, n = _arr(inputs["query"]), inputs["num_heads"]
    layout = inputs["input_layout"]
    qn = q.shape[1] if layout == "BNSD" else q.shape[2] if layout == "BSND" else None
    if qn is not None and qn != n:
        return f"num_heads={n} but the query has N={qn}"
    if layout == "BSH" and q.shape[-1] % n:
        return f"num_heads={n} does not divide the query hidden size {q.shape[-1]}"
    return None


def _act(inputs):
    a = inputs.get("actual_seq_lengths")
    return None if a is None else [int(x) for x in a]


def _check_act_count(p, inputs):
    a = _act(inputs)
    b = _arr(inputs["query"]).shape[0]
    if a is not None and len(a) not in (b, 1):
        return f"actual_seq_lengths has {len(a)} entries; B={b} needs (B) or (1)"
    return None


def _left_padding(inputs):
    return inputs.get("kv_padding_size") is not None and inputs.get("actual_seq_lengths") is not None


def _check_act_range(p, inputs):
    a = _act(inputs)
    if a is None:
        return None
    if min(a) < 0:
        return f"actual_seq_lengths holds a negative length {min(a)}"
    if inputs.get("block_table") is not None or _left_padding(inputs):
        return None  # page attention: bounded by the block table; left padding: documented zeros
    k, layout = _arr(inputs["key"]), inputs["input_layout"]
    smax = k.shape[2] if layout == "BNSD" else k.shape[1]
    if max(a) > smax:
        return f"actual_seq_lengths {max(a)} > key S {smax}"
    return None


def _check_mask_values(p, inputs):
    m = _arr(inputs.get("atten_mask"))
    if m is None or m.dtype == np.bool_:
        return None
    bad = (m != 0) & (m != 1)
    return f"atten_mask holds {int(bad.sum())} value(s) other than 0/1" if bad.any() else None


def page_lengths(inputs):
    """Per-batch logical KV lengths in page attention ((1) broadcast to B)."""
    b = _arr(inputs["query"]).shape[0]
    a = _act(inputs)
    return np.broadcast_to(np.asarray(a, np.int64), (b,)).copy() if a and len(a) in (1, b) else None


def _page_needs(inputs):
    lens = page_lengths(inputs)
    bs = int(inputs["block_size"])
    if lens is None or bs <= 0:
        return None
    return -(-lens // bs)


def _check_bt_shape(p, inputs):
    bt = _arr(inputs.get("block_table"))
    if bt is None:
        return None
    b = _arr(inputs["query"]).shape[0]
    if bt.ndim != 2 or bt.shape[0] != b:
        return f"block_table shape {bt.shape}, must be 2-D with B={b} rows"
    return None


def _check_bt_cols(p, inputs):
    bt, need = _arr(inputs.get("block_table")), _page_needs(inputs)
    if bt is None or need is None or bt.ndim != 2:
        return None
    if bt.shape[1] < need.max(initial=0):
        return f"block_table has {bt.shape[1]} columns, maxBlockNumPerSeq is {int(need.max())}"
    return None


def _num_blocks(inputs):
    return _arr(inputs["key"]).shape[0]


def _check_blocknum(p, inputs):
    if inputs.get("block_table") is None or _page_needs(inputs) is None:
        return None
    total = int(_page_needs(inputs).sum())
    nb = _num_blocks(inputs)
    return None if nb >= total else f"blocknum {nb} < {total} blocks the batches need"


def _check_bt_ids(p, inputs):
    bt, need = _arr(inputs.get("block_table")), _page_needs(inputs)
    if bt is None or need is None or bt.ndim != 2:
        return None
    used = np.arange(bt.shape[1])[None, :] < need[: bt.shape[0], None]
    ids = bt[used]
    nb = _num_blocks(inputs)
    if ids.size and (ids.min() < 0 or ids.max() >= nb):
        return f"block_table uses ids outside [0, {nb})"
    return None


def _check_bt_dtype(p, inputs):
    bt = _arr(inputs.get("block_table"))
    return None if bt is None or bt.dtype == np.int32 else f"block_table dtype {bt.dtype}, must be int32"


def _check_kv_pad(p, inputs):
    k = _arr(inputs.get("kv_padding_size"))
    if k is None:
        return None
    if k.dtype != np.int64 or k.shape != (1,):
        return f"kv_padding_size is {k.dtype}{k.shape}, must be int64 of shape (1,)"
    return None


# ---- the constraints --------------------------------------------------------------------------
def _q_ok(p):
    return p["dtype"] in QDT


C = Constraint
CONSTRAINTS = (
    # dtypes
    C("query_dtype", Source(SEED, "query:数据类型支持FLOAT16、BFLOAT16"), ("dtype", "kv_dtype"),
      lambda p: p["dtype"] in QDT or (p["dtype"] == "int8" and p["kv_dtype"] == "int8"),
      edges=[edge(dtype="float16"), edge(dtype="bfloat16")],
      violations=[dict(dtype="float32")],
      doc="an int8 query is the all-int8 path, judged by its own clause"),
    C("all_int8_unsupported", Source(SEED, "query、key、value输入均为INT8的场景暂不支持"), ("dtype", "kv_dtype"),
      lambda p: not (p["dtype"] == "int8" and p["kv_dtype"] == "int8"),
      edges=[edge(dtype="float16", kv_dtype="int8"), edge(dtype="bfloat16", kv_dtype="int8")],
      violations=[dict(dtype="int8", kv_dtype="int8")]),
    C("kv_dtype", Source(SEED, "key/value:FLOAT16、BFLOAT16、INT8; ops.md#5: int8 K/V antiquant with query "
                         "fp16/bf16, otherwise K/V in the query (compute) dtype"), ("dtype", "kv_dtype"),
      lambda p: not _q_ok(p) or p["kv_dtype"] in (p["dtype"], "int8"),
      edges=[edge(dtype="float16", kv_dtype="float16"), edge(dtype="bfloat16", kv_dtype="bfloat16")],
      violations=[dict(dtype="float16", kv_dtype="bfloat16")]),
    # product-dependent limits and support
    C("batch_limit", Source(SEED, "A2: B轴小于等于65535; 推理系列加速卡: B轴小于等于256"), ("product", "batch"),
      lambda p: 1 <= p["batch"] <= LIMITS[p["product"]]["B"],
      edges=[edge("nightly", product="A2", batch=65535, num_heads=1, num_kv_heads=1, head_dim=16, kv_seq=3,
                  paged=False, pse="none"),
             edge("nightly", product="310P", batch=256, num_heads=2, head_dim=16, kv_seq=5, paged=False)],
      violations=[dict(product="A2", batch=65536, num_heads=1, head_dim=16, kv_seq=2, paged=False, mask_dtype="none"),
                  dict(product="310P", batch=257, num_heads=1, head_dim=16, kv_seq=2)]),
    C("heads_limit", Source(SEED, "支持N轴小于等于256"), ("product", "num_heads"),
      lambda p: 1 <= p["num_heads"] <= LIMITS[p["product"]]["N"],
      edges=[edge("nightly", num_heads=256, num_kv_heads=4, head_dim=16, batch=1, kv_seq=40, paged=False)],
      violations=[dict(num_heads=257, num_kv_heads=257, head_dim=16, batch=1, kv_seq=2)]),
    C("seq_limit", Source(SEED, "A2: S轴小于等于262144; 推理系列加速卡: S轴小于等于65536"), ("product", "kv_seq"),
      lambda p: 1 <= p["kv_seq"] <= LIMITS[p["product"]]["S"],
      edges=[edge("nightly", product="A2", kv_seq=262144, batch=1, num_heads=1, num_kv_heads=1, head_dim=16,
                  paged=False),
             edge("nightly", product="310P", kv_seq=65536, batch=1, num_heads=1, head_dim=16, paged=False)],
      violations=[dict(product="A2", kv_seq=262145, batch=1, num_heads=1, head_dim=16, paged=False, kv_dtype="int8"),
                  dict(product="310P", kv_seq=65537, batch=1, num_heads=1, head_dim=16, paged=False)]),
    C("head_dim_limit", Source(SEED, "支持D轴小于等于512"), ("product", "head_dim"),
      lambda p: 1 <= p["head_dim"] <= LIMITS[p["product"]]["D"],
      edges=[edge("nightly", head_dim=512, batch=1, num_heads=2, kv_seq=64)],
      violations=[dict(head_dim=528, batch=1, num_heads=1, kv_seq=2)]),
    C("inference_card_float16_only", Source(SEED, "query/key/value: Atlas 推理系列加速卡产品仅支持FLOAT16"),
      ("product", "dtype", "kv_dtype"),
      lambda p: p["product"] != "310P" or (p["dtype"] == "float16" and p["kv_dtype"] == "float16"),
      edges=[edge(product="310P", dtype="float16", kv_dtype="float16")],
      violations=[dict(product="310P", dtype="bfloat16", kv_dtype="bfloat16"),
                  dict(product="310P", dtype="float16", kv_dtype="int8")]),
    C("inference_card_no_pse", Source(SEED, "pse_shift: Atlas 推理系列加速卡产品仅支持None"), ("product", "pse"),
      lambda p: p["product"] != "310P" or p["pse"] == "none",
      edges=[edge(product="310P", pse="none", mask_dtype="bool")],
      violations=[dict(product="310P", pse="BN1S", head_dim=16)]),
    C("inference_card_no_quant", Source(SEED, "quant_scale2/quant_offset2: Atlas 推理系列加速卡产品仅支持None"),
      ("product", "quant2"), lambda p: p["product"] != "310P" or p["quant2"] == "none",
      edges=[edge(product="310P", quant2="none", actual_seq="per_batch")],
      violations=[dict(product="310P", quant2="1")]),
    C("inference_card_kv_heads_zero", Source(ACLNN, "Atlas 推理系列加速卡产品: numKeyValueHeads仅支持取值0"),
      ("product", "kv_heads_attr"), lambda p: p["product"] != "310P" or p["kv_heads_attr"] == "zero",
      edges=[edge(product="310P", kv_heads_attr="zero", paged=True)],
      violations=[dict(product="310P", kv_heads_attr="explicit")]),
    # layout and shapes
    C("input_layout", Source(SEED, "input_layout ... 三维Tensor是BSH,四维Tensor是BNSD或BSND,不支持其他值"),
      ("layout",), lambda p: p["layout"] in LAYOUTS,
      edges=[edge(layout=x) for x in LAYOUTS], violations=[dict(layout="SBH")]),
    C("query_seq_len_one", Source(ACLNN, "实现增量推理,query的S轴固定为1"), ("fault",), no_fault("query_s2"),
      edges=[edge(layout="BNSD", fault="none"), edge(layout="BSND", fault="none")],
      violations=[dict(fault="query_s2")], check_inputs=_check_query_s),
    C("qkv_same_rank", Source(SEED, "query、key、value的维度必须保持一致"), ("fault",), no_fault("kv_rank"),
      edges=[edge(layout="BSH", paged=False, fault="none")],
      violations=[dict(fault="kv_rank", paged=False, layout="BSH")], check_inputs=_check_rank),
    C("key_value_same_shape", Source(SEED, "key、value的shape必须保持一致"), ("fault",), no_fault("kv_shape"),
      edges=[edge(paged=True, fault="none"), edge(paged=False, fault="none")],
      violations=[dict(fault="kv_shape", paged=False), dict(fault="kv_shape", paged=True)],
      check_inputs=_check_kv_shape),
    C("num_heads_matches_query", Source(SEED, "num_heads的值要等于query的N"), ("num_heads_attr",),
      lambda p: p["num_heads_attr"] == "match",
      edges=[edge(num_heads_attr="match", layout="BSND")],
      violations=[dict(num_heads_attr="wrong", layout="BNSD")], check_inputs=_check_num_heads),
    C("num_kv_heads_matches_kv", Source(SEED, "num_key_value_heads的值要等于key、value的N; 默认值为0,表示与query的头数相同"),
      ("num_heads", "num_kv_heads", "kv_heads_attr"),
      lambda p: p["kv_heads_attr"] == "explicit" or (p["kv_heads_attr"] == "zero" and p["num_kv_heads"] == p["num_heads"]),
      edges=[edge(kv_heads_attr="zero", num_heads=4, num_kv_heads=4),
             edge(kv_heads_attr="explicit", num_heads=4, num_kv_heads=4)],
      violations=[dict(kv_heads_attr="zero", num_heads=4, num_kv_heads=2, product="A2"),
                  dict(kv_heads_attr="wrong", product="A2")]),
    C("kv_heads_divide_heads", Source(SEED, "num_key_value_heads ... 需要能被query的头数(num_heads)整除"),
      ("num_heads", "num_kv_heads"), lambda p: p["num_kv_heads"] >= 1 and p["num_heads"] % p["num_kv_heads"] == 0,
      edges=[edge(num_heads=8, num_kv_heads=2, kv_heads_attr="explicit"),
             edge(num_heads=6, num_kv_heads=3, kv_heads_attr="explicit", layout="BSH")],
      violations=[dict(num_heads=6, num_kv_heads=4, kv_heads_attr="explicit", product="A2")]),
    C("gqa_ratio_max_64", Source(SEED, "num_heads与num_key_value_heads的比值不能大于64"),
      ("num_heads", "num_kv_heads"),
      lambda p: p["num_kv_heads"] < 1 or p["num_heads"] % p["num_kv_heads"]
      or p["num_heads"] // p["num_kv_heads"] <= GQA_RATIO_MAX,
      edges=[edge(num_heads=64, num_kv_heads=1, kv_heads_attr="explicit", head_dim=16),
             edge("nightly", num_heads=128, num_kv_heads=2, kv_heads_attr="explicit", head_dim=32)],
      violations=[dict(num_heads=128, num_kv_heads=1, kv_heads_attr="explicit", product="A2", head_dim=16)]),
    # actual_seq_lengths
    C("actual_seq_lengths_count", Source(SEED, "actual_seq_lengths ... 其shape为(B)或(1)"), ("actual_seq",),
      lambda p: p["actual_seq"] in ("none", "per_batch", "broadcast"),
      edges=[edge(actual_seq="per_batch", batch=3), edge(actual_seq="broadcast", batch=3),
             edge(actual_seq="none")],
      violations=[dict(actual_seq="wrong_count", batch=2)], check_inputs=_check_act_count),
    C("actual_seq_lengths_range", Source(SEED, "actual_seq_lengths ... 代表key、value中有效的S序列长度"), ("fault",),
      no_fault("seq_len_exceeds"),
      edges=[edge(actual_seq="per_batch", seq_zero=True, batch=3, paged=False),
             edge(actual_seq="broadcast", seq_zero=True, batch=2, paged=False),
             edge(actual_seq="per_batch", seq_zero=True, batch=2, paged=True)],
      violations=[dict(fault="seq_len_exceeds", paged=False, actual_seq="per_batch", kv_padding=None)],
      check_inputs=_check_act_range),
    # atten_mask
    C("atten_mask_dtype", Source(SEED, "atten_mask ... 数据类型支持BOOL,INT8,UINT8"), ("mask_dtype",),
      lambda p: p["mask_dtype"] in ("none",) + MASK_DTYPES,
      edges=[edge(mask_dtype=d) for d in MASK_DTYPES], violations=[dict(mask_dtype="float16", mask_shape="B11S")]),
    C("atten_mask_shape", Source(OPS, "atten_mask shapes (B,S), (B,1,S) or (B,1,1,S), broadcast over heads"),
      ("mask_dtype", "mask_shape"),
      lambda p: (p["mask_dtype"] == "none") == (p["mask_shape"] == "none") and p["mask_shape"] in ("none",) + MASK_SHAPES,
      edges=[edge(mask_dtype=d, mask_shape=s) for d in MASK_DTYPES for s in MASK_SHAPES],
      violations=[dict(mask_dtype="bool", mask_shape="111S", batch=2)]),
    C("atten_mask_binary", Source(SEED, "atten_mask:取值为1代表该位不参与计算,为0代表该位参与计算"), ("fault",),
      no_fault("mask_value"),
      edges=[edge(mask_dtype="int8", mask_full_row=True), edge(mask_dtype="uint8", mask_full_row=True),
             edge(mask_dtype="bool", mask_full_row=True, paged=True)],
      violations=[dict(fault="mask_value", mask_dtype="int8", mask_shape="BS")], check_inputs=_check_mask_values),
    # pse_shift
    C("pse_shift_shape", Source(OPS, "pse_shift (B,N,1,S) or (1,N,1,S), N = query heads"), ("pse",),
      lambda p: p["pse"] in ("none",) + PSE_SHAPES,
      edges=[edge(pse=s, head_dim=16) for s in PSE_SHAPES] + [edge(pse="BN1S", num_heads=4, num_kv_heads=2,
                                                                    kv_heads_attr="explicit", head_dim=32)],
      violations=[dict(pse="111S", head_dim=16, product="A2")]),
    C("pse_shift_dtype", Source(SEED, "pse_shift数据类型需与query数据类型保持一致"), ("dtype", "pse", "pse_dtype"),
      lambda p: p["pse"] == "none" or p["pse_dtype"] == p["dtype"],
      edges=[edge(pse="1N1S", dtype="bfloat16", head_dim=16), edge(pse="BN1S", dtype="float16", head_dim=16)],
      violations=[dict(pse="BN1S", dtype="float16", pse_dtype="bfloat16", head_dim=16, product="A2")]),
    C("pse_shift_head_dim_16", Source(SEED, "pse_shift ... 仅支持D轴对齐,即D轴可以被16整除"), ("pse", "head_dim"),
      lambda p: p["pse"] == "none" or p["head_dim"] % 16 == 0,
      edges=[edge(pse="BN1S", head_dim=16), edge(pse="none", head_dim=8)],
      violations=[dict(pse="BN1S", head_dim=24, product="A2")]),
    C("mask_pse_cover_page_blocks", Source(ACLNN, "page attention使能场景下,以下场景输入S需要大于等于"
                                          "maxBlockNumPerSeq * blockSize: atten mask, pseShift"),
      ("aux_s",), lambda p: p["aux_s"] in ("exact", "longer"),
      edges=[edge(paged=True, mask_dtype="bool", aux_s="exact"), edge(paged=True, pse="BN1S", aux_s="exact", head_dim=16),
             edge(paged=True, mask_dtype="uint8", pse="1N1S", aux_s="longer", head_dim=16)],
      violations=[dict(aux_s="short", paged=True, mask_dtype="bool", mask_shape="B11S", pse="none")]),
    # page attention
    C("page_attention_needs_actual_seq_lengths", Source(SEED, "page attention场景下,必须传入输入actualSeqLengths"),
      ("paged", "actual_seq"), lambda p: not p["paged"] or p["actual_seq"] != "none",
      edges=[edge(paged=True, actual_seq="per_batch"), edge(paged=True, actual_seq="broadcast")],
      violations=[dict(paged=True, actual_seq="none")]),
    C("block_size_range", Source(ACLNN, "使能page attention场景下,blockSize需要传入非0值, 且blocksize最大不超过512"),
      ("paged", "block_size"), lambda p: not p["paged"] or 0 < p["block_size"] <= BLOCK_SIZE_MAX,
      edges=[edge("nightly", paged=True, block_size=512, batch=2, kv_seq=700)],
      violations=[dict(paged=True, block_size=0), dict(paged=True, block_size=544, kv_dtype="float16")]),
    C("block_size_alignment", Source(SEED, "key、value输入类型为FLOAT16、BFLOAT16时blockSize需要16对齐;"
                                     "INT8时blockSize需要32对齐"), ("paged", "kv_dtype", "block_size"),
      lambda p: not p["paged"] or not 0 < p["block_size"] <= BLOCK_SIZE_MAX
      or p["block_size"] % (32 if p["kv_dtype"] == "int8" else 16) == 0,
      edges=[edge(paged=True, kv_dtype="float16", block_size=16), edge(paged=True, kv_dtype="int8", block_size=32),
             edge(paged=True, kv_dtype="bfloat16", dtype="bfloat16", block_size=48)],
      violations=[dict(paged=True, kv_dtype="float16", dtype="float16", block_size=24),
                  dict(paged=True, kv_dtype="int8", block_size=48)]),
    C("page_cache_bnbd_needs_bnsd", Source(SEED, "kv cache排布格式为(blocknum, numKvHeads, blocksize, headDims),"
                                           "但此时query layout仅支持BNSD"), ("paged", "cache_layout", "layout"),
      lambda p: not p["paged"] or p["cache_layout"] == "BBH" or (p["cache_layout"] == "BNBD" and p["layout"] == "BNSD"),
      edges=[edge(paged=True, cache_layout="BNBD", layout="BNSD"), edge(paged=True, cache_layout="BBH", layout="BNSD"),
             edge(paged=True, cache_layout="BBH", layout="BSH"), edge(paged=True, cache_layout="BBH", layout="BSND")],
      violations=[dict(paged=True, cache_layout="BNBD", layout="BSH"),
                  dict(paged=True, cache_layout="BNBD", layout="BSND")]),
    C("page_cache_bbh_hidden_limit", Source(SEED, "kv cache排布格式为(blocknum, blocksize, H),且H"
                                            "(H=numKvHeads * headDims)超过64k时 ... 会被拦截报错"),
      ("paged", "cache_layout", "num_kv_heads", "head_dim"),
      lambda p: not p["paged"] or p["cache_layout"] != "BBH" or p["num_kv_heads"] * p["head_dim"] <= PAGE_H_MAX,
      edges=[edge("nightly", paged=True, cache_layout="BBH", num_heads=128, num_kv_heads=128, head_dim=512,
                  batch=1, kv_seq=20, block_size=16, pse="none", quant2="none")],
      violations=[dict(paged=True, cache_layout="BBH", num_heads=256, num_kv_heads=256, kv_heads_attr="explicit",
                       head_dim=512, batch=1, kv_seq=4)]),
    C("block_table_shape", Source(SEED, "block_table必须为二维Tensor,第一维长度需等于batch数"), ("fault",),
      no_fault("bt_rows"), edges=[edge(paged=True, batch=3)], violations=[dict(fault="bt_rows", paged=True)],
      check_inputs=_check_bt_shape),
    C("block_table_covers_longest", Source(SEED, "第二维长度不能小于maxBlockNumPerSeq(每个batch中最大"
                                           "actualSeqLengths对应的block数量)"), ("fault",), no_fault("bt_short"),
      edges=[edge(paged=True, table_extra=0), edge(paged=True, table_extra=3)],
      violations=[dict(fault="bt_short", paged=True)], check_inputs=_check_bt_cols),
    C("block_num_enough", Source(SEED, "blocknum不应小于每个batch所需block个数的总和"), ("fault",),
      no_fault("blocknum_short"), edges=[edge(paged=True, spare_blocks=0, batch=3)],
      violations=[dict(fault="blocknum_short", paged=True, batch=2)], check_inputs=_check_blocknum),
    C("block_ids_in_range", Source(OPS, "logical KV token j of batch b lives at cache[block_table[b, j//bs], j%bs]; "
                                   "seed: blocktable存在且有效"), ("fault",), no_fault("bt_id"),
      edges=[edge(paged=True, spare_blocks=5)], violations=[dict(fault="bt_id", paged=True)],
      check_inputs=_check_bt_ids),
    C("block_table_int32", Source(SEED, "block_table:数据类型支持INT32"), ("fault",), no_fault("bt_dtype"),
      edges=[edge(paged=True, cache_layout="BNBD", layout="BNSD", kv_dtype="int8")],
      violations=[dict(fault="bt_dtype", paged=True)], check_inputs=_check_bt_dtype),
    # antiquant
    C("antiquant_iff_int8_kv", Source(SEED, "antiquant_scale: 表示量化因子 (int8 key/value); ops.md#5 "
                                      "K_deq = (K_int8 + offset[0]) * scale[0]"), ("dtype", "kv_dtype", "antiquant"),
      lambda p: not _q_ok(p) or (p["kv_dtype"] == "int8") == (p["antiquant"] != "none"),
      edges=[edge(kv_dtype="int8", antiquant="per_tensor"), edge(kv_dtype="float16", dtype="float16", antiquant="none")],
      violations=[dict(kv_dtype="int8", antiquant="none", dtype="float16"),
                  dict(kv_dtype="bfloat16", dtype="bfloat16", antiquant="per_tensor", product="A2")]),
    C("antiquant_shape", Source(SEED, "antiquant_scale ... BNSD场景下shape为(2, N, 1, D),BSH场景下shape为(2, H),"
                                "BSND场景下shape为(2, N, D); aclnn: per-tensor (2)"), ("layout", "antiquant"),
      lambda p: p["layout"] not in LAYOUTS or p["antiquant"] in ("none", "per_tensor", p["layout"]),
      edges=[edge(kv_dtype="int8", antiquant=x, layout=x) for x in LAYOUTS]
      + [edge(kv_dtype="int8", antiquant="per_tensor", layout=x) for x in LAYOUTS]
      + [edge(kv_dtype="int8", antiquant="BNSD", layout="BNSD", paged=True, cache_layout="BNBD", num_heads=4,
              num_kv_heads=2, kv_heads_attr="explicit")],
      violations=[dict(kv_dtype="int8", antiquant="BSH", layout="BNSD"),
                  dict(kv_dtype="int8", antiquant="BNSD", layout="BSND")]),
    C("antiquant_dtype", Source(ACLNN, "antiquantScale/antiquantOffset: 参数数据类型和query数据类型相同"),
      ("dtype", "antiquant", "antiquant_dtype"),
      lambda p: p["antiquant"] == "none" or p["antiquant_dtype"] == p["dtype"],
      edges=[edge(kv_dtype="int8", dtype="bfloat16", antiquant_dtype="bfloat16", antiquant_offset="same")],
      violations=[dict(kv_dtype="int8", dtype="float16", antiquant="per_tensor", antiquant_dtype="bfloat16",
                       product="A2")]),
    C("antiquant_offset_matches_scale", Source(SEED, "antiquant_offset ... shape同antiquant_scale: (2, N, 1, D)/"
                                               "(2, H)/(2, N, D)"), ("antiquant", "antiquant_offset"),
      lambda p: p["antiquant_offset"] == "none" or (p["antiquant_offset"] == "same" and p["antiquant"] != "none"),
      edges=[edge(kv_dtype="int8", antiquant_offset="same", antiquant="per_tensor"),
             edge(kv_dtype="int8", antiquant_offset="same", antiquant="BSND", layout="BSND"),
             edge(kv_dtype="int8", antiquant_offset="none")],
      violations=[dict(kv_dtype="int8", antiquant="BSH", layout="BSH", antiquant_offset="mismatch"),
                  dict(kv_dtype="float16", dtype="float16", antiquant="none", antiquant_offset="same")]),
    # output quantization
    C("quant_scale2_shape", Source(OPS, "per-channel: product of dims = N_q*D (CheckQuant2Shape uses numHeads_); "
                                   "per-tensor (1)"), ("num_heads", "num_kv_heads", "quant2"),
      lambda p: p["quant2"] in ("none", "1") + QUANT2_PER_CHANNEL
      or (p["quant2"] == "NkvD" and p["num_kv_heads"] == p["num_heads"]),
      edges=[edge(quant2=s) for s in ("1",) + QUANT2_PER_CHANNEL]
      + [edge(quant2="ND", num_heads=8, num_kv_heads=2, kv_heads_attr="explicit", kv_dtype="int8")],
      violations=[dict(quant2="NkvD", num_heads=4, num_kv_heads=2, kv_heads_attr="explicit", product="A2")]),
    C("quant_scale2_dtype", Source(ACLNN, "quantScale2 ... 当输入为BFLOAT16时,同时支持FLOAT32和BFLOAT16,否则仅支持FLOAT32"),
      ("dtype", "quant2", "quant2_dtype"),
      lambda p: p["quant2"] == "none" or p["quant2_dtype"] == "float32"
      or (p["quant2_dtype"] == "bfloat16" and p["dtype"] == "bfloat16"),
      edges=[edge(quant2="1", dtype="bfloat16", quant2_dtype="bfloat16"),
             edge(quant2="ND", dtype="bfloat16", quant2_dtype="bfloat16", quant_offset2="same"),
             edge(quant2="H", dtype="float16", quant2_dtype="float32", layout="BSH")],
      violations=[dict(quant2="1", dtype="float16", quant2_dtype="bfloat16", product="A2"),
                  dict(quant2="1", dtype="bfloat16", quant2_dtype="float16", product="A2")]),
    C("quant_offset2_matches_scale2", Source(ACLNN, "若传入 quantOffset2,需保证其类型和shape信息与 quantScale2 一致; "
                                             "seed: quant_scale2必填,quant_offset2可选"), ("quant2", "quant_offset2"),
      lambda p: p["quant_offset2"] == "none" or (p["quant_offset2"] == "same" and p["quant2"] != "none"),
      edges=[edge(quant2="1", quant_offset2="same"), edge(quant2="1N1D", layout="BNSD", quant_offset2="same"),
             edge(quant2="11ND", layout="BSND", quant_offset2="none")],
      violations=[dict(quant2="ND", quant_offset2="dtype_mismatch", dtype="bfloat16", quant2_dtype="float32", product="A2"),
                  dict(quant2="ND", quant_offset2="shape_mismatch", product="A2"),
                  dict(quant2="none", quant_offset2="same")]),
    C("int8_path_scales_banned", Source(SEED, "输出为INT8的场景:入参quant_scale2必填,quant_offset2可选,不能传入"
                                        "dequant_scale1、quant_scale1、dequant_scale2; 均为INT8的场景暂不支持"),
      ("int8_path_scales",), lambda p: p["int8_path_scales"] == "none",
      edges=[edge(int8_path_scales="none", quant2="1"), edge(int8_path_scales="none", quant2="none")],
      violations=[dict(int8_path_scales=s, quant2="1", product="A2") for s in INT8_PATH_SCALES]
      + [dict(int8_path_scales="dequant_scale1", quant2="none")]),
    # kv left padding
    C("kv_padding_size_int64", Source(SEED, "kv_padding_size:数据类型支持INT64"), ("fault",), no_fault("kv_pad_dtype"),
      edges=[edge(paged=False, actual_seq="per_batch", kv_padding=2),
             edge(paged=False, actual_seq="per_batch", kv_padding=-3),            # pad < 0 is treated as 0
             edge(paged=False, actual_seq="per_batch", kv_padding=1, kv_pad_overflow=True, batch=3),  # zeros
             edge(paged=False, actual_seq="broadcast", kv_padding=0, mask_dtype="bool", pse="BN1S", head_dim=16),
             edge(paged=False, actual_seq="none", kv_padding=3)],                  # no lengths: right padding
      violations=[dict(fault="kv_pad_dtype", paged=False, actual_seq="per_batch", kv_padding=1)],
      check_inputs=_check_kv_pad),
    # precision mode
    C("inner_precise_values", Source(SEED, "inner_precise ... 0代表高精度,1代表高性能"), ("inner_precise",),
      lambda p: p["inner_precise"] in (0, 1),
      edges=[edge(inner_precise=0, kv_dtype="int8"), edge(inner_precise=1, kv_dtype="int8"), edge(inner_precise=0)],
      violations=[dict(inner_precise=2)]),
)


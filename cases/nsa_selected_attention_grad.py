"""aclnnNsaSelectedAttentionGrad (torch: torch_npu.npu_nsa_select_attention_grad).

Backward of NSA selected attention: each query attends to select_block_count blocks of
select_block_size keys named by topk_indices; outputs dq, dk, dv. Seed 002_aef0bd04c97c191b.txt;
formulas, the 8-wide softmax statistics, sparse modes and the top-k convention in
shared/reference/ops.md section 3.

Case parameters: dtype, layout, sparse_mode (0 none, 2 top-left causal), q_lens / kv_lens (per-batch
lengths; the inputs carry their prefix sums), n1 / n2 (query / KV heads), head_num, value_heads,
out_heads (heads of attention_out and grad), d_qk / d_v, out_dim (D of attention_out and grad),
select_block_size, select_block_count, topk_width, stats_width, topk_mode (nsa / random / dup),
scale_value, has_mask, fault, dist. The parameters that only ever differ from their derived
default in negative cases (head_num, value_heads, out_heads, out_dim, topk_width, stats_width,
has_mask, layout, fault) let every documented shape constraint be broken on its own.

The input builder computes the forward products (attention_out, softmax_max, softmax_sum with the
8 copies identical) with a float64 forward on the same q, k, v and top-k, cast to the documented
dtypes, and draws a random grad (dY).
"""
from __future__ import annotations

import math
import random

import numpy as np

from harness.dtypes import cast, name_of, np_dtype
from harness.feasible import Chooser
from harness.half import max_magnitude_bits
from harness.inputs import fill
from harness.spec import Constraint, OpSpec, OutputRule, Region, Source, TierPlan, edge

from ._capture_nsa_selected_attention_grad import infer as infer_call
from ._nsa_select import forward64, selected_rows_mask
from ._nsa_topk import make_topk
from ._official_nsa_selected_attention_grad import NAMED

SEED = "002_aef0bd04c97c191b.txt"
OPS = "ops.md#3"
DTYPES = ("float16", "bfloat16")
MAX_T = 2 * 1024 * 1024           # seed: T1, T2, B "取值范围为1~2M"
MAX_S = 128 * 1024                # seed: S "取值范围为1~128K"
STATS_WIDTH = 8                   # seed: softmaxMax / softmaxSum shape [T1, N1, 8]
# Score elements (T1 * N1 * count * bs) a completed case aims at, so a tier's cases stay fast.
BUDGET = {"smoke": 1 << 13, "nightly": 1 << 17, "full": 1 << 19}
# KV elements (N2 * T2 * D) a completed case aims at: the golden converts K and V to float64 once.
KV_BUDGET = {"smoke": 1 << 19, "nightly": 1 << 21, "full": 1 << 23}
# Tensors of negative cases above this many elements are broadcast views (never computed on).
CHEAP_LIMIT = 1 << 22


def _lens(p, key):
    return [int(x) for x in p[key]]


def _heads_ok(p):
    return p["n2"] < 1 or p["n1"] % p["n2"] == 0


def _group_ok(p):
    return p["n2"] < 1 or p["n1"] // p["n2"] <= 32


def _shape(x):
    return tuple(np.shape(x))


def _cu(inputs, key):
    return np.asarray(inputs[key], dtype=np.int64).reshape(-1)


# ---- data-level checks: what the references verify on the tensors themselves -------------------
def _check_dtypes(p, i):
    dt = i["query"].dtype
    for k in ("key", "value", "attention_out", "grad"):
        if i[k].dtype != dt:
            return f"{k} dtype {i[k].dtype} differs from query dtype {dt}"
    if dt not in (np_dtype(d) for d in DTYPES):
        return f"query dtype {dt} is not float16 / bfloat16"
    for k in ("softmax_max", "softmax_sum"):
        if i[k].dtype != np.float32:
            return f"{k} dtype {i[k].dtype}, must be float32"
    if i["topk_indices"].dtype != np.int32:
        return f"topk_indices dtype {i['topk_indices'].dtype}, must be int32"
    return None


def _check_batch(p, i):
    nq, nk = _cu(i, "actual_seq_qlen").size, _cu(i, "actual_seq_kvlen").size
    return None if nq == nk else f"actual_seq_qlen has {nq} batches, actual_seq_kvlen {nk}"


def _check_t1(p, i):
    cu = _cu(i, "actual_seq_qlen")
    t1 = _shape(i["query"])[0]
    if cu.size and cu[-1] != t1:
        return f"actual_seq_qlen ends at {cu[-1]}, query has T1={t1}"
    return None if t1 <= MAX_T else f"T1={t1} > {MAX_T}"


def _check_t2(p, i):
    cu = _cu(i, "actual_seq_kvlen")
    t2 = _shape(i["key"])[0]
    if cu.size and cu[-1] != t2:
        return f"actual_seq_kvlen ends at {cu[-1]}, key has T2={t2}"
    return None if t2 <= MAX_T else f"T2={t2} > {MAX_T}"


def _check_kv_heads(p, i):
    a, b = _shape(i["key"])[1], _shape(i["value"])[1]
    return None if a == b else f"key has {a} heads, value {b}"


def _check_q_heads(p, i):
    n = {k: _shape(i[k])[1] for k in ("query", "attention_out", "grad")}
    return None if len(set(n.values())) == 1 else f"head counts differ: {n}"


def _check_head_num(p, i):
    n1 = _shape(i["query"])[1]
    return None if int(i["head_num"]) == n1 else f"head_num={i['head_num']} but query has {n1} heads"


def _check_value_dims(p, i):
    d = {k: _shape(i[k])[2] for k in ("value", "attention_out", "grad")}
    return None if len(set(d.values())) == 1 else f"D differs: {d}"


def _check_stats(p, i):
    want = _shape(i["query"])[:2] + (STATS_WIDTH,)
    for k in ("softmax_max", "softmax_sum"):
        if _shape(i[k]) != want:
            return f"{k} has shape {_shape(i[k])}, expected {want}"
    return None


def _check_topk_shape(p, i):
    want = (_shape(i["query"])[0], _shape(i["key"])[1], int(i["select_block_count"]))
    got = _shape(i["topk_indices"])
    return None if got == want else f"topk_indices has shape {got}, expected {want}"


def _check_mask(p, i):
    return None if i.get("atten_mask") is None else "atten_mask is given (reserved, unsupported)"


def _check_topk_range(p, i):
    topk = np.asarray(i["topk_indices"])
    if topk.size == 0:
        return None
    bs = int(i["select_block_size"])
    cu_q = _cu(i, "actual_seq_qlen")
    nblk = np.diff(np.r_[0, _cu(i, "actual_seq_kvlen")]) // bs
    b = np.searchsorted(cu_q, np.arange(topk.shape[0]), side="right")
    bad = (topk < 0) | (topk >= nblk[b][:, None, None])
    if bad.any():
        t, n, c = (int(x) for x in np.argwhere(bad)[0])
        return f"topk_indices[{t},{n},{c}]={int(topk[t, n, c])} outside [0, {int(nblk[b[t]])}) blocks of batch {int(b[t])}"
    return None


C = Constraint
CONSTRAINTS = (
    C("dtype_supported", Source(SEED, "query/key/value/attentionOut/attentionOutGrad: BFLOAT16和FLOAT16, 与query一致; "
                              "softmaxMax/Sum FLOAT; topkIndices INT32"),
      ("dtype",), lambda p: p["dtype"] in DTYPES,
      edges=[edge(dtype=d) for d in DTYPES], violations=[dict(dtype="float32")], check_inputs=_check_dtypes),
    C("layout_tnd", Source(SEED, "inputLayout 支持TND; query、key、value、attentionOut、attentionOutGrad的inputLayout必须一致"),
      ("layout",), lambda p: p["layout"] == "TND",
      edges=[edge("nightly", layout="TND")], violations=[dict(layout="BSND")]),
    C("batch_equal", Source(SEED, "输入query、key、value、attentionOut、attentionOutGrad的B(batchsize)必须相等"),
      ("q_lens", "kv_lens"), lambda p: len(p["q_lens"]) == len(p["kv_lens"]),
      edges=[edge("nightly", q_lens=[33, 1, 70], n1=2, n2=1, select_block_size=16, select_block_count=4)],
      violations=[dict(select_block_size=16, select_block_count=2, q_lens=[5, 7], kv_lens=[64])],
      check_inputs=_check_batch),
    C("batch_range", Source(SEED, "B:取值范围为1~2M (B > 2M forces T1 > 2M, so only B = 0 breaks this alone)"),
      ("q_lens",), lambda p: 1 <= len(p["q_lens"]) <= MAX_T,
      edges=[edge(q_lens=[1]), edge("nightly", q_lens=[3, 1, 9, 2, 5, 1, 7, 4])],
      violations=[dict(q_lens=[], kv_lens=[])]),
    C("seq_len_range", Source(SEED, "S:取值范围为1~128K"),
      ("q_lens", "kv_lens"), lambda p: all(1 <= s <= MAX_S for s in list(p["q_lens"]) + list(p["kv_lens"])),
      edges=[edge("nightly", q_lens=[1], sparse_mode=2),
             edge("nightly", sparse_mode=0, select_block_size=16, select_block_count=1, n1=1, n2=1,
                  q_lens=[8], kv_lens=[MAX_S]),
             edge("full", sparse_mode=0, select_block_size=16, select_block_count=1, n1=1, n2=1,
                  q_lens=[MAX_S], kv_lens=[64])],
      violations=[dict(sparse_mode=0, select_block_size=16, select_block_count=1, q_lens=[MAX_S + 1], kv_lens=[32]),
                  dict(sparse_mode=0, select_block_size=16, select_block_count=1, q_lens=[4], kv_lens=[MAX_S + 16]),
                  dict(sparse_mode=0, select_block_size=16, select_block_count=1, q_lens=[0], kv_lens=[32])]),
    C("t1_range", Source(SEED, "T1:取值范围为1~2M。T1表示query所有batch下S的和 (T1 >= 1 follows from B >= 1, S >= 1)"),
      ("q_lens",), lambda p: sum(p["q_lens"]) <= MAX_T,
      edges=[edge("nightly", q_lens=[1], sparse_mode=0)],
      violations=[dict(sparse_mode=0, select_block_size=16, select_block_count=1, q_lens=[MAX_S] * 16 + [1],
                       kv_lens=[16] * 17)],
      check_inputs=_check_t1),
    C("t2_range", Source(SEED, "T2:取值范围为1~2M。T2表示key、value所有batch下S的和"),
      ("kv_lens",), lambda p: sum(p["kv_lens"]) <= MAX_T,
      edges=[edge("nightly", select_block_size=16, select_block_count=1, q_lens=[16], kv_lens=[16])],
      violations=[dict(sparse_mode=0, select_block_size=16, select_block_count=1, q_lens=[1] * 17,
                       kv_lens=[MAX_S] * 16 + [16])],
      check_inputs=_check_t2),
    C("n1_range", Source(SEED, "N1:取值范围为1~128。表示query的headNum"),
      ("n1",), lambda p: 1 <= p["n1"] <= 128,
      edges=[edge(n1=1, n2=1), edge("nightly", n1=128, n2=4)],
      violations=[dict(n1=256, n2=8), dict(n1=0, n2=1)]),
    C("n2_range", Source(SEED, "N2:取值范围为1~128 (N2 > 128 forces N1 > 128: only N2 = 0 breaks this alone)"),
      ("n2",), lambda p: 1 <= p["n2"] <= 128,
      edges=[edge("nightly", n1=32, n2=1), edge("nightly", n1=128, n2=128)],
      violations=[dict(n1=4, n2=0)]),
    C("n1_multiple_of_n2", Source(SEED, "N1必须为N2的整数倍"), ("n1", "n2"), _heads_ok,
      edges=[edge(n1=6, n2=3), edge("nightly", n1=8, n2=8)], violations=[dict(n1=6, n2=4)]),
    C("group_size", Source(SEED, "G:取值范围为1~32。G = N1 / N2"), ("n1", "n2"), _group_ok,
      edges=[edge(n1=32, n2=1), edge("nightly", n1=64, n2=2, dtype="bfloat16", d_qk=192, d_v=128)],
      violations=[dict(n1=64, n2=1)]),
    C("head_num_matches_query", Source(SEED, "headNum: 代表输入query的N轴长度"),
      ("head_num", "n1"), lambda p: p["head_num"] == p["n1"],
      edges=[edge("nightly", n1=3, n2=1)], violations=[dict(n1=4, n2=1, head_num=5)], check_inputs=_check_head_num),
    C("kv_heads_equal", Source(SEED, "输入key、value的N(numHead)必须一致"),
      ("n2", "value_heads"), lambda p: p["value_heads"] == p["n2"],
      edges=[edge("nightly", n1=4, n2=4)], violations=[dict(n1=4, n2=2, value_heads=1)], check_inputs=_check_kv_heads),
    C("q_heads_equal", Source(SEED, "输入query、attentionOut、attentionOutGrad的N(numHead)必须一致"),
      ("n1", "out_heads"), lambda p: p["out_heads"] == p["n1"],
      edges=[edge("nightly", n1=16, n2=2)], violations=[dict(n1=4, n2=1, out_heads=2)], check_inputs=_check_q_heads),
    C("value_dims_equal", Source(SEED, "输入value、attentionOut、attentionOutGrad的D(HeadDim)必须一致"),
      ("d_v", "out_dim"), lambda p: p["out_dim"] == p["d_v"],
      edges=[edge("nightly", d_qk=192, d_v=128)], violations=[dict(d_qk=192, d_v=128, out_dim=192)],
      check_inputs=_check_value_dims),
    C("head_dim", Source(SEED, "D:取值范围为192或128,支持K和V的D(HeadDim)不相等"),
      ("d_qk", "d_v"), lambda p: p["d_qk"] in (128, 192) and p["d_v"] in (128, 192),
      edges=[edge(d_qk=128, d_v=128), edge(d_qk=192, d_v=192), edge(d_qk=192, d_v=128)],
      violations=[dict(d_qk=64, d_v=64), dict(d_qk=256, d_v=128)]),
    C("dv_le_dqk", Source(OPS, "grad tiling: Dq == Dk >= Dv"),
      ("d_qk", "d_v"), lambda p: p["d_v"] <= p["d_qk"],
      edges=[edge("nightly", d_qk=192, d_v=128, dtype="float16")], violations=[dict(d_qk=128, d_v=192)]),
    C("stats_shape", Source(SEED, "softmaxMax与softmaxSum参数shape的约束:[T1, N1, 8]"),
      ("stats_width",), lambda p: p["stats_width"] == STATS_WIDTH,
      edges=[edge("nightly", stats_width=STATS_WIDTH)], violations=[dict(stats_width=1)], check_inputs=_check_stats),
    C("topk_shape", Source(SEED, "topkIndices参数shape的约束:[T1, N2, selectedBlockCount]"),
      ("topk_width", "select_block_count"), lambda p: p["topk_width"] == p["select_block_count"],
      edges=[edge("nightly", select_block_count=5)], violations=[dict(select_block_count=4, topk_width=5)],
      check_inputs=_check_topk_shape),
    C("block_size_range", Source(SEED, "selectedBlockSize: 目前支持16~128,需对齐16"),
      ("select_block_size",), lambda p: 16 <= p["select_block_size"] <= 128 and p["select_block_size"] % 16 == 0,
      edges=[edge(select_block_size=16), edge("nightly", select_block_size=48),
             edge(select_block_size=128, select_block_count=1),
             edge("nightly", select_block_size=112, select_block_count=3, sparse_mode=2)],
      violations=[dict(select_block_size=8), dict(select_block_size=24), dict(select_block_size=144)]),
    C("block_count_range", Source(SEED, "selectedBlockCount: 目前支持1~32"),
      ("select_block_count",), lambda p: 1 <= p["select_block_count"] <= 32,
      edges=[edge("nightly", select_block_count=1, sparse_mode=2),
             edge(select_block_count=32, select_block_size=16, n1=2, n2=1),
             edge("nightly", select_block_count=32, select_block_size=128, n1=1, n2=1, q_lens=[3])],
      violations=[dict(select_block_count=0), dict(select_block_count=33)]),
    C("kv_len_min", Source(SEED, "key、value的S 必须大于等于selectedBlockSize * selectedBlockCount"),
      ("kv_lens", "select_block_size", "select_block_count"),
      lambda p: all(s >= p["select_block_size"] * p["select_block_count"] for s in p["kv_lens"]),
      edges=[edge("nightly", select_block_size=32, select_block_count=3, q_lens=[96], kv_lens=[96], sparse_mode=2,
                  n1=4),
             edge(select_block_size=32, select_block_count=2, q_lens=[40, 17], kv_lens=[64, 96], sparse_mode=2)],
      violations=[dict(select_block_size=16, select_block_count=4, kv_lens=[48], q_lens=[8])]),
    C("kv_len_multiple", Source(SEED, "key、value的S ... 且必须为selectedBlockSize的整数倍"),
      ("kv_lens", "select_block_size"),
      lambda p: p["select_block_size"] > 0 and all(s % p["select_block_size"] == 0 for s in p["kv_lens"]),
      edges=[edge("nightly", select_block_size=16, select_block_count=2, q_lens=[20, 50], kv_lens=[80, 64],
                  sparse_mode=0)],
      violations=[dict(select_block_size=16, select_block_count=2, kv_lens=[40], q_lens=[8])]),
    C("sparse_mode_supported", Source(SEED, "sparseMode: 目前仅支持sparseMode=0或2"),
      ("sparse_mode",), lambda p: p["sparse_mode"] in (0, 2),
      edges=[edge(sparse_mode=0, topk_mode="random"), edge(sparse_mode=0, topk_mode="dup"),
             edge("nightly", sparse_mode=0, topk_mode="nsa"), edge(sparse_mode=2),
             edge(sparse_mode=2, select_block_size=16, select_block_count=2, q_lens=[100, 37], n1=8, n2=2),
             edge("nightly", sparse_mode=2, select_block_size=64, select_block_count=4, q_lens=[700], n1=2, n2=1)],
      violations=[dict(sparse_mode=1), dict(sparse_mode=3)]),
    C("atten_mask_unsupported", Source(SEED, "attenMaskOptional: 预留参数,暂不支持"),
      ("has_mask",), lambda p: not p["has_mask"],
      edges=[edge("nightly", has_mask=False)], violations=[dict(has_mask=True)], check_inputs=_check_mask),
    C("topk_in_range", Source(OPS, "topk holds block indices relative to the batch start in KV"),
      ("fault",), lambda p: p["fault"] != "topk_out_of_range",
      edges=[edge("nightly", topk_mode="random", sparse_mode=0, select_block_size=16, select_block_count=4,
                  kv_lens=[64])],
      violations=[dict(fault="topk_out_of_range")], check_inputs=_check_topk_range),
)

AXES = {
    "dtype": DTYPES,
    "sparse_mode": (0, 2),
    "d_qk": (128, 192),
    "d_v": (128, 192),
    "select_block_size": (16, 48, 64, 128),
    "select_block_count": (1, 3, 16, 32),
    "n2": (1, 2, 4),
    "n1": (1, 4, 8, 32),
}


def _pick(rng, values):
    return values[rng.randrange(len(values))]


pick = Chooser(CONSTRAINTS)


def complete(p: dict, rng: random.Random, tier: str) -> dict:
    """Fill missing params consistently with the constraints; given params are kept as they are."""
    small = tier == "smoke"
    budget = BUDGET.get(tier, BUDGET["smoke"])
    p.setdefault("dtype", _pick(rng, DTYPES))
    p.setdefault("layout", "TND")
    p.setdefault("has_mask", False)
    p.setdefault("fault", "none")
    p.setdefault("dist", "uniform")
    p.setdefault("sparse_mode", _pick(rng, (0, 2)))
    # head dims and counts drawn among what the constraints allow (dv_le_dqk, n1_multiple_of_n2,
    # group_size, n1_range / n2_range)
    pick(p, "d_qk", (128, 192), rng, ahead={"d_v": (128, 192)})
    pick(p, "d_v", (128, 192), rng)
    pick(p, "n2", range(1, 129) if "n1" in p else (1, 2) if small else (1, 2, 4), rng)
    pick(p, "n1", [p["n2"] * g for g in ((1, 2, 4) if small else (1, 2, 4, 8, 16, 32))], rng)
    p.setdefault("head_num", p["n1"])
    p.setdefault("value_heads", p["n2"])
    p.setdefault("out_heads", p["n1"])
    p.setdefault("out_dim", p["d_v"])
    heads = max(p["n1"], 1)
    # a KV length of count*bs (+ 2 spare blocks) per batch, up to 3 batches, within KV_BUDGET
    kv_unit = 3 * max(p["n2"], 1) * p["d_qk"]
    kv_budget = KV_BUDGET.get(tier, KV_BUDGET["smoke"])
    if "select_block_size" not in p:
        p["select_block_size"] = _pick(rng, [b for b in ((16, 32, 64) if small else (16, 32, 48, 64, 128))
                                             if heads * b <= budget and kv_unit * 3 * b <= kv_budget] or [16])
    bs = p["select_block_size"]
    if "select_block_count" not in p:
        p["select_block_count"] = _pick(rng, [c for c in ((1, 2, 4) if small else (1, 2, 4, 8, 16))
                                              if heads * bs * c <= budget and kv_unit * (c + 2) * bs <= kv_budget]
                                        or [1])
    count = p["select_block_count"]
    p.setdefault("topk_width", count)
    p.setdefault("stats_width", STATS_WIDTH)
    p.setdefault("topk_mode", "nsa" if p["sparse_mode"] == 2 else _pick(rng, ("random", "random", "dup")))
    length = max(bs * count, 1)
    if "q_lens" not in p:
        # batches within KV_BUDGET too: the pairwise rows fix block size, count and heads (their product
        # alone can pass the budget, e.g. 32 blocks of 48 keys over 4 KV heads), the batch count is free
        per_batch = (count + 2) * bs * max(p["n2"], 1) * p["d_qk"]
        nb = len(p["kv_lens"]) if "kv_lens" in p else _pick(rng, [n for n in (1, 2, 3) if n * per_batch <= kv_budget]
                                                             or [1])
        per_batch = max(1, budget // (heads * length * max(nb, 1)))
        # sparse_mode 2: reach past count*bs so that later queries take the sorted causal top-k
        qmax = min(per_batch, length + 3 * bs if p["sparse_mode"] == 2 else 4 * bs)
        p["q_lens"] = [rng.randint(1, max(qmax, 1)) for _ in range(nb)]
    if "kv_lens" not in p:
        kv = []
        # the least KV length kv_len_min and kv_len_multiple allow (a multiple of bs), asked of them
        least = pick({"select_block_size": bs, "select_block_count": count}, "kv_lens",
                     [[m * bs] for m in range(1, 34)])[0]
        for q in p["q_lens"]:
            need = max(least, -(-q // bs) * bs if p["sparse_mode"] == 2 else 0)
            kv.append(need + bs * rng.randint(0, 2))
        p["kv_lens"] = kv
    if "scale_value" not in p:
        p["scale_value"] = _pick(rng, (1.0 / math.sqrt(p["d_qk"]), 1.0 / math.sqrt(p["d_qk"]), 0.01))
    return p


# ---- inputs ----------------------------------------------------------------------------------
def _tensor(rng, shape, dtype, dist, cheap, positive=False):
    """A random tensor; past CHEAP_LIMIT elements in a negative case, a broadcast view of one value."""
    big = cheap and math.prod(shape) > CHEAP_LIMIT
    x = fill(rng, (1,) * len(shape) if big else shape, dtype, dist)
    if positive:
        x = (np.abs(x) + 1).astype(x.dtype)
    return np.broadcast_to(x, shape) if big else x


def build_inputs(p, rng: np.random.Generator) -> dict:
    broken = [c.name for c in SPEC.broken(p) if c.name != "topk_in_range"]
    cheap = bool(broken)
    dt, dist = p["dtype"], p["dist"]
    q_lens, kv_lens = _lens(p, "q_lens"), _lens(p, "kv_lens")
    t1, t2 = sum(q_lens), sum(kv_lens)
    n1, n2, bs, count = p["n1"], p["n2"], p["select_block_size"], p["select_block_count"]
    q = _tensor(rng, (t1, n1, p["d_qk"]), dt, dist, cheap)
    k = _tensor(rng, (t2, n2, p["d_qk"]), dt, dist, cheap)
    v = _tensor(rng, (t2, p["value_heads"], p["d_v"]), dt, dist, cheap)
    grad = _tensor(rng, (t1, p["out_heads"], p["out_dim"]), dt, dist, cheap)
    cu_q, cu_kv = np.cumsum(q_lens, dtype=np.int64), np.cumsum(kv_lens, dtype=np.int64)
    if cheap:
        nblk = max(1, min(kv_lens, default=1) // max(bs, 1))
        topk_shape = (t1, n2, p["topk_width"])
        if math.prod(topk_shape) > CHEAP_LIMIT:
            topk = np.broadcast_to(np.zeros((1, 1, 1), np.int32), topk_shape)
        else:
            topk = rng.integers(0, nblk, size=topk_shape).astype(np.int32)
        out = _tensor(rng, (t1, p["out_heads"], p["out_dim"]), dt, dist, cheap)
        mx = _tensor(rng, (t1, n1, p["stats_width"]), "float32", dist, cheap)
        sm = _tensor(rng, (t1, n1, p["stats_width"]), "float32", dist, cheap, positive=True)
    else:
        topk = make_topk(rng, p["topk_mode"], q_lens, kv_lens, n2, count, bs)
        o64, m64, s64 = forward64(q, k, v, topk, cu_q, cu_kv, p["scale_value"], bs, p["sparse_mode"])
        out = cast(o64, dt)
        mx = np.repeat(m64.astype(np.float32)[..., None], STATS_WIDTH, axis=-1)   # 8 identical copies
        sm = np.repeat(s64.astype(np.float32)[..., None], STATS_WIDTH, axis=-1)
        if p["fault"] == "topk_out_of_range" and topk.size:
            topk[0, 0, 0] = kv_lens[0] // bs                     # one past the batch's last block
    mask = None
    if p["has_mask"]:
        s1max, s2max = max(q_lens, default=1), max(kv_lens, default=1)
        mask = np.broadcast_to(np.zeros((1, 1), np.uint8), (s1max, s2max))
    return {
        "grad": grad, "query": q, "key": k, "value": v, "attention_out": out,
        "softmax_max": mx, "softmax_sum": sm, "topk_indices": topk,
        "scale_value": float(p["scale_value"]), "head_num": int(p["head_num"]),
        "select_block_size": int(bs), "select_block_count": int(count),
        "atten_mask": mask, "actual_seq_qlen": [int(x) for x in cu_q], "actual_seq_kvlen": [int(x) for x in cu_kv],
    }


def output_dtypes(p) -> dict:
    return {"dq": p["dtype"], "dk": p["dtype"], "dv": p["dtype"]}


_DEFAULTS = (("layout", "TND"), ("has_mask", False), ("fault", "none"))


def label(p) -> str:
    q_lens, kv_lens = list(p["q_lens"]), list(p["kv_lens"])
    text = (f"{p['dtype']}_sm{p['sparse_mode']}_{p.get('topk_mode', '')}_b{len(q_lens)}_t{sum(q_lens)}x{sum(kv_lens)}"
            f"_n{p['n1']}-{p['n2']}_d{p['d_qk']}-{p['d_v']}_bs{p['select_block_size']}_c{p['select_block_count']}")
    extra = [f"{k}{p[k]}" for k, d in _DEFAULTS if p.get(k, d) != d]
    for k, base in (("head_num", "n1"), ("value_heads", "n2"), ("out_heads", "n1"), ("out_dim", "d_v"),
                    ("topk_width", "select_block_count")):
        if p.get(k, p[base]) != p[base]:
            extra.append(f"{k}{p[k]}")
    if p.get("stats_width", STATS_WIDTH) != STATS_WIDTH:
        extra.append(f"stats_width{p['stats_width']}")
    return "_".join([text] + extra)


# ---- comparison ------------------------------------------------------------------------------
# Judging the torch baseline itself (it is the reduction rule's baseline, so its ratio is 1 by
# construction): xformers' backward (atol, rtol) per dtype, precision.md section 3. compare scales
# rtol by max|golden|. The atol matters where the golden is exactly 0 by cancellation (one unmasked
# key: attention_out equals that value row, so dP - Dr = 0) and float32 noise is all that is left.
BASELINE_CAP = {"float16": (0.2, 2e-2), "bfloat16": (0.9, 0.1)}
K_GRAD = 3.0  # FlashAttention backward rule: max err <= 3x the same-precision baseline's (precision.md 3, 6)


def cancellation_noise(inputs) -> float:
    """Float32 noise left where a gradient is zero by cancellation (dP = Dr when one key is visible).

    dS = P * (dP - Dr): dP and Dr are float32 dot products over Dv terms of size max|dY| max|V|,
    their difference keeps only rounding noise, a random walk of 2^-24 * sqrt(Dv) * max|dY| max|V|;
    dQ = scale * dS @ K (and dK = scale * dS^T @ Q) sum L such terms of size max|K| (max|Q|):
    another sqrt(L). Measured on the smoke tier: a reordered float32 sum gives up to 7.6e-5 on an
    all-zero golden where this bound is 2.7e-3 (bench/verdict_calibration.py, legit variants).
    """
    dy, v, q, k = (np.asarray(inputs[n]) for n in ("grad", "value", "query", "key"))
    if not (dy.size and v.size and q.size and k.size):
        return 0.0
    dv = v.shape[-1]
    length = int(inputs["select_block_size"]) * int(inputs["select_block_count"])
    fan = max(length, q.shape[0] * q.shape[1])
    ds_noise = 2.0**-24 * math.sqrt(dv) * _max_abs(dy) * _max_abs(v)
    return float(ds_noise * abs(float(inputs["scale_value"])) * max(_max_abs(k), _max_abs(q)) * math.sqrt(fan))


# The bit pattern of +inf in each 16-bit float: with the sign bit cleared, larger patterns are NaN
_INF_BITS = {"float16": 0x7C00, "bfloat16": 0x7F80}


def _max_abs(x: np.ndarray) -> float:
    """max|x|, NaN if x holds one. 16-bit floats: on the bit patterns, whose magnitudes order as the
    values do once the sign bit is cleared (an integer max; a float32 copy of the smoke tier's
    inputs cost 0.7 ms per case). Other dtypes through float32, exact for them."""
    x = np.asarray(x)
    inf = _INF_BITS.get(name_of(x))
    if inf is None:
        return float(np.abs(np.asarray(x, np.float32)).max())
    m = max_magnitude_bits(x)
    return math.nan if m > inf else float(np.array(m, np.uint16).view(x.dtype))


def _of_last_inputs(fn):
    """fn(inputs), kept for the last inputs dict: regions() asks once per output and per backend for
    the same case (6 times), and dk and dv have the same selected rows. The entry holds the dict
    itself, so its id cannot be reused while it is cached."""
    last: list = [None, None]

    def cached(inputs):
        if last[0] is not inputs:
            last[:] = [inputs, fn(inputs)]
        return last[1]

    return cached


_noise_of = _of_last_inputs(cancellation_noise)
_selected_of = _of_last_inputs(
    lambda inputs: selected_rows_mask(np.asarray(inputs["topk_indices"]), inputs["actual_seq_qlen"],
                                      inputs["actual_seq_kvlen"], np.shape(inputs["key"])[0],
                                      int(inputs["select_block_size"])))


def _rule(dtype: str, inputs=None) -> OutputRule:
    noise = _noise_of(inputs) if inputs is not None else None
    return OutputRule("reduction", k=K_GRAD, abs_cap=BASELINE_CAP.get(dtype, BASELINE_CAP["float16"]), grade="L0",
                      small_atol=noise or None,
                      small_why="gradients zero by cancellation keep float32 noise (see cancellation_noise)",
                      grade_why="a backward op: msprobe's default grade L0 (precision.md section 1); gradients "
                                "sum over every selected key, FlashAttention allows backward 3x",
                      why="FlashAttention backward 3x baseline; baseline cap: xformers backward rtol (precision.md 3)")


UNSELECTED = OutputRule("exact", why="rows no top-k selects get no gradient: exactly zero (ops.md 3, Backward)")


def regions(p, inputs, output: str):
    rule = _rule(p["dtype"], inputs)
    if output == "dq":
        return [Region("dq", None, rule)]
    sel = _selected_of(inputs)
    out = [Region(f"{output}[selected]", sel, rule)]
    if not sel.all():
        out.append(Region(f"{output}[unselected]", ~sel, UNSELECTED))
    return out


def cost(p) -> tuple[float, float]:
    """Bytes moved (inputs once, outputs once) and FLOPs of the five matmuls per selected key."""
    t1, t2 = sum(p["q_lens"]), sum(p["kv_lens"])
    n1, n2, dqk, dv = p["n1"], p["n2"], p["d_qk"], p["d_v"]
    length = p["select_block_size"] * p["select_block_count"]
    elems = 2 * (t1 * n1 * dqk + t2 * n2 * (dqk + dv)) + 2 * t1 * n1 * dv   # q,k,v + dq,dk,dv; o, dY
    nbytes = 2 * elems + 2 * 4 * t1 * n1 * STATS_WIDTH + 4 * t1 * n2 * p["select_block_count"]
    return float(nbytes), 2.0 * t1 * n1 * length * (3 * dqk + 2 * dv)


SPEC = OpSpec(
    name="nsa_selected_attention_grad",
    seed=SEED,
    summary="NSA selected attention backward: dq/dk/dv over top-k selected KV blocks (TND, GQA, sparse 0/2)",
    outputs=("dq", "dk", "dv"),
    rules={k: _rule("float16") for k in ("dq", "dk", "dv")},
    axes=AXES,
    constraints=CONSTRAINTS,
    complete=complete,
    build_inputs=build_inputs,
    output_dtypes=output_dtypes,
    label=label,
    regions=regions,
    cost=cost,
    named=NAMED,
    # smoke keeps the pairwise rows (every feasible pair of axis values once): at the smoke budget
    # the 22 rows add about 1.5 s on the torch backend
    tiers={"smoke": TierPlan(sample=2), "nightly": TierPlan(sample=12), "full": TierPlan(sample=24, hypothesis=25)},
    infer_call=infer_call,
)

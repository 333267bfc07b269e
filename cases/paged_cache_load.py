"""ATB PagedCacheLoadOperation (torch: torch_npu.atb.npu_paged_cache_load).

Gathers the tokens of each sequence out of a paged K/V cache into contiguous key/value tensors.
Seed 003_5c277c3930bec26e.txt; semantics in shared/reference/ops.md section 4. The outputs are
copies, so every backend must match the golden bitwise.

Case parameters: layout (ND: kvCacheCfg=1, NZ: kvCacheCfg=0), k_dtype, v_dtype, batch, num_heads,
head_size_k, head_size_v, block_size, num_blocks, max_blocks_per_seq (block table second dim),
max_context (largest context length), cumsum, has_seq_starts, index_dtype, fault (a data-level
fault injected into the inputs of negative cases), dist (value distribution).
"""
from __future__ import annotations

import math
import random

import numpy as np

from harness.dtypes import itemsize, nz_c0
from harness.constraint_kinds import int32_indices, no_fault
from harness.feasible import Chooser
from harness.inputs import fill
from harness.spec import Constraint, OpSpec, OutputRule, Source, edge

from ._capture_paged_cache_load import infer as infer_call
from ._official_paged_cache_load import NAMED

SEED = "003_5c277c3930bec26e.txt"
OPS = "ops.md#4"
DTYPES = ("float16", "bfloat16", "int8")
NZ_MAX_TOKEN_BYTES = 147456  # ops.md #4 "N*D*32 <= 147456": the tiling bound on one token's bytes



def _hidden_bytes_ok(p) -> bool:
    return all(p["num_heads"] * p[d] * itemsize(p[t], 4) % 32 == 0
               for d, t in (("head_size_k", "k_dtype"), ("head_size_v", "v_dtype")))


def _check_block_ids(p, inputs):
    bt = np.asarray(inputs["block_table"])
    if bt.size and (bt.min() < 0 or bt.max() >= p["num_blocks"]):
        return f"block_table holds ids outside [0, {p['num_blocks']})"
    return None


def _lens_and_starts(p, inputs):
    cl = np.asarray(inputs["context_lens"], dtype=np.int64)
    if p["cumsum"]:
        return np.diff(cl), cl[:-1]
    return cl, np.concatenate([[0], np.cumsum(cl)[:-1]])


def _check_context_lens_length(p, inputs):
    want = p["batch"] + 1 if p["cumsum"] else p["batch"]
    got = np.asarray(inputs["context_lens"]).shape
    return None if got == (want,) else f"context_lens has shape {got}, expected ({want},) (cumsum={p['cumsum']})"


def _check_context_fits(p, inputs):
    if _check_context_lens_length(p, inputs):
        return None  # reported by its own constraint
    lens, _ = _lens_and_starts(p, inputs)
    bs, mb = p["block_size"], p["max_blocks_per_seq"]
    offs = np.zeros_like(lens)
    if inputs.get("seq_starts") is not None:
        offs = np.asarray(inputs["seq_starts"], dtype=np.int64) // bs
    need = offs + (lens + bs - 1) // bs
    if (need > mb).any() or (lens < 0).any():
        b = int(np.argmax(need > mb))
        return f"batch {b} needs {int(need[b])} block-table entries, the table has {mb}"
    return None


C = Constraint
CONSTRAINTS = (
    C("cache_dtype", Source(SEED, "keyCache/valueCache 数据类型 float16/bf16/int8"),
      ("k_dtype", "v_dtype"), lambda p: p["k_dtype"] in DTYPES and p["v_dtype"] in DTYPES,
      edges=[edge(k_dtype=d, v_dtype=d) for d in DTYPES],
      violations=[dict(k_dtype="float32", v_dtype="float32", layout="ND")]),
    C("kv_dtype_pairing", Source(SEED, "keyCache/valueCache float16/bf16/int8; "
                                 "ops.md#4: NZ allows int8 K with fp16/bf16 V, ND kernel uses K's element size for V"),
      ("layout", "k_dtype", "v_dtype"),
      lambda p: p["k_dtype"] == p["v_dtype"] or (p["layout"] == "NZ" and p["k_dtype"] == "int8"
                                                  and p["v_dtype"] in ("float16", "bfloat16")),
      edges=[edge(layout="NZ", k_dtype="int8", v_dtype="float16"),
             edge(layout="NZ", k_dtype="int8", v_dtype="bfloat16")],
      violations=[dict(layout="ND", k_dtype="int8", v_dtype="float16"),
                  dict(layout="NZ", k_dtype="float16", v_dtype="int8")]),
    C("hidden_32byte_aligned", Source(SEED, "int8时 elenum_aligned=32,其他情况为16; ops.md#4: N*D*sizeof(T) % 32 == 0"),
      ("num_heads", "head_size_k", "head_size_v", "k_dtype", "v_dtype"), _hidden_bytes_ok,
      edges=[edge(layout="ND", k_dtype="float16", v_dtype="float16", num_heads=1, head_size_k=16, head_size_v=16),
             edge(layout="ND", k_dtype="int8", v_dtype="int8", num_heads=1, head_size_k=32, head_size_v=32),
             edge(layout="NZ", k_dtype="int8", v_dtype="bfloat16", num_heads=1, head_size_k=32, head_size_v=16),
             edge(layout="ND", k_dtype="bfloat16", v_dtype="bfloat16", num_heads=3, head_size_k=144, head_size_v=16)],
      violations=[dict(layout="ND", k_dtype="float16", v_dtype="float16", num_heads=1, head_size_k=8, head_size_v=16),
                  dict(layout="NZ", k_dtype="int8", v_dtype="int8", num_heads=1, head_size_k=32, head_size_v=16)]),
    C("nz_block_size_multiple_of_16", Source(OPS, "NZ constraints: bs % 16 == 0"),
      ("layout", "block_size"), lambda p: p["layout"] != "NZ" or p["block_size"] % 16 == 0,
      edges=[edge(layout="NZ", block_size=16), edge(layout="ND", block_size=8)],
      violations=[dict(layout="NZ", block_size=8)]),
    C("nz_no_cumsum", Source(SEED, "isSeqLensCumsumType ... 只支持ND格式"),
      ("layout", "cumsum"), lambda p: not (p["layout"] == "NZ" and p["cumsum"]),
      edges=[edge(layout="ND", cumsum=True), edge(layout="NZ", cumsum=False)],
      violations=[dict(layout="NZ", cumsum=True, has_seq_starts=False)]),
    C("nz_no_seq_starts", Source(SEED, "seqStarts 可选输入 ... 只支持ND格式"),
      ("layout", "has_seq_starts"), lambda p: not (p["layout"] == "NZ" and p["has_seq_starts"]),
      edges=[edge(layout="ND", has_seq_starts=True, cumsum=True), edge(layout="ND", has_seq_starts=True, cumsum=False)],
      violations=[dict(layout="NZ", has_seq_starts=True, cumsum=False)]),
    C("nz_token_bytes_limit", Source(OPS, "NZ constraints: N*D*32 <= 147456 (max test shape [290,4608,128,32])"),
      ("layout", "num_heads", "head_size_k", "head_size_v", "k_dtype", "v_dtype"),
      lambda p: p["layout"] != "NZ" or max(p["num_heads"] * p["head_size_k"] * itemsize(p["k_dtype"], 4),
                                           p["num_heads"] * p["head_size_v"] * itemsize(p["v_dtype"], 4))
      <= NZ_MAX_TOKEN_BYTES,
      edges=[edge("nightly", layout="NZ", k_dtype="int8", v_dtype="int8", num_heads=32, head_size_k=4608,
                  head_size_v=32, block_size=16, batch=1, max_context=16)],
      violations=[dict(layout="NZ", k_dtype="int8", v_dtype="int8", num_heads=32, head_size_k=4640, head_size_v=32,
                       block_size=16, batch=1, max_context=16)]),
    int32_indices(Source(SEED, "blockTables/contextLens/seqStarts 数据类型 int32"),
                  ("block_table", "context_lens", "seq_starts")),
    C("context_lens_length", Source(SEED, "contextLens [batch]or[batch+1] (batch+1 in cumsum mode)"),
      ("fault",), no_fault("context_lens_length"),
      edges=[edge(layout="ND", cumsum=True, batch=1), edge(cumsum=False, batch=1)],
      violations=[dict(fault="context_lens_length", layout="ND")], check_inputs=_check_context_lens_length),
    C("block_ids_in_range", Source(OPS, "golden skips negative block ids, the kernel has no check: ids in [0, num_blocks)"),
      ("fault",), no_fault("block_id_out_of_range"),
      edges=[edge(num_blocks=1, batch=1, max_context=16, block_size=16)],
      violations=[dict(fault="block_id_out_of_range")], check_inputs=_check_block_ids),
    C("context_within_block_table", Source(SEED, "blockTables [len(contextLens), (max(contextLens) - 1) // block_size + 1]"),
      ("fault",), no_fault("context_exceeds_table"),
      edges=[edge(layout="ND", has_seq_starts=True, cumsum=False, block_size=16, max_context=33)],
      violations=[dict(fault="context_exceeds_table")], check_inputs=_check_context_fits),
)

AXES = {
    "layout": ("ND", "NZ"),
    "k_dtype": DTYPES,
    "v_dtype": DTYPES,
    "cumsum": (False, True),
    "has_seq_starts": (False, True),
    "block_size": (16, 32, 128),
    "num_heads": (1, 2, 16),
    "head_size_k": (32, 64, 576),
    "head_size_v": (32, 128),
    "dist": ("uniform", "normal", "tiny", "outliers"),
}


pick = Chooser(CONSTRAINTS)


def complete(p: dict, rng: random.Random, tier: str) -> dict:
    """Fill missing params consistently with the constraints; given params are kept as they are."""
    small = tier == "smoke"
    # each free value drawn among those the constraints allow (kv_dtype_pairing, nz_no_cumsum, ...)
    pick(p, "layout", ("ND", "NZ"), rng)
    pick(p, "k_dtype", DTYPES, rng)
    pick(p, "v_dtype", DTYPES, rng)
    pick(p, "cumsum", (False, True), rng)
    pick(p, "has_seq_starts", (False, True), rng)
    pick(p, "num_heads", [1, 2, 4] if small else [1, 8, 16], rng)
    pick(p, "head_size_k", [32, 64, 128] if small else [64, 128, 192, 576], rng)
    pick(p, "head_size_v", [32, 64] if small else [64, 128], rng)
    pick(p, "block_size", [16, 32] if small else [16, 64, 128], rng)
    p.setdefault("batch", rng.choice([1, 2, 3] if small else [4, 16, 32]))
    p.setdefault("max_context", rng.randint(1, 2 * p["block_size"]) if small else rng.randint(1, 512))
    bs = max(p["block_size"], 1)
    extra = 2 if p["has_seq_starts"] else 0  # seq_starts may skip up to 2 blocks of the table row
    p.setdefault("max_blocks_per_seq", math.ceil(p["max_context"] / bs) + extra)
    p.setdefault("num_blocks", max(1, min(p["batch"] * p["max_blocks_per_seq"], 64 if small else 512)))
    p.setdefault("index_dtype", "int32")
    p.setdefault("fault", "none")
    p.setdefault("dist", "uniform")
    return p


def build_inputs(p, rng: np.random.Generator) -> dict:
    B, bs, nb, mb = p["batch"], p["block_size"], p["num_blocks"], p["max_blocks_per_seq"]
    N, Dk, Dv = p["num_heads"], p["head_size_k"], p["head_size_v"]
    idx = np.dtype(p["index_dtype"]) if p["index_dtype"] in ("int32", "int64") else np.int32
    kc = fill(rng, (nb, bs, N, Dk), p["k_dtype"], p["dist"])
    vc = fill(rng, (nb, bs, N, Dv), p["v_dtype"], p["dist"])
    lens = rng.integers(1, p["max_context"] + 1, size=B)
    lens[rng.integers(0, B)] = p["max_context"]           # the longest sequence is always present
    if p.get("context_lens") is not None:                 # a named case's documented lengths
        lens = np.asarray(p["context_lens"], dtype=np.int64)
    starts = None
    if p["has_seq_starts"]:
        spare = mb - (lens + bs - 1) // bs                   # table entries not needed by the context
        # not block-aligned on purpose: the kernel floors seq_starts to a block (ops.md #4)
        starts = (rng.integers(0, spare + 1) * bs + rng.integers(0, bs, size=B)).astype(np.int64)
    if p["fault"] == "context_exceeds_table":
        lens[0] = mb * bs + 1
    bt = (rng.permutation(nb)[: B * mb] if nb >= B * mb else rng.integers(0, nb, size=B * mb)).reshape(B, mb)
    if p["fault"] == "block_id_out_of_range":
        bt[rng.integers(0, B), 0] = nb
    cl = np.concatenate([[0], np.cumsum(lens)]) if p["cumsum"] else lens
    if p["fault"] == "context_lens_length":
        cl = np.concatenate([cl, [1]])
    if p["layout"] == "NZ":
        kc, vc = to_nz(kc, p["k_dtype"]), to_nz(vc, p["v_dtype"])
    return {
        "key_cache": kc, "value_cache": vc,
        "block_table": bt.astype(idx), "context_lens": np.asarray(cl).astype(idx),
        "seq_starts": None if starts is None else starts.astype(idx),
        "cumsum": bool(p["cumsum"]),
        "kv_cache_cfg": 0 if p["layout"] == "NZ" else 1,   # ATB K_CACHE_V_CACHE_NZ=0, _ND=1
    }


def to_nz(nd: np.ndarray, dtype: str) -> np.ndarray:
    """[nb, bs, N, D] -> FRACTAL_NZ [nb, N*D/C0, bs, C0] (ops.md #4 NZ layout mapping)."""
    nb, bs = nd.shape[:2]
    c0 = nz_c0(dtype)
    h = int(np.prod(nd.shape[2:]))
    if h % c0:  # an alignment-violating negative case: keep ND-shaped data, the refs reject it
        return nd
    return np.ascontiguousarray(nd.reshape(nb, bs, h // c0, c0).transpose(0, 2, 1, 3))


def output_dtypes(p) -> dict:
    return {"key": p["k_dtype"], "value": p["v_dtype"]}


def label(p) -> str:
    dt = p["k_dtype"] if p["k_dtype"] == p["v_dtype"] else f"{p['k_dtype']}-{p['v_dtype']}"
    flags = ("_cumsum" if p["cumsum"] else "") + ("_starts" if p["has_seq_starts"] else "")
    fault = "" if p["fault"] == "none" else f"_{p['fault']}"
    return (f"{p['layout']}_{dt}_b{p['batch']}_bs{p['block_size']}_n{p['num_heads']}"
            f"_dk{p['head_size_k']}_dv{p['head_size_v']}_ctx{p['max_context']}{flags}{fault}")


def cost(p) -> tuple[float, float]:
    """Bytes moved (tokens read from the cache and written out) and FLOPs (none: a copy)."""
    tokens = p["batch"] * p["max_context"]  # upper bound: the longest context per sequence
    per_token = p["num_heads"] * (p["head_size_k"] * itemsize(p["k_dtype"]) + p["head_size_v"] * itemsize(p["v_dtype"]))
    return 2.0 * tokens * per_token, 0.0


SPEC = OpSpec(
    name="paged_cache_load",
    seed=SEED,
    summary="ATB PagedCacheLoad: gather paged K/V cache blocks into contiguous key/value (ND and NZ caches)",
    outputs=("key", "value"),
    rules={"key": OutputRule("exact", why="a copy: bitwise (CANN non-compute ops)"),
           "value": OutputRule("exact", why="a copy: bitwise (CANN non-compute ops)")},
    axes=AXES,
    constraints=CONSTRAINTS,
    complete=complete,
    build_inputs=build_inputs,
    output_dtypes=output_dtypes,
    label=label,
    dtype_key="k_dtype",
    cost=cost,
    named=NAMED,
    optional_params=("context_lens",),
    infer_call=infer_call,
)

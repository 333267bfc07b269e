"""Per-operator argument mapping: the case's inputs dict -> the positional C arguments.

Each `Binding` names the C entry point (an aclnn two-phase op, or the ATB C API) and a `build`
function that creates the device tensors through the `Call` it is given and returns the phase-1
arguments in prototype order (the prototypes themselves are declared in `_lib.py`). Outputs are
registered with `call.output(...)` (fresh, zero-filled) or `call.inout(...)` (an input updated in
place); the backend copies them back after synchronizing. `decline(params)` returns the documented
reason a case cannot run through this backend, or None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from harness.dtypes import name_of

from . import _codes


@dataclass(frozen=True)
class Binding:
    op: str
    symbol: str                       # aclnnXxx (phase 2 name) or AtbPagedCacheLoad
    family: str                       # "aclnn" | "atb": which status table names the codes
    build: Callable[[Any, dict, dict], list]
    #: (params, soc name) -> the documented reason this case cannot run on this device, or None
    decline: Callable[[dict, str], str | None] = lambda params, soc: None
    #: (params, inputs, outputs) -> outputs: reshape what the C API returns into the case's outputs
    post: Callable[[dict, dict, dict], dict] | None = None


#: backend mode (option `aclnn:pcl_zero_seq_starts`): ND PagedCacheLoad without seq_starts is called with zeros and
#: hasSeqStarts=true; the backend's name carries the mode, so every result row records it
PCL_ZERO_SEQ_STARTS = "pcl_zero_seq_starts"


def _or_empty(values):
    return [] if values is None else values


# ---- PagedCacheLoad (ATB C API; seed 003, ops.md section 4) --------------------------------------------------
def _pcl_tokens(inputs) -> int:
    """Rows of key/value: the sequences' token count (golden: max over batches of start + length)."""
    cl = np.asarray(inputs["context_lens"], dtype=np.int64)
    if inputs["cumsum"]:
        ends = cl[1:] if cl.size > 1 else np.zeros(1, np.int64)
    else:
        ends = np.cumsum(np.clip(cl, 0, None))
    return int(max(ends.max(initial=0), 0))


def _paged_cache_load(call, params, inputs) -> list:
    nz = int(inputs["kv_cache_cfg"]) == _codes.ATB_KV_CACHE_NZ
    fmt = _codes.ACL_FORMAT_FRACTAL_NZ if nz else _codes.ACL_FORMAT_ND
    kc, vc = inputs["key_cache"], inputs["value_cache"]
    total = _pcl_tokens(inputs)
    if nz:   # NZ caches [nb, H/C0, bs, C0] -> outputs [tokens, H] (seed: key [sum(contextLens), N*Dk])
        k_shape, v_shape = (total, kc.shape[1] * kc.shape[3]), (total, vc.shape[1] * vc.shape[3])
    else:    # ND caches [nb, bs, N, D] -> outputs [tokens, N, D]
        k_shape, v_shape = (total,) + kc.shape[2:], (total,) + vc.shape[2:]
    seq_starts = inputs.get("seq_starts")
    if seq_starts is None and not nz and call.backend.has_mode(PCL_ZERO_SEQ_STARTS):
        # opt-in workaround: ATB refuses ND without seqStarts (status 5, shared/reference/real_interfaces.md section 2);
        # zeros with hasSeqStarts=true select the same tokens (the offset is seq_starts // block_size)
        seq_starts = np.zeros(np.asarray(inputs["block_table"]).shape[0], dtype=np.int32)
    return [
        call.tensor(kc, fmt), call.tensor(vc, fmt),
        call.tensor(inputs["block_table"]), call.tensor(inputs["context_lens"]),
        call.output("key", k_shape, name_of(kc)), call.output("value", v_shape, name_of(vc)),
        None if seq_starts is None else call.tensor(seq_starts),
        int(inputs["kv_cache_cfg"]), bool(inputs["cumsum"]), seq_starts is not None,
    ]


# ---- NsaCompressWithCache (seed 000, ops.md section 1) ---------------------------------------------------------
def _nsa_compress_with_cache(call, params, inputs) -> list:
    """torch_npu.npu_nsa_compress_infer.cache -> aclnnNsaCompressWithCache(input, weight, slot_mapping,
    actSeqLen, block_table, "TND", cbs, stride, actSeqLenType, page_block_size, cache) (acl_abi.md section 4)."""
    return [
        call.tensor(inputs["input"]), call.tensor(inputs["weight"]), call.tensor(inputs["slot_mapping"]),
        # an absent actual_seq_len reaches the kernel as an empty aclIntArray, never NULL, as torch_npu passes it
        # (op-plugin op_plugin_functions.yaml:7330, 7406-7407)
        call.int_array(_or_empty(inputs.get("actual_seq_len"))), call.optional(inputs.get("block_table")), "TND",
        int(inputs["compress_block_size"]), int(inputs["compress_stride"]),
        # torch_npu always passes 1; the case parameter carries the documented value (negatives pass 0)
        int(params.get("act_seq_len_type", 1)), int(inputs["page_block_size"]),
        call.inout("cache", inputs["cache"]),
    ]


# ---- DequantRopeQuantKvcache (seed 001, ops.md section 2) ----------------------------------------------------
QUANT_MODES = {0: "static", 1: "dynamic"}   # torch_npu's int quant_mode -> the aclnn string (acl_abi.md section 4)


def _dequant_rope_quant_kvcache(call, params, inputs) -> list:
    x, cos = inputs["x"], inputs["cos"]
    lead, d = x.shape[:-1], inputs["k_cache"].shape[-1]
    nq, nkv = int(inputs["size_splits"][0]) // max(d, 1), inputs["k_cache"].shape[-2]
    out_dtype = name_of(cos)   # seed: q/k/v outputs in the cos/sin dtype
    qm = inputs["quant_mode"]
    # kv_output=False: torch_npu passes kOut/vOut as {0}-shaped tensors (op-plugin
    # DequantRopeQuantKVCacheKernelNpuOpApi.cpp:78-81); the outputs then are those empty tensors
    kv_shape = lead + (nkv, d) if inputs["kv_output"] else (0,)
    return [
        call.tensor(x), call.tensor(cos), call.tensor(inputs["sin"]),
        call.inout("k_cache", inputs["k_cache"]), call.inout("v_cache", inputs["v_cache"]),
        call.tensor(inputs["indices"]), call.tensor(inputs["scale_k"]), call.tensor(inputs["scale_v"]),
        call.optional(inputs.get("offset_k")), call.optional(inputs.get("offset_v")),
        call.optional(inputs.get("weight_scale")), call.optional(inputs.get("activation_scale")),
        call.optional(inputs.get("bias")), call.int_array(inputs["size_splits"]),
        QUANT_MODES.get(qm, str(qm)), inputs["input_layout"], bool(inputs["kv_output"]), inputs["cache_mode"],
        call.output("q_out", lead + (nq, d), out_dtype),
        call.output("k_out", kv_shape, out_dtype), call.output("v_out", kv_shape, out_dtype),
    ]


# ---- NsaSelectedAttentionGrad (seed 002, ops.md section 3) ---------------------------------------------------
def _nsa_selected_attention_grad(call, params, inputs) -> list:
    """npu_nsa_select_attention_grad -> aclnnNsaSelectedAttentionGrad(q, k, v, attention_out, grad, softmax_max,
    softmax_sum, topk, qlen, kvlen, mask, scale, block size, block count, head_num, layout, sparse_mode, dq, dk, dv)
    (acl_abi.md section 4). The layout and sparse mode come from the case (torch_npu hard-codes TND and 2)."""
    q, k, v = inputs["query"], inputs["key"], inputs["value"]
    dt = name_of(q)
    return [
        call.tensor(q), call.tensor(k), call.tensor(v), call.tensor(inputs["attention_out"]),
        call.tensor(inputs["grad"]), call.tensor(inputs["softmax_max"]), call.tensor(inputs["softmax_sum"]),
        call.tensor(inputs["topk_indices"]),
        call.int_array(inputs.get("actual_seq_qlen")), call.int_array(inputs.get("actual_seq_kvlen")),
        call.optional(inputs.get("atten_mask")), float(inputs["scale_value"]),
        int(inputs["select_block_size"]), int(inputs["select_block_count"]), int(inputs["head_num"]),
        params.get("layout", "TND"), int(inputs.get("sparse_mode", params.get("sparse_mode", 2))),
        call.output("dq", q.shape, dt), call.output("dk", k.shape, dt), call.output("dv", v.shape, dt),
    ]


# ---- IncreFlashAttention (seed 004, ops.md section 5) ---------------------------------------------------------
def _incre_flash_attention(call, params, inputs) -> list:
    """npu_incre_flash_attention -> aclnnIncreFlashAttentionV4 (acl_abi.md section 4): key and value travel
    as one-tensor aclTensorLists, padding_mask is not an aclnn argument (torch_npu drops it too)."""
    q = inputs["query"]
    out_dtype = "int8" if inputs.get("quant_scale2") is not None else name_of(q)
    if out_dtype == "int8" and name_of(q) == "int8" and inputs.get("quant_scale2") is None:
        # torch_npu allocates float16 for an int8 query (op-plugin FlashAttentionKernelNpuOpApi.cpp:1690-1691)
        out_dtype = "float16"
    opt = call.optional
    return [
        call.tensor(q), call.tensor_list([inputs["key"]]), call.tensor_list([inputs["value"]]),
        opt(inputs.get("pse_shift")), opt(inputs.get("atten_mask")), call.int_array(inputs.get("actual_seq_lengths")),
        opt(inputs.get("dequant_scale1")), opt(inputs.get("quant_scale1")), opt(inputs.get("dequant_scale2")),
        opt(inputs.get("quant_scale2")), opt(inputs.get("quant_offset2")), opt(inputs.get("antiquant_scale")),
        opt(inputs.get("antiquant_offset")), opt(inputs.get("block_table")), opt(inputs.get("kv_padding_size")),
        int(inputs["num_heads"]), float(inputs["scale_value"]), inputs["input_layout"],
        int(inputs["num_key_value_heads"]), int(inputs["block_size"] or 0), int(inputs["inner_precise"]),
        call.output("attention_out", q.shape, out_dtype),
    ]


def soc_product(soc: str) -> str:
    """The product family of a SoC name (aclrtGetSocName) as the IFA case parameter `product` names it."""
    s = soc.replace(" ", "").lower()
    if s.startswith("ascend310p"):
        return "310P"
    if s.startswith(("ascend910b", "ascend910_93")):
        return "A2"   # Atlas A2 / A3 training: the seed's "Atlas A2" limits
    return soc


def _ifa_decline(params, soc: str) -> str | None:
    want, have = params.get("product", "A2"), soc_product(soc)
    if want != have:
        return (f"the case targets product {want} (its documented limits and support); this device is {soc or '?'} "
                f"({have}): run it on a {want} device")
    return None


BINDINGS: dict[str, Binding] = {
    "paged_cache_load": Binding("paged_cache_load", "AtbPagedCacheLoad", "atb", _paged_cache_load),
    "nsa_compress_with_cache": Binding("nsa_compress_with_cache", "aclnnNsaCompressWithCache", "aclnn",
                                       _nsa_compress_with_cache),
    "dequant_rope_quant_kvcache": Binding("dequant_rope_quant_kvcache", "aclnnDequantRopeQuantKvcache", "aclnn",
                                          _dequant_rope_quant_kvcache),
    "nsa_selected_attention_grad": Binding("nsa_selected_attention_grad", "aclnnNsaSelectedAttentionGrad", "aclnn",
                                           _nsa_selected_attention_grad),
    "incre_flash_attention": Binding("incre_flash_attention", "aclnnIncreFlashAttentionV4", "aclnn",
                                     _incre_flash_attention, decline=_ifa_decline),
}

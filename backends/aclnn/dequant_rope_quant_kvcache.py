"""aclnnDequantRopeQuantKvcache (seed 001, ops.md section 2; prototype: acl_abi.md section 4), the kernel behind
torch_npu.npu_dequant_rope_quant_kvcache and npu_rope_quant_kvcache."""
from __future__ import annotations

from harness.dtypes import name_of

from ._binding import Binding, flag, inout, int_array, optional, output, string, tensor

QUANT_MODES = {0: "static", 1: "dynamic"}   # torch_npu's int quant_mode -> the aclnn string (acl_abi.md section 4)


def _quant_mode(params, inputs) -> str:
    qm = inputs["quant_mode"]
    return QUANT_MODES.get(qm, str(qm))


def _out_dtype(params, inputs) -> str:
    return name_of(inputs["cos"])   # seed: q/k/v outputs in the cos/sin dtype


def _heads(inputs) -> tuple[int, int, int]:
    """(query heads, kv heads, head dim): size_splits[0] holds the query part of x's last dim."""
    d = inputs["k_cache"].shape[-1]
    return int(inputs["size_splits"][0]) // max(d, 1), inputs["k_cache"].shape[-2], d


def _q_shape(params, inputs) -> tuple:
    nq, _, d = _heads(inputs)
    return inputs["x"].shape[:-1] + (nq, d)


def _kv_shape(params, inputs) -> tuple:
    # kv_output=False: torch_npu passes kOut/vOut as {0}-shaped tensors (op-plugin
    # DequantRopeQuantKVCacheKernelNpuOpApi.cpp:78-81); the outputs then are those empty tensors
    if not inputs["kv_output"]:
        return (0,)
    _, nkv, d = _heads(inputs)
    return inputs["x"].shape[:-1] + (nkv, d)


BINDING = Binding("dequant_rope_quant_kvcache", "aclnnDequantRopeQuantKvcache", "aclnn", (
    tensor("x", "x"),
    tensor("cos", "cos"),
    tensor("sin", "sin"),
    inout("kCacheRef", "k_cache"),
    inout("vCacheRef", "v_cache"),
    tensor("indices", "indices"),
    tensor("scaleK", "scale_k"),
    tensor("scaleV", "scale_v"),
    optional("offsetKOptional", "offset_k"),
    optional("offsetVOptional", "offset_v"),
    optional("weightScaleOptional", "weight_scale"),
    optional("activationScaleOptional", "activation_scale"),
    optional("biasOptional", "bias"),
    int_array("sizeSplits", "size_splits"),
    string("quantModeOptional", _quant_mode),
    string("layoutOptional", "input_layout"),
    flag("kvOutput", "kv_output"),
    string("cacheModeOptional", "cache_mode"),
    output("qOut", "q_out", _q_shape, _out_dtype),
    output("kOut", "k_out", _kv_shape, _out_dtype),
    output("vOut", "v_out", _kv_shape, _out_dtype),
))

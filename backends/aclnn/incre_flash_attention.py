"""aclnnIncreFlashAttentionV4 (seed 004, ops.md section 5; prototype: acl_abi.md section 4), the kernel behind
torch_npu.npu_incre_flash_attention: key and value travel as one-tensor aclTensorLists, padding_mask is not an
aclnn argument (torch_npu drops it too)."""
from __future__ import annotations

from harness.dtypes import name_of

from ._binding import Binding, f64, i64, int_array, optional, output, string, tensor, tensor_list


def soc_product(soc: str) -> str:
    """The product family of a SoC name (aclrtGetSocName) as the IFA case parameter `product` names it."""
    s = soc.replace(" ", "").lower()
    if s.startswith("ascend310p"):
        return "310P"
    if s.startswith(("ascend910b", "ascend910_93")):
        return "A2"   # Atlas A2 / A3 training: the seed's "Atlas A2" limits
    return soc


def _decline(params, soc: str) -> str | None:
    want, have = params.get("product", "A2"), soc_product(soc)
    if want != have:
        return (f"the case targets product {want} (its documented limits and support); this device is {soc or '?'} "
                f"({have}): run it on a {want} device")
    return None


def _out_dtype(params, inputs) -> str:
    q = inputs["query"]
    out = "int8" if inputs.get("quant_scale2") is not None else name_of(q)
    if out == "int8" and name_of(q) == "int8" and inputs.get("quant_scale2") is None:
        # torch_npu allocates float16 for an int8 query (op-plugin FlashAttentionKernelNpuOpApi.cpp:1690-1691)
        out = "float16"
    return out


BINDING = Binding("incre_flash_attention", "aclnnIncreFlashAttentionV4", "aclnn", (
    tensor("query", "query"),
    tensor_list("key", "key"),
    tensor_list("value", "value"),
    optional("pseShift", "pse_shift"),
    optional("attenMask", "atten_mask"),
    int_array("actualSeqLengths", "actual_seq_lengths"),
    optional("dequantScale1", "dequant_scale1"),
    optional("quantScale1", "quant_scale1"),
    optional("dequantScale2", "dequant_scale2"),
    optional("quantScale2", "quant_scale2"),
    optional("quantOffset2", "quant_offset2"),
    optional("antiquantScale", "antiquant_scale"),
    optional("antiquantOffset", "antiquant_offset"),
    optional("blocktable", "block_table"),
    optional("kvPaddingSize", "kv_padding_size"),
    i64("numHeads", "num_heads"),
    f64("scaleValue", "scale_value"),
    string("inputLayout", "input_layout"),
    i64("numKeyValueHeads", "num_key_value_heads"),
    i64("blockSize", lambda params, inputs: inputs["block_size"] or 0),
    i64("innerPrecise", "inner_precise"),
    output("attentionOut", "attention_out", lambda params, inputs: inputs["query"].shape, _out_dtype),
), decline=_decline)

"""aclnnNsaSelectedAttentionGrad (seed 002, ops.md section 3; prototype: acl_abi.md section 4), the kernel behind
torch_npu.npu_nsa_select_attention_grad. The layout and sparse mode come from the case (torch_npu hard-codes TND
and 2)."""
from __future__ import annotations

from harness.dtypes import name_of

from ._binding import Binding, f64, i64, int_array, optional, output, param, string, tensor


def _like(key: str):
    """(shape, dtype) sources of a gradient output: the shape of its input, the query's dtype."""
    return (lambda params, inputs: inputs[key].shape), (lambda params, inputs: name_of(inputs["query"]))


def _sparse_mode(params, inputs) -> int:
    return inputs.get("sparse_mode", params.get("sparse_mode", 2))


BINDING = Binding("nsa_selected_attention_grad", "aclnnNsaSelectedAttentionGrad", "aclnn", (
    tensor("query", "query"),
    tensor("key", "key"),
    tensor("value", "value"),
    tensor("attentionOut", "attention_out"),
    tensor("attentionOutGrad", "grad"),
    tensor("softmaxMax", "softmax_max"),
    tensor("softmaxSum", "softmax_sum"),
    tensor("topkIndices", "topk_indices"),
    int_array("actualSeqQLenOptional", "actual_seq_qlen"),
    int_array("actualSeqKvLenOptional", "actual_seq_kvlen"),
    optional("attenMaskOptional", "atten_mask"),
    f64("scaleValue", "scale_value"),
    i64("selectedBlockSize", "select_block_size"),
    i64("selectedBlockCount", "select_block_count"),
    i64("headNum", "head_num"),
    string("inputLayout", param("layout", "TND")),
    i64("sparseMode", _sparse_mode),
    output("dqOut", "dq", *_like("query")),
    output("dkOut", "dk", *_like("key")),
    output("dvOut", "dv", *_like("value")),
))

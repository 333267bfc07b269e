"""nsa_selected_attention_grad through torch_npu.npu_nsa_select_attention_grad (layout TND, sparse_mode 2 fixed
inside the wrapper)."""
from __future__ import annotations

from ._adapters import Call, OpAdapter, split_call


def _sparse_mode(params, inputs):
    if "sparse_mode" in inputs:
        return inputs["sparse_mode"]
    return params.get("sparse_mode", 2)


def _decline_sparse_mode(params, inputs) -> str | None:
    layout = params.get("layout", "TND")
    if layout != "TND":
        return (f"layout={layout}: the torch_npu wrapper hard-codes inputLayout 'TND' (ops.md section 3 'torch API'), "
                f"so the case cannot be expressed through torch_npu")
    mode = _sparse_mode(params, inputs)
    if mode != 2:
        return (f"sparse_mode={mode}: the torch_npu wrapper hard-codes sparse_mode=2 (causal) for "
                f"aclnnNsaSelectedAttentionGrad (ops.md section 3 'torch API'), so this case would be compared "
                f"against another function")
    return None


def _bind(ad: OpAdapter, api, tensors: dict, params) -> Call:
    tensors = dict(tensors)
    tensors.pop("sparse_mode", None)  # not an argument: fixed to 2 inside the wrapper (declined otherwise)
    return split_call(ad.resolve(api), ad.api, ad.positional, tensors)


ADAPTER = OpAdapter("nsa_selected_attention_grad", "npu_nsa_select_attention_grad",
                    positional=("grad", "query", "key", "value", "attention_out", "softmax_max", "softmax_sum",
                                "topk_indices", "scale_value", "head_num", "select_block_size", "select_block_count"),
                    returns=("dq", "dk", "dv"), host_int_lists=("actual_seq_qlen", "actual_seq_kvlen"),
                    case_decline=_decline_sparse_mode, bind_fn=_bind)

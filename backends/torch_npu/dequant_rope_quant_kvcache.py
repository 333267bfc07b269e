"""dequant_rope_quant_kvcache through torch_npu.npu_dequant_rope_quant_kvcache (int32 x) or
npu_rope_quant_kvcache (any other x): the same aclnn kernel behind two wrappers."""
from __future__ import annotations

from ._adapters import Call, OpAdapter, split_call

ROPE_ONLY_ABSENT = ("weight_scale", "activation_scale", "bias")  # npu_rope_quant_kvcache has no such args


def _x_is_int32(tensors) -> bool:
    x = tensors["x"]
    return str(getattr(x, "dtype", "")).endswith("int32")


def _decline_rope_variant(params, inputs) -> str | None:
    import numpy as np

    qm = inputs.get("quant_mode", 0)
    if qm not in (0, 1):
        return (f"quant_mode={qm}: the torch_npu wrapper turns any quant_mode other than 0/1 into \"static\" "
                f"(op-plugin DequantRopeQuantKVCacheKernelNpuOpApi.cpp), so the case cannot be expressed through "
                f"torch_npu")

    x = inputs.get("x")
    if x is None or np.asarray(x).dtype == np.int32:
        return None
    given = [k for k in ROPE_ONLY_ABSENT if inputs.get(k) is not None]
    if given:
        return (f"x is {np.asarray(x).dtype}, so the call is npu_rope_quant_kvcache, which has no {', '.join(given)} "
                f"argument (OP yaml; npu_dequant_rope_quant_kvcache requires int32 x)")
    return None


def _bind(ad: OpAdapter, api, tensors: dict, params) -> Call:
    # npu_dequant_rope_quant_kvcache requires int32 x (the dequant step); the same aclnn kernel is
    # reached for float x through npu_rope_quant_kvcache, whose schema lacks the dequant arguments
    # (acl_abi.md section 4; ops.md section 2 "torch API").
    if _x_is_int32(tensors):
        return split_call(ad.resolve(api), ad.api, ad.positional, tensors)
    tensors = dict(tensors)
    for k in ROPE_ONLY_ABSENT:
        if tensors.pop(k, None) is not None:  # case_decline keeps these cases away; never drop data silently
            raise ValueError(f"{k} given with non-int32 x: npu_rope_quant_kvcache cannot take it")
    return split_call(ad.resolve(api, "npu_rope_quant_kvcache"), "npu_rope_quant_kvcache", ad.positional, tensors)


ADAPTER = OpAdapter("dequant_rope_quant_kvcache", "npu_dequant_rope_quant_kvcache",
                    positional=("x", "cos", "sin", "k_cache", "v_cache", "indices", "scale_k", "scale_v",
                                "size_splits"),
                    returns=("q_out", "k_out", "v_out", "k_cache", "v_cache"), host_int_lists=("size_splits",),
                    in_place=("k_cache", "v_cache"), case_decline=_decline_rope_variant, bind_fn=_bind,
                    also_calls=("npu_rope_quant_kvcache",))

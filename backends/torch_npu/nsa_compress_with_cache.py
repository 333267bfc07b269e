"""nsa_compress_with_cache through torch_npu.npu_nsa_compress_infer (the in-place `.cache` overload)."""
from __future__ import annotations

from ._adapters import OpAdapter


def _decline_act_seq_len_type(params, inputs) -> str | None:
    t = params.get("act_seq_len_type", 1)
    if t != 1:
        return (f"act_seq_len_type={t}: torch_npu hard-codes actSeqLenType=1 for aclnnNsaCompressWithCache (op-plugin "
                f"op_plugin_functions.yaml:7330), so the case cannot be expressed through torch_npu")
    return None


ADAPTER = OpAdapter("nsa_compress_with_cache", "npu_nsa_compress_infer",
                    positional=("input", "weight", "slot_mapping", "compress_block_size", "compress_stride",
                                "page_block_size"),
                    returns=("cache",), host_int_lists=("actual_seq_len",), in_place=("cache",),
                    case_decline=_decline_act_seq_len_type)

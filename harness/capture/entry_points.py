"""The torch_npu entry points opdiff captures: attribute path -> opdiff operator and argument order.

Argument names and order are those of the schemas in the torch-npu wheel
(csrc/aten/npu_native_functions_by_codegen.yaml; torch_npu.atb from op_plugin/atb/_atb_api_docs.py),
which tests/test_capture.py checks against the wheel through tests/npu_schemas.py. A call's positional
arguments are named by this order, its keywords by their own names, so a record holds every argument
under its schema name (the key the op's inputs dict uses).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntryPoint:
    api: str                         # attribute path under the torch_npu module
    op: str                          # opdiff operator (cases/<op>.py)
    arguments: tuple[str, ...]       # schema order
    outputs_only: tuple[str, ...] = ()   # preallocated outputs (an .out overload): not inputs of the op
    in_place: tuple[str, ...] = ()       # arguments the op writes: recorded before the call


ENTRY_POINTS: dict[str, EntryPoint] = {e.api: e for e in (
    EntryPoint("npu_incre_flash_attention", "incre_flash_attention",
               ("query", "key", "value", "padding_mask", "atten_mask", "pse_shift", "actual_seq_lengths",
                "antiquant_scale", "antiquant_offset", "block_table", "dequant_scale1", "quant_scale1",
                "dequant_scale2", "quant_scale2", "quant_offset2", "kv_padding_size", "num_heads", "scale_value",
                "input_layout", "num_key_value_heads", "block_size", "inner_precise")),
    EntryPoint("atb.npu_paged_cache_load", "paged_cache_load",
               ("key_cache", "value_cache", "block_table", "context_lens", "seq_starts", "cumsum", "key", "value"),
               outputs_only=("key", "value")),
    EntryPoint("npu_nsa_compress_infer", "nsa_compress_with_cache",
               ("input", "weight", "slot_mapping", "compress_block_size", "compress_stride", "page_block_size",
                "block_table", "actual_seq_len", "cache"), in_place=("cache",)),
    EntryPoint("npu_dequant_rope_quant_kvcache", "dequant_rope_quant_kvcache",
               ("x", "cos", "sin", "k_cache", "v_cache", "indices", "scale_k", "scale_v", "size_splits", "offset_k",
                "offset_v", "weight_scale", "activation_scale", "bias", "quant_mode", "input_layout", "kv_output",
                "cache_mode"), in_place=("k_cache", "v_cache")),
    # the same aclnn kernel for a float x (backends/torch_npu/dequant_rope_quant_kvcache.py): the same operator
    EntryPoint("npu_rope_quant_kvcache", "dequant_rope_quant_kvcache",
               ("x", "cos", "sin", "k_cache", "v_cache", "indices", "scale_k", "scale_v", "size_splits", "offset_k",
                "offset_v", "quant_mode", "input_layout", "kv_output", "cache_mode"), in_place=("k_cache", "v_cache")),
    EntryPoint("npu_nsa_select_attention_grad", "nsa_selected_attention_grad",
               ("grad", "query", "key", "value", "attention_out", "softmax_max", "softmax_sum", "topk_indices",
                "scale_value", "head_num", "select_block_size", "select_block_count", "atten_mask", "actual_seq_qlen",
                "actual_seq_kvlen")),
)}

OPS = tuple(dict.fromkeys(e.op for e in ENTRY_POINTS.values()))


def for_ops(ops) -> list[EntryPoint]:
    """The entry points of the given operators (None: all); an unknown name is a UsageError."""
    if ops is None:
        return list(ENTRY_POINTS.values())
    from ..errors import UnknownNameError

    wanted = list(ops)
    for name in wanted:
        if name not in OPS and name not in ENTRY_POINTS:
            raise UnknownNameError("capturable op", name, list(OPS))
    return [e for e in ENTRY_POINTS.values() if e.op in wanted or e.api in wanted]


def bind(entry: EntryPoint, args: tuple, kwargs: dict) -> dict:
    """Name every argument of a call: positional ones by schema order, keywords by their names."""
    if len(args) > len(entry.arguments):
        raise TypeError(f"{entry.api}: {len(args)} positional arguments, the schema has {len(entry.arguments)}")
    bound = dict(zip(entry.arguments, args))
    for k, v in kwargs.items():
        if k in bound:
            raise TypeError(f"{entry.api}: argument {k!r} given twice")
        bound[k] = v
    return bound

"""Per-operator call adapters of the torch_npu backend.

An operator's inputs dict is keyed by the argument names of its torch_npu schema, so an adapter
mostly says how to call: which torch_npu function, which arguments go positionally (the rest are
passed by keyword, exactly as a user writes the call), which arguments are host int lists rather
than device tensors, which outputs are caches updated in place, and the documented quirks
(shared/reference/ops.md, acl_abi.md section 4) that change the call or make a case unrunnable.

Keys of an inputs dict that are not torch_npu arguments are consumed here, explicitly, by the
adapter's `bind`; anything else reaches the call unchanged, so a stray key makes the call fail
against the real schema (tests/test_torch_npu_schema.py proves it does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

ACL_FORMAT_FRACTAL_NZ = 29  # aclFormat FRACTAL_NZ (acl_abi.md section 3)
#: backend mode (option `torch_npu:pcl_zero_seq_starts`): ND paged_cache_load without seq_starts is called with
#: zeros, so torch_npu passes hasSeqStarts=true; the backend's name carries the mode into every result row
PCL_ZERO_SEQ_STARTS = "pcl_zero_seq_starts"
#: backend mode (option `torch_npu:pcl_functional`): NZ paged_cache_load through the functional form, as a user
#: writes it, to see whether the installed torch_npu still allocates the wrong output shape (known issue)
PCL_FUNCTIONAL = "pcl_functional"
MODES = frozenset({PCL_ZERO_SEQ_STARTS, PCL_FUNCTIONAL})


@dataclass
class Call:
    """A bound call: `fn(*args, **kwargs)`; `tensors` are the device inputs (in-place caches read back)."""

    fn: Callable
    name: str
    args: tuple
    kwargs: dict
    tensors: dict


@dataclass(frozen=True)
class OpAdapter:
    op: str                                   # opdiff operator (cases/<op>.py)
    api: str                                  # torch_npu attribute path
    positional: tuple[str, ...]               # leading schema arguments, passed positionally in this order
    returns: tuple[str, ...]                  # names of the returned tensors, in order
    host_int_lists: tuple[str, ...] = ()      # int[] / SymInt[] arguments: host lists, never device tensors
    in_place: tuple[str, ...] = ()            # inputs the op updates in place (compared after the call)
    device_decline: Callable[[str], str | None] | None = None   # device name -> reason
    case_decline: Callable[[Mapping, Mapping], str | None] | None = None  # (params, inputs) -> reason
    bind_fn: Callable[["OpAdapter", Any, dict, Mapping], Call] | None = None
    workaround: Callable[[frozenset, Mapping], Mapping] | None = None  # (modes, inputs) -> inputs
    doc: str = field(default="", compare=False)

    def resolve(self, api, path: str | None = None):
        obj = api
        for part in (path or self.api).split("."):
            obj = getattr(obj, part)
        return obj

    def bind(self, api, tensors: dict, params: Mapping) -> Call:
        if self.bind_fn is not None:
            return self.bind_fn(self, api, tensors, params)
        return split_call(self.resolve(api), self.api, self.positional, tensors)


def split_call(fn, name: str, positional: tuple[str, ...], tensors: dict) -> Call:
    """Positional arguments in order, the rest by keyword; a missing positional one is left to the
    schema to report (the call then fails with the dispatcher's own message)."""
    args, kwargs = [], {}
    for i, key in enumerate(positional):
        if key not in tensors:
            kwargs.update({k: tensors[k] for k in positional[i:] if k in tensors})
            break
        args.append(tensors[key])
    kwargs.update({k: v for k, v in tensors.items() if k not in positional})
    return Call(fn, name, tuple(args), kwargs, tensors)


# ---- paged_cache_load: torch_npu.atb.npu_paged_cache_load --------------------------------------------------
def _bind_paged_cache_load(ad: OpAdapter, api, tensors: dict, params) -> Call:
    # kv_cache_cfg is no torch_npu argument: the wrapper derives it from key_cache's storage format
    # (FRACTAL_NZ -> 0, else 1; ops.md section 4 "kvCacheCfg"). Our NZ inputs already hold the
    # [nb, H/C0, bs, C0] NZ memory, and since the last dim equals C0, npu_format_cast(x, 29) only tags
    # the format without moving memory (ops.md section 4 "NZ layout mapping"). Done here, in
    # prepare, so the cast is never timed.
    tensors = dict(tensors)
    functional = tensors.pop("_pcl_functional", False)
    cfg = tensors.pop("kv_cache_cfg")
    if cfg == 0:
        cast = ad.resolve(api, "npu_format_cast")
        tensors["key_cache"] = cast(tensors["key_cache"], ACL_FORMAT_FRACTAL_NZ)
        tensors["value_cache"] = cast(tensors["value_cache"], ACL_FORMAT_FRACTAL_NZ)
        # The functional form allocates key/value as [T, key_cache.size(2), key_cache.size(3)] (op-plugin
        # PagedCacheLoadAtb.cpp:69-70), [T, bs, C0] for an NZ cache, which ATB refuses: it wants [T, H]
        # (paged_cache_load_operation.cpp:128-134, 213-220). Passing key=/value= preallocated as [T, N*D]
        # selects the .out overload (PagedCacheLoadAtb.cpp:95-103), the form that reaches ATB correctly.
        # mode pcl_functional keeps the functional form; without context_lens the schema reports it missing
        if not functional and tensors.get("context_lens") is not None:
            tensors["key"], tensors["value"] = (_nz_output(tensors[c], tensors["context_lens"],
                                                           bool(tensors.get("cumsum", False)))
                                                for c in ("key_cache", "value_cache"))
    elif cfg != 1:
        raise ValueError(f"kv_cache_cfg={cfg!r}: the torch API can express only ND (1) and NZ (0) caches")
    # seq_starts=None goes through as None, so torch_npu passes hasSeqStarts=false; ATB then refuses ND (status 5,
    # shared/reference/real_interfaces.md section 2, known issue in cases/known_issues/torch_npu.toml). Zeros
    # would hide that; they are the opt-in mode pcl_zero_seq_starts.
    return split_call(ad.resolve(api), ad.api, ad.positional, tensors)


def _nz_output(cache, context_lens, cumsum: bool):
    """[T, H1*C0] like the cache, T counted as the functional wrapper counts it (the last prefix sum, or the sum)."""
    import torch

    lens = context_lens.cpu()
    tokens = int(lens[-1]) if cumsum and lens.numel() else int(lens.sum())
    return torch.empty((tokens, cache.shape[1] * cache.shape[3]), dtype=cache.dtype, device=cache.device)


def _pcl_modes(modes, inputs):
    """Mode pcl_zero_seq_starts: an ND case without seq_starts gets zeros (same tokens, hasSeqStarts=true).
    Mode pcl_functional: a marker `_pcl_functional` that the bind consumes (never reaches the call)."""
    if PCL_FUNCTIONAL in modes:
        inputs = {**inputs, "_pcl_functional": True}
    if PCL_ZERO_SEQ_STARTS not in modes or inputs.get("seq_starts") is not None or inputs["kv_cache_cfg"] != 1:
        return inputs
    import numpy as np

    return {**inputs, "seq_starts": np.zeros(np.asarray(inputs["block_table"]).shape[0], dtype=np.int32)}


# ---- nsa_compress_with_cache: npu_nsa_compress_infer ---------------------------------------------------------
def _decline_act_seq_len_type(params, inputs) -> str | None:
    t = params.get("act_seq_len_type", 1)
    if t != 1:
        return (f"act_seq_len_type={t}: torch_npu hard-codes actSeqLenType=1 for aclnnNsaCompressWithCache (op-plugin "
                f"op_plugin_functions.yaml:7330), so the case cannot be expressed through torch_npu")
    return None


# ---- dequant_rope_quant_kvcache: npu_dequant_rope_quant_kvcache / npu_rope_quant_kvcache ---------------------
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


def _bind_dequant_rope(ad: OpAdapter, api, tensors: dict, params) -> Call:
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


# ---- nsa_selected_attention_grad: npu_nsa_select_attention_grad --------------------------------------------
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


def _bind_select_grad(ad: OpAdapter, api, tensors: dict, params) -> Call:
    tensors = dict(tensors)
    tensors.pop("sparse_mode", None)  # not an argument: fixed to 2 inside the wrapper (declined otherwise)
    return split_call(ad.resolve(api), ad.api, ad.positional, tensors)


# ---- incre_flash_attention: npu_incre_flash_attention -----------------------------------------------------
def _decline_ascend950(device_name: str) -> str | None:
    if device_name.replace(" ", "").lower().startswith("ascend950"):
        return ("the npu_incre_flash_attention wrapper raises on Ascend950 (ops.md section 5 'Signature'; OP "
                "FlashAttentionKernelNpuOpApi.cpp)")
    return None


ADAPTERS: dict[str, OpAdapter] = {a.op: a for a in (
    OpAdapter("paged_cache_load", "atb.npu_paged_cache_load",
              positional=("key_cache", "value_cache", "block_table", "context_lens"),
              returns=("key", "value"), bind_fn=_bind_paged_cache_load, workaround=_pcl_modes),
    OpAdapter("nsa_compress_with_cache", "npu_nsa_compress_infer",
              positional=("input", "weight", "slot_mapping", "compress_block_size", "compress_stride",
                          "page_block_size"),
              returns=("cache",), host_int_lists=("actual_seq_len",), in_place=("cache",),
              case_decline=_decline_act_seq_len_type),
    OpAdapter("dequant_rope_quant_kvcache", "npu_dequant_rope_quant_kvcache",
              positional=("x", "cos", "sin", "k_cache", "v_cache", "indices", "scale_k", "scale_v", "size_splits"),
              returns=("q_out", "k_out", "v_out", "k_cache", "v_cache"), host_int_lists=("size_splits",),
              in_place=("k_cache", "v_cache"), case_decline=_decline_rope_variant, bind_fn=_bind_dequant_rope),
    OpAdapter("nsa_selected_attention_grad", "npu_nsa_select_attention_grad",
              positional=("grad", "query", "key", "value", "attention_out", "softmax_max", "softmax_sum",
                          "topk_indices", "scale_value", "head_num", "select_block_size", "select_block_count"),
              returns=("dq", "dk", "dv"), host_int_lists=("actual_seq_qlen", "actual_seq_kvlen"),
              case_decline=_decline_sparse_mode, bind_fn=_bind_select_grad),
    OpAdapter("incre_flash_attention", "npu_incre_flash_attention",
              positional=("query", "key", "value"),
              returns=("attention_out",), host_int_lists=("actual_seq_lengths",),
              device_decline=_decline_ascend950),
)}

# The torch_npu functions the backend may call (the schema test defines exactly these).
API_FUNCTIONS = ("npu_incre_flash_attention", "npu_nsa_compress_infer", "npu_dequant_rope_quant_kvcache",
                 "npu_rope_quant_kvcache", "npu_nsa_select_attention_grad", "npu_format_cast",
                 "atb.npu_paged_cache_load")

"""paged_cache_load through torch_npu.atb.npu_paged_cache_load (NZ caches tagged with npu_format_cast(x, 29))."""
from __future__ import annotations

from ._adapters import ACL_FORMAT_FRACTAL_NZ, PCL_FUNCTIONAL, PCL_ZERO_SEQ_STARTS, Call, OpAdapter, split_call


def _bind(ad: OpAdapter, api, tensors: dict, params) -> Call:
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


def _modes(modes, inputs):
    """Mode pcl_zero_seq_starts: an ND case without seq_starts gets zeros (same tokens, hasSeqStarts=true).
    Mode pcl_functional: a marker `_pcl_functional` that the bind consumes (never reaches the call)."""
    if PCL_FUNCTIONAL in modes:
        inputs = {**inputs, "_pcl_functional": True}
    if PCL_ZERO_SEQ_STARTS not in modes or inputs.get("seq_starts") is not None or inputs["kv_cache_cfg"] != 1:
        return inputs
    import numpy as np

    return {**inputs, "seq_starts": np.zeros(np.asarray(inputs["block_table"]).shape[0], dtype=np.int32)}


ADAPTER = OpAdapter("paged_cache_load", "atb.npu_paged_cache_load",
                    positional=("key_cache", "value_cache", "block_table", "context_lens"),
                    returns=("key", "value"), bind_fn=_bind, workaround=_modes, also_calls=("npu_format_cast",))

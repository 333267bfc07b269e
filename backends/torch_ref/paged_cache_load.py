"""torch reference of PagedCacheLoad: index_select of the cache rows named by the block table."""
from __future__ import annotations

from backends.golden.paged_cache_load import token_sources


def reference(params, inputs, device) -> dict:
    import torch

    host = {k: (v.cpu().numpy() if torch.is_tensor(v) and k in ("block_table", "context_lens", "seq_starts") else v)
            for k, v in inputs.items()}
    total, rows, blk, slot = token_sources(params, host)
    nz = inputs["kv_cache_cfg"] == 0
    rows_t = torch.as_tensor(rows, device=device)
    flat_src = (torch.as_tensor(blk, device=device) * params["block_size"] + torch.as_tensor(slot, device=device))
    out = {}
    for name in ("key", "value"):
        cache = inputs[f"{name}_cache"]
        if nz:  # [nb, H/C0, bs, C0] -> [nb, bs, H]
            nb, h1, bs, c0 = cache.shape
            cache = cache.permute(0, 2, 1, 3).reshape(nb, bs, h1 * c0)
        flat = cache.reshape((-1,) + tuple(cache.shape[2:]))
        res = torch.zeros((total,) + tuple(cache.shape[2:]), dtype=cache.dtype, device=device)
        res[rows_t] = flat.index_select(0, flat_src)
        out[name] = res
    return out

"""torch reference of PagedCacheLoad: index_select of the cache rows named by the block table.

The row -> (block, slot) mapping is written here, batch by batch, and not taken from the numpy
golden (backends/numpy/paged_cache_load.py computes it vectorized): two references sharing it could
share its bug.
"""
from __future__ import annotations


def _sources(params, inputs, device):
    """(output rows, flat source rows block * bs + slot, total rows): ops.md#4, per batch b its
    context tokens j in [0, len_b) come from block_table[b, seq_starts[b] // bs + j // bs], slot
    j % bs, and land at output row start_b + j (cumsum: start_b = context_lens[b], absolute)."""
    import torch

    bs = int(params["block_size"])
    cl = [int(v) for v in inputs["context_lens"].tolist()]
    if inputs["cumsum"]:
        spans = [(cl[b], cl[b + 1] - cl[b]) for b in range(len(cl) - 1)]
    else:
        starts = [sum(cl[:b]) for b in range(len(cl))]
        spans = list(zip(starts, cl))
    seq = inputs.get("seq_starts")
    first = [int(v) // bs for v in seq.tolist()] if seq is not None else [0] * len(spans)
    table = inputs["block_table"].to(torch.int64)
    rows, src = [], []
    for b, (start, n) in enumerate(spans):
        j = torch.arange(n, device=device)
        rows.append(start + j)
        src.append(table[b, first[b] + j // bs] * bs + j % bs)
    total = max((s + n for s, n in spans), default=0)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return (torch.cat(rows) if rows else empty), (torch.cat(src) if src else empty), total


def reference(params, inputs, device) -> dict:
    import torch

    rows_t, flat_src, total = _sources(params, inputs, device)
    nz = inputs["kv_cache_cfg"] == 0
    out = {}
    for name in ("key", "value"):
        cache = inputs[f"{name}_cache"]
        if nz:  # [nb, H/C0, bs, C0] -> [nb, bs, H]
            nb, h1, bs, c0 = cache.shape
            cache = cache.permute(0, 2, 1, 3).reshape(nb, bs, h1 * c0)
        flat = cache.reshape((-1,) + tuple(cache.shape[2:]))
        res = torch.zeros((total,) + tuple(cache.shape[2:]), dtype=cache.dtype, device=device)
        res[rows_t] = flat.index_select(0, flat_src.to(flat.device))
        out[name] = res
    return out

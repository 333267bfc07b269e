"""numpy golden of PagedCacheLoad (ops.md section 4): a vectorized gather, exact copies."""
from __future__ import annotations

import numpy as np


def token_sources(params, inputs):
    """Per output row: (block id, slot in block). Vectorized over all tokens of all batches."""
    bs = params["block_size"]
    cl = np.asarray(inputs["context_lens"], dtype=np.int64)
    if inputs["cumsum"]:
        lens, starts = np.diff(cl), cl[:-1]
    else:
        lens, starts = cl, np.concatenate([[0], np.cumsum(cl)[:-1]])
    total = int((starts + lens).max()) if lens.size else 0
    batch = np.repeat(np.arange(lens.size), lens)
    j = np.arange(batch.size) - np.repeat(starts - (cl[0] if inputs["cumsum"] else 0), lens)
    off = np.zeros(lens.size, np.int64)
    if inputs.get("seq_starts") is not None:
        off = np.asarray(inputs["seq_starts"], dtype=np.int64) // bs   # block offset; remainder dropped
    bt = np.asarray(inputs["block_table"], dtype=np.int64)
    blk = bt[batch, off[batch] + j // bs]
    rows = np.repeat(starts, lens) + j
    return total, rows, blk, j % bs


def _nd_view(cache, nz: bool):
    """NZ [nb, H/C0, bs, C0] -> ND rows [nb, bs, H]; ND caches are [nb, bs, N, D]."""
    if not nz:
        return cache
    nb, h1, bs, c0 = cache.shape
    return cache.transpose(0, 2, 1, 3).reshape(nb, bs, h1 * c0)


def golden(params, inputs) -> dict:
    nz = inputs["kv_cache_cfg"] == 0
    total, rows, blk, slot = token_sources(params, inputs)
    out = {}
    for name, cache in (("key", inputs["key_cache"]), ("value", inputs["value_cache"])):
        src = _nd_view(np.asarray(cache), nz)
        res = np.zeros((total,) + src.shape[2:], dtype=src.dtype)
        res[rows] = src[blk, slot]
        out[name] = res
    return out

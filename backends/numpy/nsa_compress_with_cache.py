"""numpy golden of aclnnNsaCompressWithCache (ops.md section 1), float64, vectorized over batches.

Returns the whole cache in float64: rows the op does not write keep the incoming values (exact in
float64, so they round back to the same bits), written rows hold the unrounded weighted sum.
"""
from __future__ import annotations

import numpy as np

from cases.nsa_compress_with_cache import triggered
from harness.half import widen


def windows(inputs, page: int):
    """Triggering batches [T] and their windows' (block id, slot in page), each [T, cbs].

    `page` is input.shape[1], validated equal to page_block_size (ops.md#1 Page addressing)."""
    cbs, stride = inputs["compress_block_size"], inputs["compress_stride"]
    s = np.asarray(inputs["actual_seq_len"], dtype=np.int64)
    tb = np.flatnonzero(triggered(s, cbs, stride))
    pos = s[tb, None] - cbs + np.arange(cbs)       # the last cbs logical tokens of each batch
    bt = np.asarray(inputs["block_table"], dtype=np.int64)
    return tb, bt[tb[:, None], pos // page], pos % page


# Window elements widened at once: 2 MiB of float64, so a chunk is still in cache when its matrix-vector
# products read it. Widening all triggered windows first (19 MiB on rand02, bf16 b16 n64 d256) and then
# multiplying took 2.9 ms; chunks of 2**15, 2**16, 2**17, 2**18 and 2**20 elements took 2.5, 2.1, 1.9, 1.4
# and 1.4 ms (the gather included: 1.8 ms at 2**18), the same bits
WINDOW_CHUNK_ELEMENTS = 1 << 18


def golden(params, inputs) -> dict:
    out = widen(inputs["cache"])               # astype(float64) bit for bit; numpy's float16 loop is 4x slower
    x = np.asarray(inputs["input"])
    tb, blk, off = windows(inputs, x.shape[1])
    if not tb.size:
        return {"cache": out}
    w = np.asarray(inputs["weight"]).astype(np.float64)                      # [cbs, N]
    wt = w.T[:, None, :, None]                                              # [N, 1, cbs, 1]
    slots = np.asarray(inputs["slot_mapping"], dtype=np.int64)[tb]
    cbs, heads, d = blk.shape[1], x.shape[2], x.shape[3]
    h_step = max(1, min(heads, WINDOW_CHUNK_ELEMENTS // (cbs * d)))
    t_step = max(1, WINDOW_CHUNK_ELEMENTS // (cbs * d * h_step))
    for t0 in range(0, tb.size, t_step):
        t = slice(t0, t0 + t_step)
        for h0 in range(0, heads, h_step):
            h = slice(h0, h0 + h_step)
            win = widen(x[blk[t], off[t], h])                              # [t, cbs, h, D]
            # sum_c win[t, c, n, :] * w[c, n]: one batched matrix-vector product per head (BLAS), 2x
            # einsum's loop on the largest nightly case (5.7 -> 2.7 ms for [16, 16, 64, 256])
            out[slots[t], h] = np.matmul(win.transpose(2, 0, 3, 1), wt[h])[..., 0].transpose(1, 0, 2)
    return {"cache": out}

"""Top-k index generation for NSA selected attention (vectorized over queries and KV heads).

Modes:
  nsa     the NSA convention (ops.md section 3, cross-cutting note 2): queries with s1 < count*bs
          take arange(count); later ones take sorted distinct blocks <= s1//bs that include the
          diagonal block s1//bs. Forward and backward agree on it under sparse_mode 2.
  random  distinct blocks of the batch in arbitrary order (sparse_mode 0).
  dup     blocks drawn with replacement, the second entry repeating the first (duplicates must
          accumulate; sparse_mode 0).
"""
from __future__ import annotations

import numpy as np

from ._nsa_select import starts

_ROWS_PER_DRAW = 1 << 21  # random keys drawn per slice: bounds memory for long sequences


def _distinct(rng: np.random.Generator, upper: np.ndarray, count: int) -> np.ndarray:
    """[R, count] distinct integers, row r in [0, upper[r]) (upper[r] >= count), random order."""
    rows = upper.shape[0]
    out = np.empty((rows, count), dtype=np.int64)
    if rows == 0 or count == 0:
        return out
    width = int(upper.max())
    step = max(1, _ROWS_PER_DRAW // max(width, 1))
    cols = np.arange(width)
    for a in range(0, rows, step):
        b = min(rows, a + step)
        keys = rng.random((b - a, width))
        keys[cols[None, :] >= upper[a:b, None]] = np.inf
        part = np.argpartition(keys, count - 1, axis=1)[:, :count] if count < width else \
            np.argsort(keys, axis=1)[:, :count]
        out[a:b] = part
    return out


def make_topk(rng: np.random.Generator, mode: str, q_lens, kv_lens, n2: int, count: int, bs: int) -> np.ndarray:
    """topk_indices [T1, N2, count] int32 for valid parameters (each kv_len >= count*bs)."""
    q_lens = np.asarray(q_lens, dtype=np.int64)
    kv_blocks = np.asarray(kv_lens, dtype=np.int64) // bs
    t1 = int(q_lens.sum())
    b = np.repeat(np.arange(q_lens.size), q_lens)
    s1 = np.arange(t1) - starts(np.cumsum(q_lens))[b]
    nblk = np.repeat(kv_blocks[b], n2)                    # per (t, n2) row
    rows = t1 * n2
    if mode == "random":
        topk = _distinct(rng, nblk, count)
    elif mode == "dup":
        topk = (rng.random((rows, count)) * nblk[:, None]).astype(np.int64)
        if count >= 2:
            topk[:, 1] = topk[:, 0]
    elif mode == "nsa":
        topk = np.broadcast_to(np.arange(count), (rows, count)).copy()
        diag = np.minimum(np.repeat(s1 // bs, n2), nblk - 1)
        late = np.repeat(s1 >= count * bs, n2)
        if late.any() and count > 1:
            d = diag[late]
            topk[late, : count - 1] = _distinct(rng, d, count - 1)
            topk[late, count - 1] = d
            topk[late] = np.sort(topk[late], axis=1)
        elif late.any():
            topk[late, 0] = diag[late]
    else:
        raise ValueError(f"unknown topk mode {mode!r}; known: nsa, random, dup")
    return topk.reshape(t1, n2, count).astype(np.int32)

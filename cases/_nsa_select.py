"""Index math and the float64 forward shared by the NSA selected-attention case builder and golden.

Conventions (shared/reference/ops.md section 3):
- TND layout; actual_seq_qlen / actual_seq_kvlen are cumulative (prefix sums, no leading 0).
- topk_indices [T1, N2, count] holds block indices relative to the batch's first KV row; selected
  position i*bs + j of a query is key row kv_start + topk[i]*bs + j, in topk order.
- Query head h uses KV head h // G (G = N1 / N2); a group shares one top-k.
- sparse_mode 2 masks key position p (relative to the batch) when p > s1 (top-left causal).
"""
from __future__ import annotations

import numpy as np

from harness.half import widen   # astype(float64) bit for bit; numpy's float16 loop is 4x slower

# Elements of one gathered [chunk, N2, L, D] float64 array: bounds memory (64 MiB per array) while
# keeping each batched matmul large enough for BLAS to be efficient.
CHUNK_ELEMENTS = 1 << 23


def starts(cumulative) -> np.ndarray:
    """Batch start offsets [B] from a cumulative length list (no leading zero)."""
    cu = np.asarray(cumulative, dtype=np.int64).reshape(-1)
    return np.concatenate([[0], cu[:-1]]).astype(np.int64)


def query_positions(cu_q, cu_kv, t1: int):
    """Per query token: (s1 = position within its batch, kv0 = first KV row of its batch)."""
    cu_q = np.asarray(cu_q, dtype=np.int64).reshape(-1)
    t = np.arange(t1, dtype=np.int64)
    b = np.searchsorted(cu_q, t, side="right")
    q0, kv0 = starts(cu_q), starts(cu_kv)
    return t - q0[b], kv0[b]


def selected_rel(topk_chunk: np.ndarray, bs: int) -> np.ndarray:
    """[c, N2, count] block ids -> [c, N2, count*bs] key positions relative to the batch start."""
    rel = topk_chunk.astype(np.int64)[..., None] * bs + np.arange(bs, dtype=np.int64)
    return rel.reshape(topk_chunk.shape[0], topk_chunk.shape[1], -1)


def chunks(t1: int, per_query_elements: int):
    """Query ranges [a, b) whose gathered arrays stay near CHUNK_ELEMENTS elements."""
    step = max(1, CHUNK_ELEMENTS // max(1, per_query_elements))
    for a in range(0, t1, step):
        yield a, min(t1, a + step)


def blocks(x: np.ndarray, bs: int) -> np.ndarray:
    """x [T2, N2, D] -> [N2 * T2/bs, bs*D] in x's dtype: row n2 * (T2/bs) + global block id.

    Valid cases have every batch's KV length a multiple of bs, so blocks tile T2 and a batch's
    block i is global block kv0/bs + i. Gathering whole contiguous blocks is far cheaper than
    indexing each selected key row; the gathered blocks are widened after the gather (few blocks of
    many: 8 queries over 131072 keys select 128 of them).
    """
    t2, n2, d = x.shape
    nb = t2 // bs
    xb = np.asarray(x)[: nb * bs].reshape(nb, bs, n2, d).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(xb).reshape(n2 * nb, bs * d)      # no copy where N2 == 1


def block_keys(topk_chunk: np.ndarray, kv0_chunk: np.ndarray, bs: int, nb: int) -> np.ndarray:
    """[c, N2, count] rows of a blocks() array: n2 * nb + kv0/bs + topk."""
    n2 = topk_chunk.shape[1]
    return (kv0_chunk[:, None, None] // bs + topk_chunk.astype(np.int64)) + nb * np.arange(n2)[None, :, None]


def gather(xb: np.ndarray, keys: np.ndarray, d: int) -> np.ndarray:
    """Selected blocks of a blocks() array -> [c, N2, count*bs, D] in top-k order."""
    c, n2, count = keys.shape
    return xb[keys.reshape(-1)].reshape(c, n2, -1, d)


# Dense or gathered (the golden's backward and forward64 both choose per batch). Time per query of
# the golden's two paths, fitted on bf16 T1 = T2 = 4096 causal batches (N2 = 2, bs 64, Dqk/Dv
# 192/128; G = 16 and 4 at count 16, G = 1 at count 8), in units of one dense (key, head) pair:
# dense ~ T2b * G (large matmuls, M = c*G rows); gathered ~ L * (0.4 * G + 37): its matmuls have M = G,
# and it gathers and widens L*(Dqk+Dv) keys per query and scatter-adds as many gradients back, which
# dominate. Break-even T2b/L = 0.4 + 37/G. Dense / gathered time, two runs: G = 16: 0.63-0.71 at
# T2b/L = 2, 1.14-1.47 at 4; G = 4: 0.41-0.42 at 4; G = 1: 0.29-0.33 at 8. On the smoke and nightly
# cases the choice was the faster path, or within 10% of it, in every case that takes over 20 ms.
GATHERED_PER_HEAD, GATHERED_PER_QUERY_KEY = 0.4, 37.0


def dense_is_cheaper(kv_len: int, selected: int, g: int) -> bool:
    """Whether a batch of `kv_len` keys, `selected` = count*bs keys per query and G heads per group runs
    faster dense (see the constants above)."""
    return kv_len * g <= selected * (GATHERED_PER_HEAD * g + GATHERED_PER_QUERY_KEY)


def multiplicity(rel: np.ndarray, keep: np.ndarray, t2b: int) -> np.ndarray:
    """[N2, c, T2b] float64: how many of a query's selected positions `rel` [c, N2, L] (kept where `keep`)
    name each key of its batch. Every selected position is a key of the batch (valid cases: topk < T2b/bs)."""
    c, n2, _ = rel.shape
    row = np.arange(n2)[None, :, None] * c + np.arange(c)[:, None, None]         # [c, N2, 1]: row n2*c + query
    flat = (row * t2b + rel)[keep]
    return np.bincount(flat, minlength=n2 * c * t2b).reshape(n2, c, t2b).astype(np.float64)


def split_batches(cu_q, cu_kv, selected: int, g: int, path: str | None = None):
    """(dense batches [(q0, q1, k0, k1)], the other batches' query tokens [int64]) over the batches that
    have queries: by dense_is_cheaper, or every batch one way where `path` is "dense" or "gathered"."""
    if path not in (None, "dense", "gathered"):
        raise ValueError(f"path must be None, 'dense' or 'gathered', not {path!r}")
    cq, ck = np.asarray(cu_q, dtype=np.int64).reshape(-1), np.asarray(cu_kv, dtype=np.int64).reshape(-1)
    dense, gathered = [], [np.zeros(0, dtype=np.int64)]
    for q0, q1, k0, k1 in zip(starts(cq).tolist(), cq.tolist(), starts(ck).tolist(), ck.tolist()):
        if q1 <= q0:
            continue
        if path == "dense" or (path is None and dense_is_cheaper(k1 - k0, selected, g)):
            dense.append((q0, q1, k0, k1))
        else:
            gathered.append(np.arange(q0, q1))
    return dense, np.concatenate(gathered)


def forward64(q, k, v, topk, cu_q, cu_kv, scale: float, bs: int, sparse_mode: int):
    """float64 forward: (attention_out [T1,N1,Dv], softmax_max [T1,N1], softmax_sum [T1,N1]).

    softmax_max / softmax_sum are the statistics of the scaled (and masked) scores, as the forward
    kernel writes them (ops.md section 3, Forward). Batches go dense or gathered as the golden's
    backward does (dense_is_cheaper): the same sums either way.
    """
    t1, n1, dq = q.shape
    n2, dv = k.shape[1], v.shape[2]
    g = n1 // n2
    length = topk.shape[2] * bs
    s1, kv0 = query_positions(cu_q, cu_kv, t1)
    out = np.zeros((t1, n1, dv))
    mx = np.zeros((t1, n1))
    sm = np.zeros((t1, n1))
    dense, tokens = split_batches(cu_q, cu_kv, length, g)
    for q0, q1, k0, k1 in dense:
        t2b = k1 - k0
        kh, vh = widen(k[k0:k1]).transpose(1, 0, 2), widen(v[k0:k1]).transpose(1, 0, 2)   # [N2, T2b, D]
        for a, b in chunks(q1 - q0, n2 * g * t2b):
            tok, c = np.arange(q0 + a, q0 + b), b - a
            rel = selected_rel(topk[tok], bs)
            keep = ~(rel > s1[tok, None, None]) if sparse_mode == 2 else np.ones(rel.shape, dtype=bool)
            mult = multiplicity(rel, keep, t2b)[:, :, None, :]                      # [N2, c, 1, T2b]
            qg = widen(q[tok]).reshape(c, n2, g, dq).transpose(1, 0, 2, 3).reshape(n2, c * g, dq)
            s = (scale * (qg @ kh.swapaxes(-1, -2))).reshape(n2, c, g, t2b)
            np.copyto(s, -np.inf, where=mult == 0)
            m = s.max(-1, keepdims=True)
            e = np.exp(s - m) * mult                                                 # a duplicate block counts twice
            tot = e.sum(-1, keepdims=True)
            o = ((e / tot).reshape(n2, c * g, t2b) @ vh).reshape(n2, c, g, dv)
            out[tok] = o.transpose(1, 0, 2, 3).reshape(c, n1, dv)
            mx[tok] = m.reshape(n2, c, g).transpose(1, 0, 2).reshape(c, n1)
            sm[tok] = tot.reshape(n2, c, g).transpose(1, 0, 2).reshape(c, n1)
    if not tokens.size:
        return out, mx, sm
    nb = k.shape[0] // bs
    kb, vb = blocks(k, bs), blocks(v, bs)
    for a, b in chunks(tokens.size, n2 * length * max(dq, g)):
        tok, c = tokens[a:b], b - a
        rel = selected_rel(topk[tok], bs)
        keys = block_keys(topk[tok], kv0[tok], bs, nb)
        ks, vs = widen(gather(kb, keys, dq)), widen(gather(vb, keys, dv))
        qg = widen(q[tok]).reshape(c, n2, g, dq)
        s = scale * (qg @ ks.swapaxes(-1, -2))                      # [c, N2, G, L]
        if sparse_mode == 2:
            s = np.where((rel > s1[tok, None, None])[:, :, None, :], -np.inf, s)
        m = s.max(-1, keepdims=True)
        e = np.exp(s - m)
        tot = e.sum(-1, keepdims=True)
        out[tok] = ((e / tot) @ vs).reshape(c, n1, dv)
        mx[tok] = m.reshape(c, n1)
        sm[tok] = tot.reshape(c, n1)
    return out, mx, sm


def selected_rows_mask(topk, cu_q, cu_kv, t2: int, bs: int) -> np.ndarray:
    """[T2, N2] bool: key rows of each KV head that some query's top-k selects."""
    t1, n2, count = topk.shape
    mask = np.zeros((t2, n2), dtype=bool)
    if t1 == 0 or count == 0:
        return mask
    _, kv0 = query_positions(cu_q, cu_kv, t1)
    first = (kv0[:, None, None] + topk.astype(np.int64) * bs).reshape(-1)
    heads = np.broadcast_to(np.arange(n2)[None, :, None], topk.shape).reshape(-1)
    start = heads * t2 + first
    size = t2 * n2 + 1                      # a difference array per head: +1 where a block starts, -1 after it
    if start.size and (start.min() < 0 or start.max() + bs >= size):
        raise IndexError(f"a selected block lies outside the {t2} key rows")
    flat = np.bincount(start, minlength=size) - np.bincount(start + bs, minlength=size)   # 10x np.add.at
    return (np.cumsum(flat[:-1]).reshape(n2, t2) > 0).T

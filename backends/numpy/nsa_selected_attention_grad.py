"""numpy float64 golden of NsaSelectedAttentionGrad (shared/reference/ops.md section 3, Backward).

    S  = scale * Q @ Ksel^T            (masked where p > s1 when sparse_mode == 2)
    P  = exp(S - softmax_max[..., 0]) / softmax_sum[..., 0]     recomputed from the passed stats
    dP = dY @ Vsel^T ;  Dr = rowsum(dY * attention_out)         the passed attention_out
    dS = P * (dP - Dr)
    dQ = scale * dS @ Ksel ;  dKsel = scale * dS^T @ Q ;  dVsel = P^T @ dY
    dK, dV: scatter-add of dKsel, dVsel into the selected rows (duplicates add, unselected rows 0)

Two exact evaluations of the same sums, chosen per batch by how much of its keys a query selects:
- dense (a batch whose KV length is within a few times the L = count*bs keys a query selects, e.g.
  decode, where L covers the batch; dense_is_cheaper decides): scores against every key of the batch, with each
  key weighted by how many times the query selects it (0: unselected or causally masked; 2: a
  duplicate block). By linearity that multiplicity carries the scatter-add, so dQ, dK, dV are plain
  matmuls over the batch's contiguous key rows: no gather of K and V, no segment add.
- gathered (the rest, e.g. 8 queries over 131072 keys): each chunk of queries gathers its selected
  blocks ([c, N2, L, D]), runs batched matmuls with the G heads of a group as the M dimension, and
  adds the per-block gradients into a [N2 * blocks, bs*D] accumulator (duplicates summed).
"""
from __future__ import annotations

import numpy as np

from harness.half import widen

from cases._nsa_select import (block_keys, blocks, chunks, gather, multiplicity, query_positions, selected_rel,
                               split_batches)

def _segment_add(acc: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
    """acc[keys[i]] += values[i] for every i, duplicates summed (np.add.at semantics).

    Rows are split into rounds by their rank among equal keys; within a round keys are distinct,
    so a fancy-index += is exact. The loop runs once per multiplicity level (how many rows of the
    chunk hit the same block), never per token. Measured ~5x faster than np.add.at and
    np.add.reduceat on [rows, bs*D] float64 blocks (numpy 2.4).
    """
    n = keys.size
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    new = np.r_[True, sk[1:] != sk[:-1]]
    rank = np.arange(n) - np.maximum.accumulate(np.where(new, np.arange(n), 0))
    by_rank = np.argsort(rank, kind="stable")
    rows, ranks = order[by_rank], rank[by_rank]
    bounds = np.flatnonzero(np.r_[True, ranks[1:] != ranks[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = rows[a:b]
        acc[keys[idx]] += values[idx]


def causal_mask(rel: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """sparse_mode 2: True where a selected key (natural position `rel` [c, N2, L] within its batch) is
    masked for query position s1 [c]: p > s1, at every s1. The kernel masks only the tail of the
    diagonal block (OT nsa_selected_attention_grad basic_modules/vec_op.h:399-446, CalAttenMsk keeps
    s1 + 1 - topk*bs tokens of it); the op-plugin test masks p > count*bs once s1 >= count*bs."""
    return rel > s1[:, None, None]


# Elements of K and V (float64) a dense batch widens at once: heads are taken in groups of about 8 MiB,
# so the widened keys are still in cache for the five matmuls that read or write them (a 115-head
# decode batch widened whole is 300 MiB of float64 traffic each pass)
HEAD_CHUNK_ELEMENTS = 1 << 20


def _add_product(out: np.ndarray, x: np.ndarray, y: np.ndarray, first: bool) -> None:
    """out (a strided view) = x @ y on the first query chunk, += after it. With one row per head (a
    decode query, G = 1) the product is an outer product: a broadcast multiply, the same products
    without matmul's strided-output loop (0.7 against 1.4 ms for 3 heads x 1088 x 192)."""
    if not first:
        out += x @ y
    elif x.shape[-1] == 1:
        np.multiply(x, y, out=out)
    else:
        np.matmul(x, y, out=out)


class _Grad:
    """The golden's inputs, its gradient accumulators (dK, dV in the inputs' [T2, N2, D] layout; the
    gathered path's K, V blocks and block accumulators made on its first use) and the two paths."""

    def __init__(self, params, inputs):
        self.q, self.k, self.v = (np.asarray(inputs[n]) for n in ("query", "key", "value"))
        self.dy, self.o = np.asarray(inputs["grad"]), np.asarray(inputs["attention_out"])
        self.mx = np.asarray(inputs["softmax_max"], dtype=np.float64)[..., 0]
        self.sm = np.asarray(inputs["softmax_sum"], dtype=np.float64)[..., 0]
        self.topk = np.asarray(inputs["topk_indices"]).astype(np.int64)
        self.bs, self.scale = int(inputs["select_block_size"]), float(inputs["scale_value"])
        self.causal = int(params["sparse_mode"]) == 2
        self.t1, self.n1, self.dqk = self.q.shape
        self.t2, self.n2, self.dv = self.v.shape
        self.g = self.n1 // self.n2
        self.count = self.topk.shape[2]
        self.nblk = self.t2 // self.bs          # per-batch KV lengths are multiples of bs: blocks tile T2
        self.s1, self.kv0 = query_positions(inputs["actual_seq_qlen"], inputs["actual_seq_kvlen"], self.t1)
        self.dq = np.zeros((self.t1, self.n1, self.dqk))
        self.dk = np.zeros((self.t2, self.n2, self.dqk))
        self.dvo = np.zeros((self.t2, self.n2, self.dv))
        self.blocks = None
        self.dense_used = False

    def rows64(self, x, tokens, d, query_heads=slice(None)):
        """x[tokens, query_heads] as float64 [c, KV heads, G, d]."""
        return widen(x[tokens, query_heads]).reshape(len(tokens), -1, self.g, d)

    def gathered(self, tokens: np.ndarray) -> None:
        if self.blocks is None:          # [N2 * nblk, bs*D] K, V (their dtype) and float64 dK, dV accumulators
            self.blocks = (blocks(self.k, self.bs), blocks(self.v, self.bs),
                           np.zeros((self.n2 * self.nblk, self.bs * self.dqk)),   # row = n2 * nblk + block id
                           np.zeros((self.n2 * self.nblk, self.bs * self.dv)))
        kb, vb, dk_acc, dv_acc = self.blocks
        for a, b in chunks(tokens.size, self.n2 * self.count * self.bs * max(self.dqk, self.g)):
            tok, c = tokens[a:b], b - a
            rel = selected_rel(self.topk[tok], self.bs)                              # [c, N2, L]
            keys = block_keys(self.topk[tok], self.kv0[tok], self.bs, self.nblk)    # [c, N2, count]
            ks, vs = widen(gather(kb, keys, self.dqk)), widen(gather(vb, keys, self.dv))   # [c, N2, L, D]: the
            # selected keys widened, not all T2 (8 queries over 131072 keys select 128 of them)
            qg, dyg, og = self.rows64(self.q, tok, self.dqk), self.rows64(self.dy, tok, self.dv), \
                self.rows64(self.o, tok, self.dv)
            s = self.scale * (qg @ ks.swapaxes(-1, -2))                             # [c, N2, G, L]
            if self.causal:
                s = np.where(causal_mask(rel, self.s1[tok])[:, :, None, :], -np.inf, s)
            p = np.exp(s - self.mx[tok].reshape(c, self.n2, self.g, 1)) / self.sm[tok].reshape(c, self.n2, self.g, 1)
            dp = dyg @ vs.swapaxes(-1, -2)
            ds = p * (dp - (dyg * og).sum(-1, keepdims=True))
            self.dq[tok] = (self.scale * (ds @ ks)).reshape(c, self.n1, self.dqk)
            dks = self.scale * (ds.swapaxes(-1, -2) @ qg)                           # [c, N2, L, Dqk]
            dvs = p.swapaxes(-1, -2) @ dyg                                           # [c, N2, L, Dv]
            keys = keys.reshape(-1)
            _segment_add(dk_acc, keys, dks.reshape(c * self.n2 * self.count, self.bs * self.dqk))
            _segment_add(dv_acc, keys, dvs.reshape(c * self.n2 * self.count, self.bs * self.dv))

    def dense(self, q0: int, q1: int, k0: int, k1: int) -> None:
        """Queries [q0, q1) over every key [k0, k1) of their batch, keys weighted by multiplicity; KV
        heads in groups of HEAD_CHUNK_ELEMENTS."""
        self.dense_used = True
        t2b = k1 - k0
        step = max(1, HEAD_CHUNK_ELEMENTS // max(1, t2b * (self.dqk + self.dv)))
        for h0 in range(0, self.n2, step):
            self._dense_heads(q0, q1, k0, k1, slice(h0, min(self.n2, h0 + step)))

    def _dense_heads(self, q0, q1, k0, k1, heads: slice) -> None:
        g, t2b, nh = self.g, k1 - k0, heads.stop - heads.start
        kh = widen(self.k[k0:k1, heads]).transpose(1, 0, 2)          # [nh, T2b, Dqk]
        vh = widen(self.v[k0:k1, heads]).transpose(1, 0, 2)
        dkh = self.dk[k0:k1, heads].transpose(1, 0, 2)                # views of the accumulators, written in place
        dvh = self.dvo[k0:k1, heads].transpose(1, 0, 2)
        qh = slice(heads.start * g, heads.stop * g)
        # [c, nh, G, d] -> [nh, c*G, d]
        by_head = lambda x: x.transpose(1, 0, 2, 3).reshape(nh, -1, x.shape[-1])   # noqa: E731
        for a, b in chunks(q1 - q0, nh * g * t2b):
            tok, c = np.arange(q0 + a, q0 + b), b - a
            rel = selected_rel(self.topk[tok, heads], self.bs)                       # [c, nh, L]
            keep = ~causal_mask(rel, self.s1[tok]) if self.causal else np.ones(rel.shape, dtype=bool)
            mult = multiplicity(rel, keep, t2b)[:, :, None, :]                      # [nh, c, 1, T2b]
            qs = self.scale * by_head(self.rows64(self.q, tok, self.dqk, qh))   # scale folded into the c*G rows
            dyg = by_head(self.rows64(self.dy, tok, self.dv, qh))
            og = by_head(self.rows64(self.o, tok, self.dv, qh))
            s = (qs @ kh.swapaxes(-1, -2)).reshape(nh, c, g, t2b)
            np.copyto(s, -np.inf, where=mult == 0)     # an unselected key may score above softmax_max: exp overflows
            stat = lambda x: x[tok, qh].reshape(c, nh, g).transpose(1, 0, 2)[..., None]   # noqa: E731
            p = (np.exp(s - stat(self.mx)) / stat(self.sm) * mult).reshape(nh, c * g, t2b)
            dp = dyg @ vh.swapaxes(-1, -2)
            ds = p * (dp - (dyg * og).sum(-1, keepdims=True))
            dq = self.scale * (ds @ kh)                                                # [nh, c*G, Dqk]
            self.dq[tok, qh] = dq.reshape(nh, c, g, self.dqk).transpose(1, 0, 2, 3).reshape(c, nh * g, self.dqk)
            _add_product(dkh, ds.swapaxes(-1, -2), qs, first=a == 0)
            _add_product(dvh, p.swapaxes(-1, -2), dyg, first=a == 0)
        # an unselected key's gradient is +0.0, compared bit for bit (its rows are never written by the
        # kernel); here it is a sum of +0 x q, which is -0 where q < 0. -0 + 0.0 is +0, any other x + 0.0 is x
        dkh += 0.0
        dvh += 0.0

    def result(self) -> dict:
        if self.blocks is None:
            return {"dq": self.dq, "dk": self.dk, "dv": self.dvo}
        out = {"dq": self.dq}
        for name, acc, block_acc, d in (("dk", self.dk, self.blocks[2], self.dqk),
                                        ("dv", self.dvo, self.blocks[3], self.dv)):
            natural = block_acc.reshape(self.n2, self.nblk * self.bs, d).transpose(1, 0, 2)
            if not self.dense_used and natural.shape == acc.shape:
                out[name] = np.ascontiguousarray(natural)     # a view where N2 == 1; acc's pages never touched
            else:        # the gathered batches' rows are 0 in acc (the dense ones' in the blocks): += is exact
                acc[: self.nblk * self.bs] += natural
                out[name] = acc
        return out


def golden(params, inputs, path: str | None = None) -> dict:
    """`path` "dense" or "gathered" forces that path on every batch (tests check they agree); None
    chooses per batch (cases._nsa_select.split_batches)."""
    grad = _Grad(params, inputs)
    dense, tokens = split_batches(inputs["actual_seq_qlen"], inputs["actual_seq_kvlen"], grad.count * grad.bs,
                                  grad.g, path)
    for batch in dense:
        grad.dense(*batch)
    if tokens.size:
        grad.gathered(tokens)
    return grad.result()

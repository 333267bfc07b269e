"""torch reference of NsaSelectedAttentionGrad on the device precision path (ops.md section 3).

Scores, the recomputed softmax, dP, the row term Dr and dS are float32; P and dS are cast to the
input dtype before the matmuls that consume them (the Cube unit reads fp16/bf16); every matmul
takes dtype-valued operands and accumulates in float32; dK / dV accumulate across queries in a
float32 buffer (the kernel's workspace) and are cast to the dtype once at the end. torch casts with
round-to-nearest-even where the kernel uses CAST_ROUND (ties away): a +-1 LSB difference on exact
ties, covered by the reduction rule (ops.md, cross-cutting note 4).
"""
from __future__ import annotations

from cases._nsa_select import chunks, query_positions


def reference(params, inputs, device) -> dict:
    import torch

    q, k, v = inputs["query"], inputs["key"], inputs["value"]
    dy, o = inputs["grad"], inputs["attention_out"]
    dtype = q.dtype
    f32 = torch.float32
    mx = inputs["softmax_max"][..., 0].to(f32)
    sm = inputs["softmax_sum"][..., 0].to(f32)
    topk = inputs["topk_indices"].to(torch.int64)
    bs = int(inputs["select_block_size"])
    scale = float(inputs["scale_value"])
    causal = int(params["sparse_mode"]) == 2
    t1, n1, dqk = q.shape
    t2, n2, dv = v.shape
    g = n1 // n2
    count = topk.shape[2]
    nblk = t2 // bs
    s1_np, kv0_np = query_positions(inputs["actual_seq_qlen"], inputs["actual_seq_kvlen"], t1)
    s1 = torch.as_tensor(s1_np, device=device)
    kv0 = torch.as_tensor(kv0_np, device=device)
    offs = torch.arange(bs, device=device)
    heads = torch.arange(n2, device=device)
    # K and V as float32 (exactly their dtype values) in block rows n2 * nblk + global block id
    kb = k.to(f32).reshape(nblk, bs, n2, dqk).permute(2, 0, 1, 3).reshape(n2 * nblk, bs * dqk)
    vb = v.to(f32).reshape(nblk, bs, n2, dv).permute(2, 0, 1, 3).reshape(n2 * nblk, bs * dv)

    dq = torch.empty((t1, n1, dqk), dtype=dtype, device=device)
    dk_acc = torch.zeros((n2 * nblk, bs * dqk), dtype=f32, device=device)
    dv_acc = torch.zeros((n2 * nblk, bs * dv), dtype=f32, device=device)
    for a, b in chunks(t1, n2 * count * bs * max(dqk, g)):
        c = b - a
        rel = (topk[a:b, :, :, None] * bs + offs).reshape(c, n2, count * bs)
        keys = (kv0[a:b, None, None] // bs + topk[a:b] + nblk * heads[None, :, None]).reshape(-1)
        ks = kb.index_select(0, keys).reshape(c, n2, count * bs, dqk)   # [c, N2, L, Dqk]
        vs = vb.index_select(0, keys).reshape(c, n2, count * bs, dv)
        qg = q[a:b].reshape(c, n2, g, dqk).to(f32)
        dyg = dy[a:b].reshape(c, n2, g, dv).to(f32)
        og = o[a:b].reshape(c, n2, g, dv).to(f32)
        s = scale * (qg @ ks.transpose(-1, -2))
        if causal:
            s = s.masked_fill((rel > s1[a:b, None, None])[:, :, None, :], float("-inf"))
        p = torch.exp(s - mx[a:b].reshape(c, n2, g, 1)) / sm[a:b].reshape(c, n2, g, 1)
        dp = dyg @ vs.transpose(-1, -2)
        ds = p * (dp - (dyg * og).sum(-1, keepdim=True))
        ds_t = ds.to(dtype).to(f32)                                   # cast before the matmuls
        p_t = p.to(dtype).to(f32)
        dq[a:b] = (scale * (ds_t @ ks)).reshape(c, n1, dqk).to(dtype)
        dks = scale * (ds_t.transpose(-1, -2) @ qg)
        dvs = p_t.transpose(-1, -2) @ dyg
        dk_acc.index_add_(0, keys, dks.reshape(c * n2 * count, bs * dqk))
        dv_acc.index_add_(0, keys, dvs.reshape(c * n2 * count, bs * dv))
    dk = dk_acc.reshape(n2, nblk * bs, dqk).transpose(0, 1).to(dtype).contiguous()
    dvo = dv_acc.reshape(n2, nblk * bs, dv).transpose(0, 1).to(dtype).contiguous()
    return {"dq": dq, "dk": dk, "dv": dvo}


"""torch reference of DequantRopeQuantKvcache, following the kernel's precision path (ops.md#2).

  cos fp16:  RoPE in fp16 arithmetic (each mul and add rounded to fp16); k quantized from the fp16
             kOut; v quantized from the fp16 v.
  cos bf16:  RoPE in fp32, qOut/kOut cast to bf16 (RINT); k quantized from the fp32 roped k.
  x int32:   dequant in fp32; q and k RINT-cast to the cos dtype before RoPE; v quantized from the
             fp32 dequantized v, vOut = cos_dtype(v).
  quant:     y = value_f32 / scale + offset (fp32, offsets only if both given), torch.round (ties to
             even), clamp to [-128, 127], int8.
"""
from __future__ import annotations


def _write_rows(inputs, t: int, device):
    """(token ids written, flat cache rows [C1*C2] they go to), ops.md#2 Scatter, in torch: written
    apart from the numpy golden's, so the two cannot share a bug. contiguous: token (b, s) goes to
    row b*C2 + indices[b] + s; page: token t to row indices[t], negative indices skipped."""
    import torch

    idx = inputs["indices"].reshape(-1).to(torch.int64).to(device)
    if inputs["cache_mode"] == "page":
        tok = torch.nonzero(idx >= 0).reshape(-1)
        return tok, idx[tok]
    batch = inputs["x"].shape[0]
    per_batch = t // batch
    c2 = inputs["k_cache"].shape[1]
    tok = torch.arange(t, device=device)
    b = torch.div(tok, per_batch, rounding_mode="floor")
    return tok, b * c2 + idx[b] + tok % per_batch


def _dequant_f32(inputs, x2):
    import torch

    bias = inputs.get("bias")
    if bias is not None and bias.dtype == torch.int32:
        x2 = x2 + bias                                # int32 add first, then the cast
    xf = x2.to(torch.float32) * inputs["weight_scale"].to(torch.float32)
    if inputs.get("activation_scale") is not None:
        xf = xf * inputs["activation_scale"].to(torch.float32).reshape(-1, 1)
    if bias is not None and bias.dtype != torch.int32:
        xf = xf + bias.to(torch.float32)
    return xf


def _rope(t, cos, sin):
    """In the dtype of its arguments: fp16 tensors give fp16 arithmetic, fp32 give fp32."""
    import torch

    h = t.shape[-1] // 2
    return t * cos + torch.cat([-t[..., h:], t[..., :h]], -1) * sin


def _quant(val_f32, scale, offset):
    import torch

    y = val_f32 / scale.to(torch.float32)
    if offset is not None:
        y = y + offset.to(torch.float32)
    return torch.clamp(torch.round(y), -128, 127).to(torch.int8)


def reference(params, inputs, device) -> dict:
    import torch

    x, cos, sin = inputs["x"], inputs["cos"], inputs["sin"]
    cdt = cos.dtype
    lead = tuple(x.shape[:-1])
    kc_in, vc_in = inputs["k_cache"], inputs["v_cache"]
    nkv, d = kc_in.shape[-2], kc_in.shape[-1]
    x2 = x.reshape(-1, x.shape[-1])
    t = x2.shape[0]
    splits = [int(s) for s in inputs["size_splits"]]
    nq = splits[0] // d
    if x.dtype == torch.int32:
        q, k, v32 = torch.split(_dequant_f32(inputs, x2), splits, -1)
        q, k = q.to(cdt), k.to(cdt)                   # RINT cast to the cos dtype before RoPE
        v_out = v32.to(cdt)
    else:
        q, k, v_out = torch.split(x2, splits, -1)
        v32 = v_out.to(torch.float32)
    q, k = q.reshape(t, nq, d), k.reshape(t, nkv, d)
    v32, v_out = v32.reshape(t, nkv, d), v_out.reshape(t, nkv, d)
    c, s = cos.reshape(t, 1, d), sin.reshape(t, 1, d)
    if cdt == torch.float16:
        q_r, k_r = _rope(q, c, s), _rope(k, c, s)
        k32 = k_r.to(torch.float32)                   # quantized from the fp16 kOut
    else:
        c32, s32 = c.to(torch.float32), s.to(torch.float32)
        q_r = _rope(q.to(torch.float32), c32, s32).to(cdt)
        k32 = _rope(k.to(torch.float32), c32, s32)   # quantized from fp32, kOut is bf16(k32)
        k_r = k32.to(cdt)
    both = inputs.get("offset_k") is not None and inputs.get("offset_v") is not None
    qk = _quant(k32, inputs["scale_k"].reshape(1, nkv, d), inputs["offset_k"].reshape(1, nkv, d) if both else None)
    qv = _quant(v32, inputs["scale_v"].reshape(1, nkv, d), inputs["offset_v"].reshape(1, nkv, d) if both else None)
    tok_t, rows_t = _write_rows(inputs, t, device)
    out = {"q_out": q_r.reshape(lead + (nq, d))}
    if inputs["kv_output"]:
        out["k_out"], out["v_out"] = k_r.reshape(lead + (nkv, d)), v_out.reshape(lead + (nkv, d))
    else:
        out["k_out"] = out["v_out"] = torch.empty(0, dtype=cdt, device=device)
    for name, qt, cin in (("k_cache", qk, kc_in), ("v_cache", qv, vc_in)):
        cache = cin.clone()                           # never mutate the inputs
        cache.view(-1, nkv, d)[rows_t] = qt[tok_t]
        out[name] = cache
    return out


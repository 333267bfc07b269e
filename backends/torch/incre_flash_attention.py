"""torch reference of npu_incre_flash_attention on the device precision path (ops.md section 5).

  - Q @ K^T with float32 accumulation (fp16/bf16 products are exact in float32), times scale_value,
    plus pse_shift in float32, masked scores set to -1e12;
  - int8 K/V: K_deq = (K + offset[0]) * scale[0], V likewise with index 1; with inner_precise=1
    (high performance) the dequant runs in the query dtype, as the FIA golden's lowprecision_flag does;
    with inner_precise=0 in float32;
  - softmax in float32; P cast to the query dtype before P @ V (float32 accumulation);
  - output cast to the query dtype, or quantized: float32 O * quant_scale2 + quant_offset2 -> float16
    -> round half away from zero -> saturate to int8 (the kernel's CAST_ROUND path, ops.md #5).

Works on cpu and cuda: everything is batched tensor math; only the windows and the block table are
read on the host (actual_seq_lengths is a host list in the API too).
"""
from __future__ import annotations

from dataclasses import dataclass

# The shapes, windows and query layout below are read here, not taken from the numpy golden
# (backends/numpy/incre_flash_attention.py reads the same rules its own way): two references
# sharing them could share their bug.
MASK_FILL = -1e12   # ops.md #5: masked scores are set to -1e12 (kernel SelectWithBytesMask)


@dataclass
class _Geom:
    layout: str
    B: int
    N: int
    nkv: int
    D: int
    paged: bool
    block_size: int
    lo: list            # per batch: first KV position of the window
    hi: list            # per batch: one past the last
    row_valid: list     # per batch: False where the output row is documented zeros
    S: int              # scores are computed over positions [0, S)

    @property
    def G(self) -> int:
        return self.N // self.nkv


def _geometry(inputs) -> _Geom:
    """ops.md #5: per batch, the window is [0, L) with L from actual_seq_lengths (one value for all
    batches, or one each; absent: the whole KV); with kv_padding_size (dense only, negative taken as
    0) it ends padding positions before the KV end instead; an empty or negative window is zeros."""
    q, k = inputs["query"], inputs["key"]
    layout, n = inputs["input_layout"], int(inputs["num_heads"])
    nkv = int(inputs["num_key_value_heads"]) or n
    b = int(q.shape[0])
    d = int(q.shape[-1]) // n if q.dim() == 3 else int(q.shape[-1])
    paged = inputs.get("block_table") is not None
    kv_len = 0 if paged else int(k.shape[2] if layout == "BNSD" else k.shape[1])
    act = inputs.get("actual_seq_lengths")
    if act is None:
        lens = [kv_len] * b
    else:
        lens = [int(v) for v in act]
        lens = lens * b if len(lens) == 1 else lens
    pad = inputs.get("kv_padding_size")
    if pad is not None and act is not None and not paged:
        end = kv_len - max(int(pad.reshape(-1)[0]), 0)
        lo, hi = [end - length for length in lens], [end] * b
    else:
        lo, hi = [0] * b, lens
    valid = [start >= 0 and stop > start for start, stop in zip(lo, hi)]
    reach = max((stop for stop, ok in zip(hi, valid) if ok), default=0)
    return _Geom(layout, b, n, nkv, d, paged, int(inputs.get("block_size") or 0), lo, hi, valid, reach)


def _query(q, g: _Geom):
    """The query in its layout -> (B, N_kv, G, D): query head i attends with KV head i // G."""
    if g.layout == "BNSD":
        q = q[:, :, 0, :]
    elif g.layout == "BSND":
        q = q[:, 0]
    else:                                                    # BSH
        q = q[:, 0].reshape(g.B, g.N, g.D)
    return q.reshape(g.B, g.nkv, g.G, g.D)


def _kv_dense(x, g):
    """(B, N_kv, S, D) view of a dense K/V in the query layout, first g.S positions."""
    if g.layout == "BNSD":
        return x[:, :, : g.S]
    if g.layout == "BSND":
        return x[:, : g.S].permute(0, 2, 1, 3)
    return x[:, : g.S].reshape(g.B, g.S, g.nkv, g.D).permute(0, 2, 1, 3)


def _kv_paged(x, g, bt):
    import torch

    pos = torch.arange(g.S, device=x.device)
    blk = bt.long()[:, pos // g.block_size]                 # (B, S)
    slot = pos % g.block_size
    if x.dim() == 3:                                         # (blocknum, blocksize, H)
        r = x[blk, slot[None, :]].reshape(g.B, g.S, g.nkv, g.D)
    else:                                                    # (blocknum, N_kv, blocksize, D)
        heads = torch.arange(g.nkv, device=x.device)
        r = x[blk[:, :, None], heads[None, None, :], slot[None, :, None]]
    return r.permute(0, 2, 1, 3)


def _dequant(x, inputs, g, which, qdtype, low_precision):
    import torch

    if x.dtype != torch.int8:
        return x.float()
    ct = qdtype if low_precision else torch.float32

    def pick(t):
        if t is None:
            return None
        t = t.to(ct)
        return t[which] if t.dim() == 1 else t[which].reshape(1, g.nkv, 1, g.D)

    scale, off = pick(inputs.get("antiquant_scale")), pick(inputs.get("antiquant_offset"))
    y = x.to(ct)
    if off is not None:
        y = y + off
    return (y * scale).float()


def _quantize(o32, inputs):
    import torch

    qs = inputs["quant_scale2"].float().reshape(-1)
    qo = inputs.get("quant_offset2")
    qo = torch.zeros(1, device=o32.device) if qo is None else qo.float().reshape(-1)
    flat = o32.reshape(o32.shape[0], -1)
    y = (flat * qs + qo).to(torch.float16).float()           # fp32 -> half, then half -> int8
    y = torch.sign(y) * torch.floor(y.abs() + 0.5)            # CAST_ROUND: ties away from zero
    return y.clamp(-128, 127).to(torch.int8).reshape(o32.shape)


def _out_layout(o, g):
    o = o.reshape(g.B, g.N, g.D)
    if g.layout == "BNSD":
        return o[:, :, None, :]
    if g.layout == "BSND":
        return o[:, None]
    return o.reshape(g.B, 1, g.N * g.D)


def reference(params, inputs, device) -> dict:
    import torch

    g = _geometry(inputs)
    qt = inputs["query"]
    qdtype = qt.dtype
    q = _query(qt, g).float()
    o = torch.zeros(g.B, g.nkv, g.G, g.D, device=qt.device)
    if g.S > 0:
        low = int(inputs["inner_precise"]) == 1
        if g.paged:
            k = _kv_paged(inputs["key"], g, inputs["block_table"])
            v = _kv_paged(inputs["value"], g, inputs["block_table"])
        else:
            k, v = _kv_dense(inputs["key"], g), _kv_dense(inputs["value"], g)
        k = _dequant(k, inputs, g, 0, qdtype, low)
        v = _dequant(v, inputs, g, 1, qdtype, low)
        s = torch.matmul(q, k.transpose(-1, -2)) * float(inputs["scale_value"])
        pse = inputs.get("pse_shift")
        if pse is not None:
            s = s + pse[:, :, 0, : g.S].float().reshape(pse.shape[0], g.nkv, g.G, g.S)
        mask = inputs.get("atten_mask")
        if mask is not None:
            m = mask.reshape(mask.shape[0], -1)[:, None, None, : g.S].to(torch.bool)
            s = s.masked_fill(m, MASK_FILL)
        pos = torch.arange(g.S, device=qt.device)
        lo = torch.as_tensor(g.lo, device=qt.device)[:, None]
        hi = torch.as_tensor(g.hi, device=qt.device)[:, None]
        inwin = ((pos[None, :] >= lo) & (pos[None, :] < hi))[:, None, None, :]
        s = s.masked_fill(~inwin, float("-inf"))
        valid = torch.as_tensor(g.row_valid, device=qt.device)[:, None, None, None]
        s = torch.where(valid, s, torch.zeros((), device=qt.device))   # empty rows: no NaN from softmax
        p = torch.softmax(s, dim=-1).to(qdtype).float()
        o = torch.where(valid, torch.matmul(p, v), torch.zeros((), device=qt.device))
    out = _out_layout(o, g)
    if inputs.get("quant_scale2") is not None:
        return {"attention_out": _quantize(out, inputs)}
    return {"attention_out": out.to(qdtype)}

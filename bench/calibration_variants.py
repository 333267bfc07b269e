"""Kernel mutants and legitimate variants for bench/verdict_calibration.py.

Each variant is the torch reference (the same-precision "device") with one change, made in one of
three places: the inputs the kernel reads (an index off by one, a mask or scale dropped), the code
it runs (a patched module function or torch op for the duration of the call: accumulation in the
output dtype, softmax without its max, ties-away rounding, interleaved RoPE), or the outputs it
writes (a sign, 0.5%, one flipped bit, a dropped tail tile, a write to a row that must stay as it
was). A variant returns None where its bug cannot exist in the case (no mask to drop, one KV head).

Legitimate variants are what a correct kernel may do differently: another summation order or
blocking, fused multiply-add (one rounding per dot product), the correctly rounded golden itself.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from backends.op_modules import op_module
from backends.torch import to_numpy, to_torch
from harness.dtypes import bits, cast, name_of

# The tile along a reduced dimension in the accumulate-in-output-dtype mutant and in the blocked
# legit variant: the Cube unit's 16-element fractal (ops.md, cross-cutting notes).
TILE = 16
INPLACE = {"cache": "cache", "k_cache": "k_cache", "v_cache": "v_cache"}   # output -> input it updates


@dataclass(frozen=True)
class Variant:
    name: str
    legit: bool
    ops: tuple[str, ...] | None          # None: every op
    make: Callable                        # (spec, case, inputs, golden) -> outputs dict | None


# ---- running the torch reference with a change -----------------------------------------------
def run_reference(spec, case, inputs, *, params=None, patch=None):
    """The torch reference on cpu, optionally with other params and a patch context."""
    mod = op_module("torch", spec.name)
    dev = {k: to_torch(v, "cpu") for k, v in inputs.items()}
    ctx = patch(mod) if patch else contextlib.nullcontext()
    with ctx:
        out = mod.reference(params or case.params, dev, "cpu")
    return {k: to_numpy(v) for k, v in out.items()}


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def _matmul_as(fn):
    """Replace torch.matmul and the @ operator (both used by the references) for one call."""
    import torch

    real = torch.matmul

    def mm(a, b):
        return fn(real, a, b)

    with _patched(torch, "matmul", mm), _patched(torch.Tensor, "__matmul__", lambda a, b: mm(a, b)):
        yield


def _tiled(real, a, b, acc_dtype, reverse=False):
    """a @ b summed over K in TILE-wide slices; the running sum rounded to acc_dtype each step."""
    k = a.shape[-1]
    starts = list(range(0, k, TILE))
    if reverse:
        starts.reverse()
    acc = None
    for s in starts:
        part = real(a[..., s:s + TILE], b[..., s:s + TILE, :])
        acc = part.to(acc_dtype) if acc is None else (acc + part).to(acc_dtype)
    return acc.to(a.dtype) if acc is not None else real(a, b)


def _op_dtype(case):
    """The torch dtype of the op's float data (the "output dtype" of the accumulation mutant)."""
    from harness.dtypes import torch_dtype

    p = case.params
    name = p.get("dtype") or p.get("cos_dtype") or p.get("k_dtype") or "float16"
    return torch_dtype(name if name in ("float16", "bfloat16") else "float16")


# ---- legitimate variants --------------------------------------------------------------------
def legit_golden(spec, case, inputs, golden):
    dtypes = spec.output_dtypes(case.params)
    return {k: cast(np.asarray(v), dtypes[k]) for k, v in golden.items()}


def legit_blocked(spec, case, inputs, golden):
    import torch

    def patch(mod):
        stack = contextlib.ExitStack()
        stack.enter_context(_matmul_as(lambda real, a, b: _tiled(real, a, b, torch.float32, reverse=True)
                                       if a.dtype == torch.float32 and a.dim() >= 2 else real(a, b)))
        if hasattr(mod, "tile_tree_sum"):   # NsaCompress: a plain sequential sum over the window
            stack.enter_context(_patched(mod, "tile_tree_sum", lambda prod: prod.flip(1).sum(1)))
        return stack
    return run_reference(spec, case, inputs, patch=patch)


def legit_fma(spec, case, inputs, golden):
    import torch

    def patch(mod):
        stack = contextlib.ExitStack()
        stack.enter_context(_matmul_as(lambda real, a, b: real(a.double(), b.double()).to(a.dtype)
                                       if a.dtype == torch.float32 else real(a, b)))
        if hasattr(mod, "_rope"):           # DequantRope: the first product fused into the add
            def rope(t, c, s):
                h = t.shape[-1] // 2
                rot = torch.cat([-t[..., h:], t[..., :h]], -1)
                return (t.double() * c.double() + (rot * s).double()).to(t.dtype)
            stack.enter_context(_patched(mod, "_rope", rope))
        if hasattr(mod, "tile_tree_sum"):
            stack.enter_context(_patched(mod, "tile_tree_sum", lambda prod: prod.double().sum(1).float()))
        return stack
    return run_reference(spec, case, inputs, patch=patch)


# ---- output-level mutants -------------------------------------------------------------------
def _float_outputs(out):
    return [k for k, v in out.items() if np.asarray(v).size and name_of(v) in ("float16", "bfloat16", "float32")]


def _written(spec, case, inputs, name, arr):
    """Leading-dims mask of what the op writes in `name` (everything for a fresh output)."""
    regs = spec.output_regions(case.params, inputs, name)
    masks = [r.mask for r in regs if r.mask is not None and not r.label.endswith(("[untouched]", "[unselected]",
                                                                                    "[empty_window]"))]
    if not masks:
        return np.ones(arr.shape[:1], bool) if arr.ndim else None
    m = masks[0].copy()
    for x in masks[1:]:
        if x.shape == m.shape:
            m |= x
    return m


def _map_written(fn, only_float=True):
    def make(spec, case, inputs, golden):
        out = run_reference(spec, case, inputs)
        names = _float_outputs(out) if only_float else [k for k in out if np.asarray(out[k]).size]
        changed = False
        for k in names:
            a = out[k].copy()
            m = _written(spec, case, inputs, k, a)
            if m is None or not m.any():
                continue
            a[m] = fn(a[m])
            out[k] = a
            changed = True
        return out if changed else None
    return make


def _scaled(x):
    return cast(x.astype(np.float64) * 1.005, name_of(x))


def _negated(x):
    return cast(-x.astype(np.float64), name_of(x))


def mut_bit_flip(spec, case, inputs, golden):
    """The most significant mantissa bit (ints: bit 4) of the largest element of the first output."""
    out = run_reference(spec, case, inputs)
    for k, v in out.items():
        a = np.asarray(v).copy()
        if not a.size:
            continue
        flat = a.reshape(-1)
        i = int(np.argmax(np.abs(flat.astype(np.float64))))
        mbit = {"float16": 9, "bfloat16": 6, "float32": 22}.get(name_of(a), 4)
        b = bits(flat[i:i + 1])
        b ^= b.dtype.type(1 << mbit)
        flat[i:i + 1] = b.view(flat.dtype)
        out[k] = a
        return out
    return None


def mut_dropped_tail(spec, case, inputs, golden):
    """The last tile of the last axis is never written: zeros in a fresh output, the old contents in
    an in-place one."""
    out = run_reference(spec, case, inputs)
    changed = False
    for k, v in out.items():
        a = np.asarray(v).copy()
        if a.ndim < 2 or a.shape[-1] < 2:
            continue
        w = min(TILE, a.shape[-1] // 2)
        old = np.asarray(inputs[INPLACE[k]]) if k in INPLACE else np.zeros_like(a)
        m = _written(spec, case, inputs, k, a)
        sel = (m if m is not None else np.ones(a.shape[:1], bool))
        region = a[sel]
        region[..., -w:] = old[sel][..., -w:]
        a[sel] = region
        out[k], changed = a, True
    return out if changed else None


def mut_untouched_write(spec, case, inputs, golden):
    """The first row that must stay as it was (cache rows not written, unselected gradients) gets
    the values of a written row."""
    out = run_reference(spec, case, inputs)
    for k, v in out.items():
        regs = spec.output_regions(case.params, inputs, k)
        keep = [r.mask for r in regs if r.mask is not None and r.label.endswith(("[untouched]", "[unselected]"))]
        if not keep or not keep[0].any():
            continue
        a = np.asarray(v).copy()
        src = a[~keep[0]]
        if not src.size:
            continue
        idx = np.argwhere(keep[0])[0]
        a[tuple(idx)] = src[0] if np.any(src[0] != a[tuple(idx)]) else a[tuple(idx)] + 1
        out[k] = a
        return out
    return None


# ---- input-level mutants --------------------------------------------------------------------
def _with_inputs(change):
    """A mutant that runs the reference on inputs `change(params, inputs) -> inputs | None`."""
    def make(spec, case, inputs, golden):
        new = change(case.params, dict(inputs))
        return None if new is None else run_reference(spec, case, new)
    return make


def _shift_table(p, x):
    bt = x.get("block_table")
    if bt is None:
        return None
    nb = int(np.asarray(x["key_cache" if "key_cache" in x else ("key" if "key" in x else "input")]).shape[0])
    x["block_table"] = ((np.asarray(bt).astype(np.int64) + 1) % nb).astype(np.asarray(bt).dtype)
    return x


def _shift_slots(p, x):
    sm = np.asarray(x["slot_mapping"])
    x["slot_mapping"] = ((sm.astype(np.int64) + 1) % np.asarray(x["cache"]).shape[0]).astype(sm.dtype)
    return x


def _shift_indices(p, x):
    idx = np.asarray(x["indices"]).astype(np.int64)
    kc = np.asarray(x["k_cache"])
    limit = kc.shape[0] * kc.shape[1] if p["cache_mode"] == "page" else kc.shape[1]
    new = np.where(idx >= 0, (idx + 1) % limit, idx)
    x["indices"] = new.astype(np.asarray(x["indices"]).dtype)
    return x


def _shift_topk(p, x):
    """Every selected block index + 1, wrapped within its batch's KV blocks (a read of the next block,
    not out of bounds)."""
    topk = np.asarray(x["topk_indices"]).astype(np.int64)
    q_end = np.asarray(x["actual_seq_qlen"], np.int64)
    kv_end = np.asarray(x["actual_seq_kvlen"], np.int64)
    kv_len = np.diff(np.concatenate([[0], kv_end]))
    batch = np.searchsorted(q_end, np.arange(topk.shape[0]), side="right")
    nblk = np.maximum(kv_len[np.minimum(batch, kv_len.size - 1)] // int(x["select_block_size"]), 1)
    x["topk_indices"] = ((topk + 1) % nblk[:, None, None]).astype(np.asarray(x["topk_indices"]).dtype)
    return x


def _replace(make, *names):
    """A change setting the given (present) inputs to `make(value)`; None where none is present."""
    def change(p, x):
        present = [n for n in names if x.get(n) is not None]
        if not present:
            return None
        for n in present:
            x[n] = make(np.asarray(x[n]))
        return x
    return change


def _drop(*names):
    return _replace(lambda v: None, *names)


def _ones(*names):
    return _replace(np.ones_like, *names)


def _scale_value_one(p, x):
    if float(x["scale_value"]) == 1.0:
        return None
    x["scale_value"] = 1.0
    return x


def _ifa_wrong_head(p, x):
    """Each query head group reads the next KV head (GQA mapping off by one)."""
    nkv = int(x["num_key_value_heads"]) or int(x["num_heads"])
    if nkv < 2:
        return None
    d = int(p["head_dim"])
    for n in ("key", "value"):
        t = np.asarray(x[n])
        if t.ndim == 4 and x["input_layout"] == "BNSD" or (t.ndim == 4 and p.get("paged") and t.shape[1] == nkv):
            x[n] = np.roll(t, 1, axis=1)
        elif t.ndim == 4:                                    # BSND
            x[n] = np.roll(t, 1, axis=2)
        else:                                                # BSH / paged (blocks, bs, H)
            x[n] = np.roll(t, d, axis=-1)
    return x


def _grad_wrong_head(p, x):
    if int(np.asarray(x["key"]).shape[1]) < 2:
        return None
    for n in ("key", "value"):
        x[n] = np.roll(np.asarray(x[n]), 1, axis=1)
    return x


def _grad_no_max(p, x):
    x["softmax_max"] = np.zeros_like(np.asarray(x["softmax_max"]))
    return x


# ---- code-level mutants ---------------------------------------------------------------------
def mut_acc_out_dtype(spec, case, inputs, golden):
    """Every float32 matmul (and NsaCompress's window sum) accumulated in the op's dtype, tile by tile."""
    import torch

    low = _op_dtype(case)

    def patch(mod):
        stack = contextlib.ExitStack()
        stack.enter_context(_matmul_as(lambda real, a, b: _tiled(real, a, b, low)
                                       if a.dtype == torch.float32 and a.dim() >= 2 else real(a, b)))
        if hasattr(mod, "tile_tree_sum"):
            def seq_low(prod):
                acc = prod[:, 0].to(low)
                for i in range(1, prod.shape[1]):
                    acc = (acc.float() + prod[:, i]).to(low)
                return acc.float()
            stack.enter_context(_patched(mod, "tile_tree_sum", seq_low))
        return stack
    return run_reference(spec, case, inputs, patch=patch)


def mut_softmax_nomax(spec, case, inputs, golden):
    """IncreFlashAttention: exp(s) / sum(exp(s)) without subtracting the row max first."""
    import torch

    def nomax(x, dim=-1, **kw):
        e = torch.exp(x)
        return e / e.sum(dim, keepdim=True)
    return run_reference(spec, case, inputs, patch=lambda mod: _patched(torch, "softmax", nomax))


def mut_ties_swap(spec, case, inputs, golden):
    """int8 quantisation rounding ties the other way (DequantRope: away; IFA: even)."""
    import torch

    if spec.name == "dequant_rope_quant_kvcache":
        def q_away(val, scale, offset):
            y = val / scale.to(torch.float32)
            if offset is not None:
                y = y + offset.to(torch.float32)
            y = torch.sign(y) * torch.floor(y.abs() + 0.5)
            return torch.clamp(y, -128, 127).to(torch.int8)
        return run_reference(spec, case, inputs, patch=lambda mod: _patched(mod, "_quant", q_away))
    if spec.name == "incre_flash_attention" and inputs.get("quant_scale2") is not None:
        def q_even(o32, x):
            qs = x["quant_scale2"].float().reshape(-1)
            qo = x.get("quant_offset2")
            qo = torch.zeros(1) if qo is None else qo.float().reshape(-1)
            flat = o32.reshape(o32.shape[0], -1)
            y = torch.round((flat * qs + qo).to(torch.float16).float())
            return y.clamp(-128, 127).to(torch.int8).reshape(o32.shape)
        return run_reference(spec, case, inputs, patch=lambda mod: _patched(mod, "_quantize", q_even))
    return None


def mut_rope_interleaved(spec, case, inputs, golden):
    import torch

    def interleaved(t, cos, sin):
        x1, x2 = t[..., 0::2], t[..., 1::2]
        rot = torch.stack([-x2, x1], -1).reshape(t.shape)
        return t * cos + rot * sin
    return run_reference(spec, case, inputs, patch=lambda mod: _patched(mod, "_rope", interleaved))


def mut_padding_ignored(spec, case, inputs, golden):
    """DequantRope page mode: negative (padding) indices written, wrapping to the last rows."""
    idx = np.asarray(inputs["indices"])
    if case.params["cache_mode"] != "page" or not (idx < 0).any():
        return None

    def rows_all(x, t, device):
        import torch

        kc = x["k_cache"]
        i = x["indices"].reshape(-1).to(torch.int64)
        return torch.arange(i.numel()), i % (kc.shape[0] * kc.shape[1])
    return run_reference(spec, case, inputs, patch=lambda mod: _patched(mod, "_write_rows", rows_all))


def mut_mask_ignored(spec, case, inputs, golden):
    if spec.name == "incre_flash_attention":
        return _with_inputs(_drop("atten_mask"))(spec, case, inputs, golden)
    if spec.name == "nsa_selected_attention_grad" and int(case.params["sparse_mode"]) == 2:
        return run_reference(spec, case, inputs, params={**case.params, "sparse_mode": 0})
    return None


def _by_op(table):
    def make(spec, case, inputs, golden):
        fn = table.get(spec.name)
        return None if fn is None else fn(spec, case, inputs, golden)
    return make


OFF_BY_ONE = _by_op({
    "paged_cache_load": _with_inputs(_shift_table),
    "incre_flash_attention": _with_inputs(lambda p, x: _shift_table(p, x) if p.get("paged") else None),
    "nsa_compress_with_cache": _with_inputs(_shift_slots),
    "dequant_rope_quant_kvcache": _with_inputs(_shift_indices),
    "nsa_selected_attention_grad": _with_inputs(_shift_topk),
})
SCALE_DROPPED = _by_op({
    "incre_flash_attention": _with_inputs(_scale_value_one),
    "nsa_selected_attention_grad": _with_inputs(_scale_value_one),
    "nsa_compress_with_cache": _with_inputs(_ones("weight")),
    "dequant_rope_quant_kvcache": _with_inputs(_ones("scale_k", "scale_v")),
})
OFFSET_DROPPED = _by_op({
    "incre_flash_attention": _with_inputs(_drop("antiquant_offset", "quant_offset2")),
    "dequant_rope_quant_kvcache": _with_inputs(_drop("offset_k", "offset_v")),
})
WRONG_HEAD = _by_op({
    "incre_flash_attention": _with_inputs(_ifa_wrong_head),
    "nsa_selected_attention_grad": _with_inputs(_grad_wrong_head),
})
SOFTMAX_NOMAX = _by_op({
    "incre_flash_attention": mut_softmax_nomax,
    "nsa_selected_attention_grad": _with_inputs(_grad_no_max),
})
PADDING = _by_op({
    "incre_flash_attention": _with_inputs(_drop("kv_padding_size")),
    "dequant_rope_quant_kvcache": mut_padding_ignored,
})

VARIANTS = (
    Variant("golden_rounded", True, None, legit_golden),
    Variant("blocked_sum", True, None, legit_blocked),
    Variant("fma", True, None, legit_fma),
    Variant("acc_in_out_dtype", False, ("incre_flash_attention", "nsa_compress_with_cache",
                                        "nsa_selected_attention_grad"), mut_acc_out_dtype),
    Variant("softmax_no_max", False, ("incre_flash_attention", "nsa_selected_attention_grad"), SOFTMAX_NOMAX),
    Variant("scale_dropped", False, None, SCALE_DROPPED),
    Variant("offset_dropped", False, None, OFFSET_DROPPED),
    Variant("ties_swapped", False, ("dequant_rope_quant_kvcache", "incre_flash_attention"), mut_ties_swap),
    Variant("index_off_by_one", False, None, OFF_BY_ONE),
    Variant("mask_ignored", False, ("incre_flash_attention", "nsa_selected_attention_grad"), mut_mask_ignored),
    Variant("padding_ignored", False, ("incre_flash_attention", "dequant_rope_quant_kvcache"), PADDING),
    Variant("gqa_wrong_kv_head", False, ("incre_flash_attention", "nsa_selected_attention_grad"), WRONG_HEAD),
    Variant("rope_interleaved", False, ("dequant_rope_quant_kvcache",), mut_rope_interleaved),
    Variant("dropped_tail_tile", False, None, mut_dropped_tail),
    Variant("wrong_sign", False, None, _map_written(_negated)),
    Variant("scale_off_0.5pct", False, None, _map_written(_scaled)),
    Variant("one_flipped_bit", False, None, mut_bit_flip),
    Variant("untouched_rows_written", False, None, mut_untouched_write),
)

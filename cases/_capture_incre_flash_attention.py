"""incre_flash_attention params from a torch_npu.npu_incre_flash_attention call (the inverse of
cases/_ifa_inputs.py: each param is what the input builder would need to produce these tensors)."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of
from harness.capture.infer import Unusable, dtype_or_none, int_list, tensor

SCHEMA_DEFAULTS = {"num_heads": 1, "scale_value": 1.0, "input_layout": "BSH", "num_key_value_heads": 0,
                   "block_size": 0, "inner_precise": 1}
TENSORS = ("padding_mask", "atten_mask", "pse_shift", "antiquant_scale", "antiquant_offset", "block_table",
           "dequant_scale1", "quant_scale1", "dequant_scale2", "quant_scale2", "quant_offset2", "kv_padding_size")
# product: the documented limits differ per card. The device name the capture read says which; without one
# (an msprobe dump) A2, the training/serving part, is assumed.
DEFAULT_PRODUCT = "A2"


def product(manifest: dict) -> str:
    name = str(manifest.get("device_name") or "").replace(" ", "").lower()
    return "310P" if name.startswith("ascend310p") else DEFAULT_PRODUCT


def _heads_dims(layout, q, n_attr):
    if layout == "BNSD":
        return q.shape[0], q.shape[1], q.shape[3]
    if layout == "BSND":
        return q.shape[0], q.shape[2], q.shape[3]
    if q.ndim != 3 or n_attr <= 0 or q.shape[2] % n_attr:
        raise Unusable(f"query {list(q.shape)} with num_heads={n_attr}: no head dim for layout {layout}")
    return q.shape[0], n_attr, q.shape[2] // n_attr


def _kv(layout, k, d, paged):
    """(num_kv_heads, kv S for dense, cache layout)."""
    if paged:
        if k.ndim == 3:
            return k.shape[2] // d, 0, "BBH"
        return k.shape[1], 0, "BNBD"
    if layout == "BNSD":
        return k.shape[1], k.shape[2], "none"
    if layout == "BSND":
        return k.shape[2], k.shape[1], "none"
    return k.shape[2] // d, k.shape[1], "none"


# Where a shape fits two names (batch 1, one head, N == Nkv), the documented name wins: the tensor is the
# same, and only the other name is a constraint violation.
def _mask_shape(m, b):
    if m is None:
        return "none"
    if m.ndim == 2:
        return "BS"
    if m.ndim == 3:
        return "B1S"
    return "111S" if m.shape[0] == 1 and b != 1 else "B11S"


def _pse_shape(p, b, n):
    if p is None:
        return "none"
    if p.shape[0] == b and (p.ndim < 2 or p.shape[1] == n):
        return "BN1S"
    return "111S" if p.ndim > 1 and p.shape[1] == 1 and n != 1 else "1N1S"


# per layout, the per-channel quant_scale2 names in order of preference (cases/_ifa_constraints.py QUANT2_PER_CHANNEL)
QUANT2_PREFERENCE = {"BSH": ("H", "11H", "ND"), "BNSD": ("1N1D", "ND"), "BSND": ("11ND", "ND")}


def _quant2(s, n, nkv, d, layout):
    if s is None:
        return "none"
    shapes = {"1": (1,), "ND": (n, d), "1N1D": (1, n, 1, d), "11ND": (1, 1, n, d), "H": (n * d,), "11H": (1, 1, n * d),
              "NkvD": (nkv, d)}
    order = ("1",) + QUANT2_PREFERENCE.get(layout, ()) + tuple(shapes)
    return next((name for name in order if tuple(s.shape) == shapes[name]), "shape" + "x".join(map(str, s.shape)))


def _antiquant(s):
    if s is None:
        return "none"
    if s.ndim == 1:
        return "per_tensor"
    return {2: "BSH", 3: "BSND", 4: "BNSD"}.get(s.ndim, f"rank{s.ndim}")


def infer(a: dict, meta: dict, manifest: dict) -> tuple[dict, dict]:
    q, k, v = tensor(a, "query", (3, 4)), tensor(a, "key", (3, 4)), tensor(a, "value", (3, 4))
    attrs = {n: (a.get(n) if a.get(n) is not None else dv) for n, dv in SCHEMA_DEFAULTS.items()}
    layout = attrs["input_layout"]
    n_attr = int(attrs["num_heads"])
    b, n, d = (int(x) for x in _heads_dims(layout, q, n_attr))
    bt = a.get("block_table")
    paged = isinstance(bt, np.ndarray)
    nkv, dense_s, cache_layout = (int(x) if not isinstance(x, str) else x for x in _kv(layout, k, d, paged))
    act = int_list(a.get("actual_seq_lengths"))
    bs = int(attrs["block_size"])
    if act is None:
        mode, lens = "none", np.full(b, dense_s, np.int64)
    else:
        mode = "per_batch" if len(act) == b else "broadcast" if len(act) == 1 else "wrong_count"
        lens = np.resize(np.asarray(act, np.int64), b) if act else np.zeros(b, np.int64)
    if paged:
        # the longest logical length; at least 1 (all-zero lengths say nothing about S, and S >= 1)
        kv_seq = max(int(lens.max(initial=0)), 1) if act is not None else int(bt.shape[1] * bs)
        need = -(-lens // bs) if bs > 0 else np.zeros(b, np.int64)
        table_extra = int(bt.shape[1] - need.max(initial=0))
        spare = int(k.shape[0] - need.sum())
        aux_base = max(int(need.max(initial=0)), 1) * bs
    else:
        kv_seq, table_extra, spare, aux_base = int(dense_s), 0, 0, int(dense_s)
    pad_t = a.get("kv_padding_size")
    pad = int(np.asarray(pad_t).reshape(-1)[0]) if isinstance(pad_t, np.ndarray) and pad_t.size else None
    overflow = bool(pad is not None and act is not None and (kv_seq - max(pad, 0) - lens < 0).any())
    mask, pse = a.get("atten_mask"), a.get("pse_shift")
    aux = mask if isinstance(mask, np.ndarray) else pse if isinstance(pse, np.ndarray) else None
    aux_len = aux.shape[-1] if aux is not None else aux_base
    full_row = bool(isinstance(mask, np.ndarray) and mask.size and
                    (mask.reshape(mask.shape[0], -1) != 0).all(axis=1).any())
    a_scale, a_off = a.get("antiquant_scale"), a.get("antiquant_offset")
    qs2, qo2 = a.get("quant_scale2"), a.get("quant_offset2")
    kv_attr = int(attrs["num_key_value_heads"])
    params = {
        "fault": "none", "product": product(manifest), "layout": layout, "dtype": name_of(q), "kv_dtype": name_of(k),
        "num_heads": n, "num_kv_heads": nkv, "kv_heads_attr": "zero" if kv_attr == 0 else
        ("explicit" if kv_attr == nkv else "wrong"), "num_heads_attr": "match" if n_attr == n else "wrong",
        "head_dim": d, "batch": b, "paged": paged, "cache_layout": cache_layout, "block_size": bs,
        "table_extra": table_extra, "spare_blocks": spare, "actual_seq": mode,
        "seq_zero": bool(act is not None and (np.asarray(act) == 0).any()), "kv_seq": kv_seq, "kv_padding": pad,
        "kv_pad_overflow": overflow, "mask_dtype": dtype_or_none(mask), "mask_shape": _mask_shape(mask, b),
        "mask_full_row": full_row, "pse": _pse_shape(pse, b, n), "pse_dtype": dtype_or_none(pse),
        "aux_s": "exact" if aux_len == aux_base else ("longer" if aux_len > aux_base else "short"),
        "antiquant": _antiquant(a_scale),
        "antiquant_offset": "none" if a_off is None else
        ("same" if a_scale is None or a_off.shape == a_scale.shape else "mismatch"),
        "antiquant_dtype": dtype_or_none(a_scale), "quant2": _quant2(qs2, n, nkv, d, layout),
        "quant2_dtype": dtype_or_none(qs2),
        "quant_offset2": "none" if qo2 is None else ("dtype_mismatch" if qs2 is not None and name_of(qo2) != name_of(qs2)
                                                     else "shape_mismatch" if qs2 is not None and qo2.shape != qs2.shape
                                                     else "same"),
        "int8_path_scales": next((s for s in ("dequant_scale1", "quant_scale1", "dequant_scale2")
                                  if a.get(s) is not None), "none"),
        "inner_precise": int(attrs["inner_precise"]), "scale_value": float(attrs["scale_value"]), "dist": "recorded",
    }
    inputs = {"query": q, "key": k, "value": v, **{t: a.get(t) for t in TENSORS}, "actual_seq_lengths": act, **attrs}
    inputs["scale_value"] = float(inputs["scale_value"])
    return params, inputs

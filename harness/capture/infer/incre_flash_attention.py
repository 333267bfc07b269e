"""incre_flash_attention params from a torch_npu.npu_incre_flash_attention call (the inverse of
cases/_ifa_inputs.py: each param is what the input builder would need to produce these tensors)."""
from __future__ import annotations

import numpy as np

from ...dtypes import name_of
from . import Unusable, dtype_or_none, int_list, tensor

SCHEMA_DEFAULTS = {"num_heads": 1, "scale_value": 1.0, "input_layout": "BSH", "num_key_value_heads": 0,
                   "block_size": 0, "inner_precise": 1}
TENSORS = ("padding_mask", "atten_mask", "pse_shift", "antiquant_scale", "antiquant_offset", "block_table",
           "dequant_scale1", "quant_scale1", "dequant_scale2", "quant_scale2", "quant_offset2", "kv_padding_size")
# product: the documented limits differ per card; a record does not say which, A2 is the training/serving part
DEFAULT_PRODUCT = "A2"


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


def _mask_shape(m):
    if m is None:
        return "none"
    if m.ndim == 2:
        return "BS"
    if m.ndim == 3:
        return "B1S"
    return "111S" if m.shape[0] == 1 else "B11S"


def _pse_shape(p):
    if p is None:
        return "none"
    if p.shape[0] != 1:
        return "BN1S"
    return "111S" if p.ndim > 1 and p.shape[1] == 1 else "1N1S"


def _quant2(s, n, nkv, d):
    if s is None:
        return "none"
    shapes = {(1,): "1", (n, d): "ND", (1, n, 1, d): "1N1D", (1, 1, n, d): "11ND", (n * d,): "H",
              (1, 1, n * d): "11H", (nkv, d): "NkvD"}
    return shapes.get(tuple(s.shape), "shape" + "x".join(map(str, s.shape)))


def _antiquant(s):
    if s is None:
        return "none"
    if s.ndim == 1:
        return "per_tensor"
    return {2: "BSH", 3: "BSND", 4: "BNSD"}.get(s.ndim, f"rank{s.ndim}")


def infer(a: dict, formats: dict) -> tuple[dict, dict]:
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
        kv_seq = int(lens.max(initial=0)) if act is not None else int(bt.shape[1] * bs)
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
        "fault": "none", "product": DEFAULT_PRODUCT, "layout": layout, "dtype": name_of(q), "kv_dtype": name_of(k),
        "num_heads": n, "num_kv_heads": nkv, "kv_heads_attr": "zero" if kv_attr == 0 else
        ("explicit" if kv_attr == nkv else "wrong"), "num_heads_attr": "match" if n_attr == n else "wrong",
        "head_dim": d, "batch": b, "paged": paged, "cache_layout": cache_layout, "block_size": bs,
        "table_extra": table_extra, "spare_blocks": spare, "actual_seq": mode,
        "seq_zero": bool(act is not None and (np.asarray(act) == 0).any()), "kv_seq": kv_seq, "kv_padding": pad,
        "kv_pad_overflow": overflow, "mask_dtype": dtype_or_none(mask), "mask_shape": _mask_shape(mask),
        "mask_full_row": full_row, "pse": _pse_shape(pse), "pse_dtype": dtype_or_none(pse),
        "aux_s": "exact" if aux_len == aux_base else ("longer" if aux_len > aux_base else "short"),
        "antiquant": _antiquant(a_scale),
        "antiquant_offset": "none" if a_off is None else
        ("same" if a_scale is None or a_off.shape == a_scale.shape else "mismatch"),
        "antiquant_dtype": dtype_or_none(a_scale), "quant2": _quant2(qs2, n, nkv, d),
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

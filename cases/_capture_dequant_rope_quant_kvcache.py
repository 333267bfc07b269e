"""dequant_rope_quant_kvcache params from npu_dequant_rope_quant_kvcache / npu_rope_quant_kvcache calls."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of
from harness.capture.infer import Unusable, dtype_or_none, int_list, tensor

OPTIONAL = ("offset_k", "offset_v", "weight_scale", "activation_scale", "bias")
ATTR_DEFAULTS = {"quant_mode": 0, "input_layout": "BSND", "kv_output": False, "cache_mode": "contiguous"}


def infer(a: dict, meta: dict, manifest: dict) -> tuple[dict, dict]:
    x, cos, sin = tensor(a, "x"), tensor(a, "cos"), tensor(a, "sin")
    kc, vc, idx = tensor(a, "k_cache"), tensor(a, "v_cache"), tensor(a, "indices")
    sk, sv = tensor(a, "scale_k"), tensor(a, "scale_v")
    splits = int_list(a.get("size_splits"))
    if not splits or len(splits) != 3:
        raise Unusable(f"size_splits is {a.get('size_splits')!r}, expected three ints [Nq*D, Nkv*D, Nkv*D]")
    attrs = {k: (a.get(k) if a.get(k) is not None else d) for k, d in ATTR_DEFAULTS.items()}
    d = int(cos.shape[-1])
    if d <= 0:
        raise Unusable(f"cos has shape {list(cos.shape)}: no head dim")
    nkv = int(kc.shape[2]) if kc.ndim == 4 else int(kc.shape[1]) if kc.ndim == 3 else splits[1] // d
    page = attrs["cache_mode"] == "page"
    idx64 = idx.astype(np.int64).reshape(-1)
    offsets = {(True, True): "both", (True, False): "k_only", (False, True): "v_only", (False, False): "none"}[
        (a.get("offset_k") is not None, a.get("offset_v") is not None)]
    scale_shape = "nkv_d" if sk.ndim == 2 else "flat" if sk.size == nkv * d else "half"
    params = {
        "x_dtype": name_of(x), "cos_dtype": name_of(cos), "sin_dtype": name_of(sin), "x_rank": int(x.ndim),
        "cos_rank": int(cos.ndim), "batch": int(x.shape[0]), "seq_len": int(x.shape[1]) if x.ndim == 3 else 1,
        "num_q_heads": splits[0] // d, "num_kv_heads": nkv, "head_dim": d, "cache_mode": attrs["cache_mode"],
        "cache_batch": int(kc.shape[0]), "cache_seq": int(kc.shape[1]) if kc.ndim == 4 else 1,
        "pad_tokens": int((idx64 < 0).sum()) if page else 0, "kv_output": bool(attrs["kv_output"]),
        "offsets": offsets, "has_weight_scale": a.get("weight_scale") is not None,
        "has_activation_scale": a.get("activation_scale") is not None, "bias_dtype": dtype_or_none(a.get("bias")),
        "quant_mode": attrs["quant_mode"], "input_layout": attrs["input_layout"], "cache_dtype": name_of(kc),
        "cache_rank": int(kc.ndim),
        # a record's arrays are contiguous copies; the manifest says whether the op was handed contiguous caches
        "cache_contiguous": all(meta.get(k, {}).get("contiguous", True) for k in ("k_cache", "v_cache")),
        "scale_shape": scale_shape, "ties": False, "fault": "none",
    }
    inputs = {"x": x, "cos": cos, "sin": sin, "k_cache": kc, "v_cache": vc, "indices": idx, "scale_k": sk,
              "scale_v": sv, "size_splits": splits, **{k: a.get(k) for k in OPTIONAL}, **attrs}
    return params, inputs

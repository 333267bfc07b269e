"""paged_cache_load params from a torch_npu.atb.npu_paged_cache_load call (cases/paged_cache_load.py)."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of, nz_c0
from harness.capture.record import FORMAT_NZ
from harness.capture.infer import Unusable, tensor


def infer(a: dict, meta: dict, manifest: dict) -> tuple[dict, dict]:
    kc, vc = tensor(a, "key_cache", (4,)), tensor(a, "value_cache", (4,))
    bt, cl = tensor(a, "block_table", (2,)), tensor(a, "context_lens", (1,))
    # the wrapper derives kvCacheCfg from key_cache's storage format (ops.md section 4)
    fk, fv = (meta.get(k, {}).get("format", "ND") for k in ("key_cache", "value_cache"))
    nz = fk == FORMAT_NZ
    if nz != (fv == FORMAT_NZ):
        raise Unusable(f"key_cache and value_cache have different storage formats ({fk} / {fv})")
    cumsum = bool(a.get("cumsum") or False)
    lens = np.diff(cl.astype(np.int64)) if cumsum else cl.astype(np.int64)
    if nz and kc.shape[3] == nz_c0(name_of(kc)) and vc.shape[3] == nz_c0(name_of(vc)):
        # [nb, N*D/C0, bs, C0]: only N*D is known; one head of N*D elements is the same layout
        nb, h1, bs, c0 = kc.shape
        heads, dk, dv = 1, h1 * c0, vc.shape[1] * vc.shape[3]
    else:    # [nb, bs, N, D]; also an "NZ" cache whose last dim is no C0, which only ND data can explain
        nb, bs, heads, dk = kc.shape
        dv = vc.shape[3]
    params = {
        "layout": "NZ" if nz else "ND", "k_dtype": name_of(kc), "v_dtype": name_of(vc), "cumsum": cumsum,
        "has_seq_starts": a.get("seq_starts") is not None, "num_heads": int(heads), "head_size_k": int(dk),
        "head_size_v": int(dv), "block_size": int(bs), "batch": int(max(cl.size - 1, 0) if cumsum else cl.size),
        "max_context": int(lens.max(initial=0)), "max_blocks_per_seq": int(bt.shape[1]), "num_blocks": int(nb),
        "index_dtype": name_of(bt), "fault": "none", "dist": "recorded",
    }
    inputs = {"key_cache": kc, "value_cache": vc, "block_table": bt, "context_lens": cl,
              "seq_starts": a.get("seq_starts"), "cumsum": cumsum, "kv_cache_cfg": 0 if nz else 1}
    return params, inputs

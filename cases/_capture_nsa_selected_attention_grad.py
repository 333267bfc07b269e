"""nsa_selected_attention_grad params from a torch_npu.npu_nsa_select_attention_grad call."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of
from harness.capture.infer import Unusable, int_list, tensor

NAMES = ("grad", "query", "key", "value", "attention_out", "softmax_max", "softmax_sum", "topk_indices")


def _lens(cu: list[int] | None, what: str) -> list[int]:
    if cu is None:
        raise Unusable(f"{what} is not given: the TND layout needs the per-batch prefix sums")
    return [int(x) for x in np.diff(np.r_[0, np.asarray(cu, np.int64)])]


def infer(a: dict, meta: dict, manifest: dict) -> tuple[dict, dict]:
    t = {k: tensor(a, k, (3,)) for k in NAMES}
    q, k, v, g = t["query"], t["key"], t["value"], t["grad"]
    cu_q, cu_kv = int_list(a.get("actual_seq_qlen")), int_list(a.get("actual_seq_kvlen"))
    params = {
        "dtype": name_of(q), "layout": "TND", "has_mask": a.get("atten_mask") is not None, "fault": "none",
        "dist": "recorded",
        "sparse_mode": 2,   # the torch_npu wrapper hard-codes sparse_mode=2 (ops.md section 3 "torch API")
        "d_qk": int(q.shape[2]), "d_v": int(v.shape[2]), "n1": int(q.shape[1]), "n2": int(k.shape[1]),
        "head_num": int(a["head_num"]), "value_heads": int(v.shape[1]), "out_heads": int(g.shape[1]),
        "out_dim": int(g.shape[2]), "select_block_size": int(a["select_block_size"]),
        "select_block_count": int(a["select_block_count"]), "topk_width": int(t["topk_indices"].shape[2]),
        "stats_width": int(t["softmax_max"].shape[2]), "topk_mode": "nsa",
        "q_lens": _lens(cu_q, "actual_seq_qlen"), "kv_lens": _lens(cu_kv, "actual_seq_kvlen"),
        "scale_value": float(a["scale_value"]),
    }
    inputs = dict(t, scale_value=float(a["scale_value"]), head_num=int(a["head_num"]),
                  select_block_size=int(a["select_block_size"]), select_block_count=int(a["select_block_count"]),
                  atten_mask=a.get("atten_mask"), actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv)
    return params, inputs

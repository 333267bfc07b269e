"""nsa_compress_with_cache params from a torch_npu.npu_nsa_compress_infer call (cases/nsa_compress_with_cache.py)."""
from __future__ import annotations

import numpy as np

from harness.dtypes import name_of
from harness.capture.infer import int_list, tensor


def infer(a: dict, meta: dict, manifest: dict) -> tuple[dict, dict]:
    from .nsa_compress_with_cache import triggered   # lazy: that module imports this one

    x, w = tensor(a, "input", (4,)), tensor(a, "weight", (2,))
    slots, cache = tensor(a, "slot_mapping", (1,)), tensor(a, "cache", (3,))
    bt = a.get("block_table")
    act = int_list(a.get("actual_seq_len")) or []
    cbs, stride, page = int(a["compress_block_size"]), int(a["compress_stride"]), int(a["page_block_size"])
    trig = triggered(act, cbs, stride) if act else np.zeros(0, bool)
    params = {
        "dtype": name_of(x), "weight_dtype": name_of(w), "cache_dtype": name_of(cache), "batch": int(slots.shape[0]),
        "num_heads": int(x.shape[2]), "head_dim": int(x.shape[3]), "compress_block_size": cbs,
        "compress_stride": stride, "page_block_size": page,
        "act_seq_len_type": 1,   # torch_npu hard-codes actSeqLenType=1 (op-plugin op_plugin_functions.yaml:7330)
        "max_blocks_per_seq": int(bt.shape[1]) if isinstance(bt, np.ndarray) and bt.ndim == 2 else 0,
        "num_blocks": int(x.shape[0]), "result_len": int(cache.shape[0]), "weight_rows": int(w.shape[0]),
        "weight_heads": int(w.shape[1]), "trigger": "all" if trig.size and trig.all() else
        ("mixed" if trig.any() else "none"), "index_dtype": name_of(slots), "fault": "none", "dist": "recorded",
    }
    inputs = {"input": x, "weight": w, "slot_mapping": slots, "compress_block_size": cbs, "compress_stride": stride,
              "page_block_size": page, "block_table": bt, "actual_seq_len": act, "cache": cache}
    return params, inputs

"""The KV window of each batch of npu_incre_flash_attention: a fact of the spec (seed 004, ops.md section 5),
read by the spec's regions (documented zero rows) and by the numpy golden.

Without kv_padding_size the window of batch b is [0, actual_seq_lengths[b]) (the whole cache without
actual_seq_lengths); with it (non-paged only) the window ends at S_max - kv_padding_size (a negative value
counts as 0) and is actual_seq_lengths[b] long. A window that is empty or starts below 0 makes the output row
all zeros.
"""
from __future__ import annotations

import numpy as np


def kv_windows(inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, row_valid), each (B,): window start, end (exclusive), False where the row is documented zeros.
    Reads only shapes and host values, so numpy and torch inputs both work."""
    qs, ks = tuple(inputs["query"].shape), tuple(inputs["key"].shape)
    b = qs[0]
    paged = inputs.get("block_table") is not None
    smax = None if paged else (ks[2] if inputs["input_layout"] == "BNSD" else ks[1])
    act = inputs.get("actual_seq_lengths")
    if act is None:
        lens = np.full(b, smax if smax is not None else 0, np.int64)
    else:
        lens = np.broadcast_to(np.asarray([int(x) for x in act], np.int64), (b,)).copy()
    pad = inputs.get("kv_padding_size")
    if pad is not None and act is not None and not paged:
        p = max(int(pad.reshape(-1)[0]), 0)   # seed: kv_padding_size < 0 is set to 0
        hi = np.full(b, smax - p, np.int64)
        lo = hi - lens
    else:
        lo, hi = np.zeros(b, np.int64), lens
    return lo, hi, (lo >= 0) & (hi > lo)     # seed: start or end < 0 -> all zeros

"""torch reference of aclnnNsaCompressWithCache on the device precision path (ops.md section 1 Numerics):
input and weight cast to float32, multiplied, reduced over the window in float32 in the kernel's
order (8-token tiles summed pairwise, then the tiles), cast back with round-to-nearest-even into a
clone of the cache (the op is in place; the caller's tensor is never mutated)."""
from __future__ import annotations

from cases.nsa_compress_with_cache import triggered

TILE = 8  # ops.md#1 Numerics: "8-token tiles are pairwise added, then the tiles are reduced" [INFERRED order]


def tile_tree_sum(prod):
    """Sum dim 1 (cbs, a multiple of 16) of [T, cbs, N, D]: a pairwise tree inside each 8-token tile,
    then the tile sums accumulated in order."""
    t, cbs = prod.shape[:2]
    x = prod.reshape(t, cbs // TILE, TILE, *prod.shape[2:])
    width = TILE
    while width > 1:
        width //= 2
        x = x[:, :, :width] + x[:, :, width:2 * width]
    x = x[:, :, 0]
    acc = x[:, 0]
    for i in range(1, x.shape[1]):   # at most 8 tiles (cbs <= 64)
        acc = acc + x[:, i]
    return acc


def _windows(inputs, page: int, device):
    """Triggering batches and, for each, the (block, slot) of its last cbs logical tokens (ops.md#1
    Page addressing), in torch: written apart from the numpy golden's, so the two cannot share a bug.
    The trigger rule itself is the spec's (cases.nsa_compress_with_cache.triggered)."""
    import torch

    cbs = int(inputs["compress_block_size"])
    act = [int(v) for v in inputs["actual_seq_len"]]
    tb = [b for b, hit in enumerate(triggered(act, cbs, int(inputs["compress_stride"]))) if hit]
    tb_t = torch.as_tensor(tb, dtype=torch.int64, device=device)
    last = torch.as_tensor([act[b] for b in tb], dtype=torch.int64, device=device)
    pos = last[:, None] - cbs + torch.arange(cbs, device=device)[None, :]      # [T, cbs]
    table = inputs["block_table"].to(torch.int64).to(device)
    return tb_t, table[tb_t[:, None], torch.div(pos, page, rounding_mode="floor")], pos % page


def reference(params, inputs, device) -> dict:
    import torch

    cache = inputs["cache"].clone()
    tb, blk, off = _windows(inputs, inputs["input"].shape[1], device)
    if tb.numel() == 0:
        return {"cache": cache}
    win = inputs["input"][blk, off].to(torch.float32)                          # [T, cbs, N, D]
    w = inputs["weight"].to(torch.float32)                                     # [cbs, N]
    acc = tile_tree_sum(win * w[None, :, :, None])
    slots = inputs["slot_mapping"].to(torch.int64)[tb]
    cache[slots] = acc.to(cache.dtype)                                        # RNE, like CAST_RINT
    return {"cache": cache}

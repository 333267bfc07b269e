"""torch reference of aclnnNsaCompressWithCache on the device precision path (ops.md section 1 Numerics):
input and weight cast to float32, multiplied, reduced over the window in float32 in the kernel's
order (8-token tiles summed pairwise, then the tiles), cast back with round-to-nearest-even into a
clone of the cache (the op is in place; the caller's tensor is never mutated)."""
from __future__ import annotations

from backends.golden.nsa_compress_with_cache import windows

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


def reference(params, inputs, device) -> dict:
    import torch

    cache = inputs["cache"].clone()
    host = {k: (v.cpu().numpy() if k == "block_table" else v) for k, v in inputs.items()}
    tb, blk, off = windows(host, inputs["input"].shape[1])
    if tb.size == 0:
        return {"cache": cache}
    blk_t, off_t = torch.as_tensor(blk, device=device), torch.as_tensor(off, device=device)
    win = inputs["input"][blk_t, off_t].to(torch.float32)                      # [T, cbs, N, D]
    w = inputs["weight"].to(torch.float32)                                     # [cbs, N]
    acc = tile_tree_sum(win * w[None, :, :, None])
    slots = inputs["slot_mapping"].to(torch.int64)[torch.as_tensor(tb, device=device)]
    cache[slots] = acc.to(cache.dtype)                                        # RNE, like CAST_RINT
    return {"cache": cache}


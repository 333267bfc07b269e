"""Time and peak memory of the incre_flash_attention numpy golden (and torch reference) at long S,
and the golden against torch's scaled_dot_product_attention in float32 on one thread, same shape.

    python bench/ifa_golden.py [--seq 262144] [--dims 128,512] [--batch 1] [--heads 1] [--repeat 3]
    python bench/ifa_golden.py --batch 8 --heads 32 --seq 8192 --dims 128 --no-torch   # issue 17's shape

Peak memory is the tracemalloc peak of the golden call (numpy reports its buffers to tracemalloc), next
to the size of the fp16 K/V inputs and of a full float64 upcast of them (what chunking avoids).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

import numpy as np  # noqa: E402

from backends.numpy import incre_flash_attention as gold  # noqa: E402
from harness.memory import keep_freed_memory  # noqa: E402
from cases.incre_flash_attention import SPEC  # noqa: E402


def one(seq: int, d: int, repeat: int, torch_too: bool, batch: int = 1, heads: int = 1) -> dict:
    case = SPEC.case(product="A2", layout="BNSD", dtype="float16", kv_dtype="float16", batch=batch, num_heads=heads, num_kv_heads=heads,
                     head_dim=d, kv_seq=seq, paged=False, actual_seq="none", mask_dtype="bool", mask_shape="B11S",
                     pse="BN1S", quant2="none", kv_padding=None)
    inputs = SPEC.make_inputs(case, 0)
    times = []
    peak = 0
    for i in range(repeat):
        if i == 0:
            tracemalloc.start()
        t0 = time.perf_counter()
        gold.golden(case.params, inputs)
        times.append(time.perf_counter() - t0)
        if i == 0:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    kv = 2 * np.asarray(inputs["key"]).nbytes
    row = {"B": batch, "N": heads, "S": seq, "D": d, "golden_s_min": min(times),
           "golden_s_median": float(np.median(times)), "peak_MiB": peak / 2**20, "kv_fp16_MiB": kv / 2**20,
           "kv_float64_MiB": 4 * kv / 2**20}
    row["sdpa_fp32_s_min"] = _sdpa(batch, heads, seq, d, repeat)
    row["golden_over_sdpa"] = row["golden_s_min"] / row["sdpa_fp32_s_min"]
    if torch_too:
        from backends.torch import to_torch
        from backends.torch.incre_flash_attention import reference

        tin = {k: to_torch(v, "cpu") for k, v in inputs.items()}
        t0 = time.perf_counter()
        reference(case.params, tin, "cpu")
        row["torch_cpu_s"] = time.perf_counter() - t0
    return row


def _sdpa(batch: int, heads: int, seq: int, d: int, repeat: int) -> float:
    """Fastest of `repeat` torch SDPA calls in float32 on one thread (q of one token, dense K/V)."""
    import torch

    torch.set_num_threads(1)
    q, k, v = torch.randn(batch, heads, 1, d), torch.randn(batch, heads, seq, d), torch.randn(batch, heads, seq, d)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    keep_freed_memory()    # as `python -m harness` runs: large temporaries are not faulted in page by page
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=262144)
    ap.add_argument("--dims", default="128,512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args(argv)
    for d in (int(x) for x in a.dims.split(",")):
        r = one(a.seq, d, a.repeat, not a.no_torch, a.batch, a.heads)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the numpy float64 golden of nsa_selected_attention_grad on a long-sequence case.

    python bench/nsa_grad_golden.py                       # T1 = T2 = 8192, N1 = 32, N2 = 2, bs 64, count 16
    python bench/nsa_grad_golden.py --t 2048 --repeat 3

Prints the input build time (float64 forward included), the golden's wall time per call, its
FLOP rate (five matmuls per selected key) and the machine's load average for context.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backends.numpy.nsa_selected_attention_grad import golden  # noqa: E402
from cases.nsa_selected_attention_grad import SPEC, cost  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", type=int, default=8192, help="T1 = T2 (one batch)")
    ap.add_argument("--n1", type=int, default=32)
    ap.add_argument("--n2", type=int, default=2)
    ap.add_argument("--d-qk", type=int, default=192)
    ap.add_argument("--d-v", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--block-count", type=int, default=16)
    ap.add_argument("--sparse-mode", type=int, default=2, choices=(0, 2))
    ap.add_argument("--dtype", default="bfloat16", choices=("float16", "bfloat16"))
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args(argv)
    case = SPEC.case(q_lens=[a.t], kv_lens=[a.t], n1=a.n1, n2=a.n2, d_qk=a.d_qk, d_v=a.d_v,
                     select_block_size=a.block_size, select_block_count=a.block_count,
                     sparse_mode=a.sparse_mode, topk_mode="nsa" if a.sparse_mode == 2 else "random",
                     dtype=a.dtype)
    t0 = time.perf_counter()
    inputs = SPEC.make_inputs(case, seed=0)
    build = time.perf_counter() - t0
    _, flops = cost(case.params)
    print(f"case: {case.id}")
    print(f"inputs built in {build:.2f} s (float64 forward included)")
    for i in range(a.repeat):
        t0 = time.perf_counter()
        out = golden(case.params, inputs)
        dt = time.perf_counter() - t0
        print(f"golden call {i}: {dt:.2f} s, {flops / dt / 1e9:.1f} GFLOP/s float64 "
              f"({flops / 1e9:.0f} GFLOP), dq {out['dq'].shape}, dk {out['dk'].shape}, dv {out['dv'].shape}")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, cpus: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

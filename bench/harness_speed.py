"""The framework's own speed (a benchmark that prints figures; never a test).

    .tox/test/bin/python bench/harness_speed.py [--ops a,b] [--sections 1,2,3,4,5] [--golden-store DIR]
                                                [--repeat N]                    (section 2)
                                                [--tier nightly --largest N]   (sections 3 and 4)

1. smoke-tier wall time per registered op on numpy+torch (timing on, as `run` does);
2. harness overhead per case: wall time minus the time spent inside backend calls, timing off
   (with --golden-store, also through a warm store: inputs, goldens and baselines read back),
   over every smoke case;
3. the numpy golden of each memory-bound op (FLOPs per byte < 1) against a memcpy of the bytes
   its `cost()` says it moves (and the floor under any float64 golden: widening those bytes, read as
   float16, to float64), on its cases of --tier (default smoke; --largest N: the N largest by
   bytes, as the issue's targets are stated for the largest nightly cases);
4. the numpy golden of each attention op against torch's scaled_dot_product_attention in float32
   on the same (batch, heads, query length, kv length, head dim), where the case params name them;
   NSA selected attention grad against SDPA forward + backward on each query's selected keys
   (same --tier / --largest);
5. the harness CPU timer (median of `measure`, nightly protocol) against
   torch.utils.benchmark.Timer.blocked_autorange on the same callables.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import golden_store, registry  # noqa: E402  (before numpy: it sets numpy's BLAS threads as the CLI runs them)

import numpy as np  # noqa: E402
from harness.results import RunWriter  # noqa: E402
from harness.runner import run_case  # noqa: E402
from harness.timing import TIER_TIMING, HostTimer, TimingConfig, measure  # noqa: E402
from harness.memory import keep_freed_memory  # noqa: E402


def _median_time(fn, reps=7) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def smoke_wall(specs):
    print("1. smoke tier, numpy+torch, timing on (wall seconds per op)")
    backends = [registry.backend("numpy"), registry.backend("torch")]
    total = 0.0
    for spec in specs:
        try:
            cases = spec.cases("smoke")
        except Exception as exc:
            print(f"   {spec.name:<32} cases cannot be derived: {type(exc).__name__}: {exc}"[:160])
            continue
        t0 = time.perf_counter()
        for c in cases:
            run_case(spec, c, backends, "smoke", 0)
        dt = time.perf_counter() - t0
        total += dt
        print(f"   {spec.name:<32} {len(cases):>4} cases  {dt:7.2f} s")
    print(f"   {'all ops':<32} {'':>10} {total:7.2f} s")


class _Clock:
    """Accumulates time spent inside wrapped backend methods."""

    def __init__(self):
        self.inside = 0.0
        self.depth = 0

    def wrap(self, obj, name):
        fn = getattr(obj, name)

        def timed(*a, **k):
            if self.depth:
                return fn(*a, **k)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.inside += time.perf_counter() - t0
                self.depth -= 1

        setattr(obj, name, timed)


def overhead(specs, store_dir=None, repeat=1):
    if store_dir:
        # a run with a golden store, as `run --golden-store` on an NPU node: a first pass fills it
        # (inputs, goldens, baselines; untimed), the measured pass reads them
        os.environ[golden_store.ENV] = str(store_dir)
        golden_store._env_stores[str(store_dir)] = golden_store.GoldenStore(store_dir)
        _loop(specs, [registry.backend("numpy"), registry.backend("torch")])
        golden_store._env_stores[str(store_dir)] = golden_store.GoldenStore(store_dir)   # fresh counts
    where = f"warm golden store {store_dir}" if store_dir else "no golden store"
    print(f"2. harness overhead per case (timing off, {where}; wall minus time inside backend "
          "prepare/launch/fetch/golden)")
    clock = _Clock()
    backends = [registry.backend("numpy"), registry.backend("torch")]
    for b in backends:
        for m in ("prepare", "launch", "fetch", "synchronize", "golden"):
            if hasattr(b, m):
                clock.wrap(b, m)
    off = TimingConfig(enabled=False)
    # one-time costs are not per-case overhead: derive the matrix and import the backends' libraries
    # (available() imports torch, ~2 s) before the clock starts
    plan = []
    for spec in specs:
        try:
            plan += [(spec, c) for c in spec.cases("smoke")]
        except Exception:
            continue
    for b in backends:
        b.available()
    per_case = []
    for rep in range(repeat):        # this host's figures vary by +-15% run to run: --repeat shows the spread
        clock.inside = 0.0
        # fresh Case objects each pass, as a run has: what a case memoizes (its params' JSON) is paid again
        cases = [(spec, dataclasses.replace(c)) for spec, c in plan]
        with tempfile.TemporaryDirectory(prefix="opdiff-bench-rows-") as tmp:
            # rows are written as `run` writes them (JSONL, flushed per case): writing is harness time too
            writer = RunWriter(Path(tmp) / "run", {"command": ["bench/harness_speed.py"], "tier": "smoke", "seed": 0})
            t0 = time.perf_counter()
            for spec, c in cases:
                res = run_case(spec, c, backends, "smoke", 0, off)
                writer.append(res.rows, res.samples)
            wall = time.perf_counter() - t0
            writer.finish({})
        n = len(plan)
        per_case.append(1e3 * (wall - clock.inside) / max(n, 1))
        print(f"   {n} cases x 2 backends: wall {wall:.2f} s, inside backends {clock.inside:.2f} s, "
              f"harness {per_case[-1]:.2f} ms per case (input building, comparison, result rows, writing them)")
    if repeat > 1:
        print(f"   over {repeat} passes: median {np.median(per_case):.2f} ms per case, "
              f"range {min(per_case):.2f}-{max(per_case):.2f}")
    for b in backends:  # undo the wrappers (instances are cached by the registry)
        for m in ("prepare", "launch", "fetch", "synchronize", "golden"):
            b.__dict__.pop(m, None)
    if store_dir:
        s = golden_store.from_env().summary()
        print(f"   store: {s['hit']} hits, {s['miss']} misses, {s['unstorable']} unstorable")
        os.environ.pop(golden_store.ENV, None)


def _loop(specs, backends):
    off = TimingConfig(enabled=False)
    for spec in specs:
        for c in spec.cases("smoke"):
            run_case(spec, c, backends, "smoke", 0, off)


def _cases(spec, tier, largest):
    """Positive cases of `tier`; with `largest`, the N that move the most bytes (spec.cost)."""
    cases = [c for c in spec.cases(tier) if not c.negative]
    if largest and spec.cost is not None:
        cases = sorted(cases, key=lambda c: -spec.cost(c.params)[0])[:largest]
    return cases


def _which(tier, largest) -> str:
    return f"{tier} cases" + (f", the {largest} largest by bytes" if largest else "")


def golden_vs_memcpy(specs, tier="smoke", largest=0):
    print(f"3. numpy golden of memory-bound ops vs memcpy of the bytes they move ({_which(tier, largest)}, medians)")
    numpy_b = registry.backend("numpy")
    for spec in specs:
        if spec.cost is None:
            continue
        try:
            cases = _cases(spec, tier, largest)
        except Exception:
            continue
        ratios, gold_gbps, sizes, compute_bound, failed, out_ratios, floors = [], [], [], 0, 0, [], []
        for c in cases:
            nbytes, flops = spec.cost(c.params)
            if not nbytes or flops / nbytes >= 1.0:
                compute_bound += 1
                continue
            inputs = spec.make_inputs(c, 0)
            try:
                g = _median_time(lambda: numpy_b.golden(spec, c, inputs), 5 if nbytes < 1e8 else 3)
            except Exception as exc:
                print(f"   {spec.name}/{c.id}: golden failed ({type(exc).__name__}: {exc}); not timed")
                failed += 1
                continue
            m = _copy_time(nbytes / 2)       # cost counts read + write; a copy of half reads and writes it
            ratios.append(g / m)
            floors.append(_widen_time(nbytes / 2) / m)
            # a golden returns its result out of place: an op that updates a cache in place (its cost:
            # the rows it writes) has a golden that writes the whole cache; a copy of what the golden
            # returns is the least any golden does
            out_bytes = sum(np.asarray(v).nbytes for v in numpy_b.golden(spec, c, inputs).values())
            out_ratios.append(g / max(m, _copy_time(out_bytes)))
            gold_gbps.append(nbytes / g / 1e9)
            sizes.append(nbytes)
        if ratios:
            print(f"   {spec.name:<32} {len(ratios):>3} cases: golden / memcpy median {np.median(ratios):8.1f}x "
                  f"(range {min(ratios):.1f}-{max(ratios):.1f}), golden {np.median(gold_gbps):.2f} GB/s; "
                  f"largest {max(sizes) / 2**20:.0f} MiB moved: {ratios[int(np.argmax(sizes))]:.1f}x; "
                  f"against a copy of what the golden returns (where larger): median {np.median(out_ratios):.1f}x, "
                  f"largest {out_ratios[int(np.argmax(sizes))]:.1f}x; a float64 golden's floor (widening the "
                  f"moved bytes, as float16, to float64, nothing else): largest {floors[int(np.argmax(sizes))]:.1f}x"
                  + (f"; {compute_bound} compute-bound case(s) left out" if compute_bound else "")
                  + (f"; {failed} failed" if failed else ""))
        else:
            print(f"   {spec.name:<32} not memory-bound (FLOPs per byte >= 1) or no runnable case")


def _widen_time(nbytes: float) -> float:
    """Median seconds of converting nbytes of float16 to float64 (harness.half.widen, the goldens' own
    conversion): the least a float64 golden does with the 16-bit elements it reads, before any arithmetic."""
    from harness.half import widen

    src = np.ones(max(1, int(nbytes) // 2), np.float16)
    return _median_time(lambda: widen(src), 9)


def _copy_time(nbytes: float) -> float:
    """Median seconds of np.copyto over nbytes (one read and one write of them)."""
    src = np.ones(max(1, int(nbytes)), np.uint8)
    dst = np.empty_like(src)
    return _median_time(lambda: np.copyto(dst, src), 9)


SHAPE_KEYS = {"batch": ("batch", "B"), "heads": ("num_heads", "n1", "N"), "kv_heads": ("num_kv_heads", "n2"),
              "dim": ("head_dim", "d_qk", "D"), "kv": ("kv_seq", "max_context", "S"), "q": ("q_seq", "q_len")}


def _shape(params):
    out = {}
    for k, names in SHAPE_KEYS.items():
        out[k] = next((params[n] for n in names if isinstance(params.get(n), int)), None)
    return out


def golden_vs_sdpa(specs, tier="smoke", largest=0):
    import torch

    torch.set_num_threads(1)  # 2 intra-op threads on a loaded 2-core host wait ~20 ms per barrier (see notes)
    print(f"4. numpy golden of attention ops vs torch SDPA float32, 1 thread, same B, N, Sq, Skv, D "
          f"({_which(tier, largest)})")
    numpy_b = registry.backend("numpy")
    for spec in specs:
        if "attention" not in spec.name:
            continue
        ratios, skipped, shapes = [], 0, []
        try:
            cases = _cases(spec, tier, largest)
        except Exception:
            continue
        for c in cases:
            if "select_block_size" in c.params:          # NSA selected attention backward
                timed = _nsa_grad_vs_sdpa(spec, c, numpy_b)
                if timed is None:
                    skipped += 1
                else:
                    ratios.append(timed[2] / timed[3])
                    shapes.append(timed)
                continue
            s = _shape(c.params)
            if None in (s["batch"], s["heads"], s["dim"], s["kv"]):
                skipped += 1
                continue
            sq = s["q"] or 1
            nkv = s["kv_heads"] or s["heads"]
            q = torch.randn(s["batch"], s["heads"], sq, s["dim"])
            k = torch.randn(s["batch"], nkv, s["kv"], s["dim"])
            v = torch.randn(s["batch"], nkv, s["kv"], s["dim"])
            inputs = spec.make_inputs(c, 0)
            try:
                g = _median_time(lambda: numpy_b.golden(spec, c, inputs), 5)
            except Exception:
                skipped += 1
                continue
            gqa = nkv != s["heads"]
            t = _median_time(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa), 9)
            ratios.append(g / t)
            shapes.append((s["batch"] * s["heads"] * sq * s["kv"] * s["dim"], f"B={s['batch']} N={s['heads']} "
                           f"Sq={sq} S={s['kv']} D={s['dim']}", g, t))
        if ratios:
            big = max(shapes)
            print(f"   {spec.name:<32} {len(ratios):>3} cases: golden / SDPA median {np.median(ratios):7.1f}x "
                  f"(range {min(ratios):.1f}-{max(ratios):.1f})" + (f"; {skipped} cases without a mapping" if skipped else "")
                  + f"; largest {big[1]}: golden {big[2] * 1e3:.1f} ms, SDPA {big[3] * 1e3:.1f} ms, {big[2] / big[3]:.2f}x")
        else:
            print(f"   {spec.name:<32} n/a: params do not name batch/heads/seq/dim (e.g. TND with per-sequence lengths)")


def _nsa_grad_vs_sdpa(spec, case, numpy_b):
    """(size, text, golden s, SDPA s) for NSA selected attention grad: its golden (a backward that
    recomputes P) against SDPA forward + backward in float32 on the same attention problem: each of
    the T1 query tokens over its L = block size x block count selected keys, N1 query heads on N2 kv
    heads (the selected keys gathered per token, [T1, N2, L, D]), or a copy of the gradients it
    returns where that takes longer; None where the gathered keys do not fit in 1 GB."""
    import torch

    p = case.params
    t1, n1, n2 = sum(p["q_lens"]), p["n1"], p["n2"]
    length, dqk, dv = p["select_block_size"] * p["select_block_count"], p["d_qk"], p["d_v"]
    if 4 * t1 * n2 * length * (dqk + dv) * 3 > 1e9:    # K, V, their grads and SDPA's temporaries
        return None
    inputs = spec.make_inputs(case, 0)
    last: dict = {}
    g = _median_time(lambda: last.update(golden=numpy_b.golden(spec, case, inputs)), 5)
    q = torch.randn(t1, n1, 1, dqk, requires_grad=True)
    k = torch.randn(t1, n2, length, dqk, requires_grad=True)
    v = torch.randn(t1, n2, length, dv, requires_grad=True)
    d_out = torch.randn(t1, n1, 1, dv)

    def fwd_bwd():
        q.grad = k.grad = v.grad = None      # each pass writes its gradients, as the golden does (no accumulation)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=n1 != n2)
        out.backward(d_out)

    t = _median_time(fwd_bwd, 9)
    # dk and dv span all T2 keys, selected or not: a case of 8 queries over 131072 keys returns 268 MB of
    # float64 gradients that SDPA on the selected keys never writes; a copy of them is the least it costs
    out_bytes = sum(np.asarray(a).nbytes for a in last["golden"].values())
    t = max(t, _copy_time(out_bytes))
    return (t1 * n1 * length * (dqk + dv), f"T1={t1} N1={n1} N2={n2} L={length} D={dqk}/{dv} (fwd+bwd, or a "
            f"copy of the {out_bytes / 2**20:.0f} MiB of gradients where that is more)", g, t)


def timer_vs_blocked_autorange():
    import torch
    from torch.utils.benchmark import Timer

    torch.set_num_threads(1)  # blocked_autorange runs with num_threads=1; time both the same way
    print("5. harness CPU timer (median, nightly protocol) vs torch.utils.benchmark blocked_autorange (median), 1 thread")
    a = torch.randn(1 << 20)
    b = torch.randn(1 << 20)
    x = np.random.default_rng(0).standard_normal((256, 256))
    callables = {
        "torch.add 1M fp32": lambda: torch.add(a, b),
        "numpy 256x256 matmul": lambda: x @ x,
        "numpy sum 64K": lambda: x[:, :256].sum(),
    }
    for name, fn in callables.items():
        ours = float(np.median(measure(HostTimer(), fn, TIER_TIMING["nightly"])))
        theirs = Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.5).median * 1e6
        print(f"   {name:<24} harness {ours:9.2f} us   blocked_autorange {theirs:9.2f} us   ratio {ours / theirs:5.2f}")


def main():
    keep_freed_memory()  # as `python -m harness` runs (harness/memory.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="all")
    ap.add_argument("--sections", default="1,2,3,4,5", help="which figures to print (comma list)")
    ap.add_argument("--golden-store", metavar="DIR", help="section 2 also with a warm store in DIR (filled first)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="section 2: measured passes (median, range)")
    ap.add_argument("--tier", default="smoke", help="sections 3 and 4: the tier whose cases are timed")
    ap.add_argument("--largest", type=int, default=0, metavar="N",
                    help="sections 3 and 4: only each op's N largest cases by bytes moved")
    args = ap.parse_args()
    want = {int(x) for x in args.sections.split(",")}
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
    names = registry.parse_names(args.ops, "op", registry.op_names())
    specs = [registry.op(n) for n in names]
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; ops: {', '.join(names)}")
    steps = {
        1: smoke_wall,
        2: lambda sp: [overhead(sp, None, args.repeat)]
        + ([overhead(sp, args.golden_store, args.repeat)] if args.golden_store else []),
        3: lambda sp: golden_vs_memcpy(sp, args.tier, args.largest),
        4: lambda sp: golden_vs_sdpa(sp, args.tier, args.largest),
        5: lambda _: timer_vs_blocked_autorange(),
    }
    for k in sorted(want):
        steps[k](specs)


if __name__ == "__main__":
    main()

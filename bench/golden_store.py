"""Nightly wall time with a cold and a warm golden store, and the share of it spent in goldens
(a benchmark that prints figures; never a test).

    .tox/test/bin/python bench/golden_store.py [--tier nightly] [--ops a,b] [--jobs N] [--backends standin]

On an NPU node a kernel takes microseconds; what is left of a nightly run is the host: inputs, the
float64 golden, the same-precision baseline, comparison, rows. No NPU here, so the device under
test is a stand-in that costs what a fast device costs the host: it returns the golden rounded to
the output dtype, read from a separate store built beforehand (`golden build`, then rounded to the
output dtypes; untimed apart from its own figure), so that reading its outputs in their own dtype
(what a device-to-host copy moves) is the only device cost. `--backends numpy,torch`
times the CPU references instead (they recompute what they test, so a store helps them less).

Steps: (0) `golden build` of the device stand-in's store over --jobs processes (prints its wall);
(1) the run with an empty store (cold: goldens and baselines computed and written);
(2) the same run again (warm: read and verified). Each run is the `run` loop in-process, rows
written to a run directory, timing off (latency sampling is the same with or without a store).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

from backends.base import Availability, Backend  # noqa: E402
from harness import golden_build, golden_store, registry, runner  # noqa: E402
from harness.dtypes import bits, cast, np_dtype  # noqa: E402
from harness.errors import Rejected  # noqa: E402
from harness.results import RunWriter  # noqa: E402
from harness.memory import keep_freed_memory  # noqa: E402
from harness.timing import TimingConfig  # noqa: E402


def device_outputs(plan, seed: int, goldens: golden_store.GoldenStore, folder: Path) -> int:
    """Write what the stand-in returns into `folder`: each golden of `goldens` rounded to its output
    dtype, as a device hands its outputs back (untimed: the device computed them), one raw .npy file
    per output (its bits; the dtype name in the file name). Returns the number of cases written."""
    n = 0
    for spec, case in plan:
        if case.negative:
            continue
        key = golden_store.golden_key(spec, case, seed)
        gold = goldens.get(key)
        if gold is None:
            continue
        dtypes = spec.output_dtypes(case.params)
        where = folder / key.digest
        where.mkdir(parents=True, exist_ok=True)
        for name, value in gold.items():
            if name in dtypes:
                np.save(where / f"{name}.{dtypes[name]}.npy", bits(cast(value, dtypes[name])), allow_pickle=False)
        n += 1
    return n


class StandInDevice(Backend):
    """A device that costs the host only the copy of its outputs (see the module docstring): np.load
    of raw arrays, no checksum, as a device-to-host copy has none."""

    name = "standin"

    def __init__(self, folder: Path, seed: int):
        self.folder, self.seed = folder, seed

    def available(self):
        return Availability(True)

    def prepare(self, spec, case, inputs):
        if case.negative:    # a device refuses what the documented constraints exclude (its rows: rejected)
            raise Rejected(f"stand-in device: the case breaks {case.violates!r}")
        return {"spec": spec, "case": case, "out": None}

    def launch(self, prepared):
        spec, case = prepared["spec"], prepared["case"]
        where = self.folder / golden_store.golden_key(spec, case, self.seed).digest
        if not where.is_dir():
            raise RuntimeError(f"stand-in device has no outputs for {spec.name}/{case.id}")
        out = {}
        for f in where.glob("*.npy"):
            name, dtype = f.name[: -len(".npy")].rsplit(".", 1)
            out[name] = np.load(f, allow_pickle=False).view(np_dtype(dtype))
        prepared["out"] = out

    def fetch(self, prepared):
        return prepared["out"]


class GoldenClock:
    """Seconds spent in golden_store.through (computing or reading references), per source."""

    def __init__(self):
        self.computed = self.read = 0.0
        self._orig = golden_store.through

    def __enter__(self):
        def timed(*a, **k):
            t0 = time.perf_counter()
            out, source = self._orig(*a, **k)
            dt = time.perf_counter() - t0
            if source == "store":
                self.read += dt
            else:
                self.computed += dt
            return out, source

        golden_store.through = timed
        return self

    def __exit__(self, *exc):
        golden_store.through = self._orig


def one_run(plan, backends, tier, seed, store_dir, out_dir):
    store = golden_store.GoldenStore(store_dir)
    off = TimingConfig(enabled=False)
    writer = RunWriter(out_dir, {"command": ["bench/golden_store.py"], "tier": tier, "seed": seed})
    not_ok = 0
    with GoldenClock() as clock:
        t0 = time.perf_counter()
        for spec, case in plan:
            res = _run_case(spec, case, backends, tier, seed, off, store)
            writer.append(res.rows, res.samples)
            not_ok += not res.ok
        wall = time.perf_counter() - t0
    writer.finish({"golden_store": store.summary()})
    return wall, clock, store.summary(), not_ok


def _run_case(spec, case, backends, tier, seed, timing, store):
    # run_case with an explicit store: References reads OPDIFF_GOLDEN_STORE, so name it per run
    os.environ[golden_store.ENV] = str(store.root)
    golden_store._env_stores[str(store.root)] = store
    return runner.run_case(spec, case, backends, tier, seed, timing)


def main():
    keep_freed_memory()  # as `python -m harness` runs (harness/memory.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="nightly")
    ap.add_argument("--ops", default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the stand-in's store")
    ap.add_argument("--backends", default="standin", help="standin (default) or registry backends, e.g. numpy,torch")
    ap.add_argument("--work", help="scratch directory (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    names = registry.parse_names(args.ops, "op", registry.op_names())
    specs = [registry.op(n) for n in names]
    plan = [(s, c) for s in specs for c in s.cases(args.tier)]
    tmp = tempfile.TemporaryDirectory(prefix="opdiff-bench-store-") if not args.work else None
    work = Path(args.work or tmp.name)
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; tier {args.tier}; "
          f"{len(plan)} cases ({sum(not c.negative for _, c in plan)} positive); ops: {', '.join(names)}")
    if args.backends == "standin":
        t0 = time.perf_counter()
        tail = ["--store", str(work / "device"), "--tier", args.tier, "--ops", ",".join(names),
                "--seed", str(args.seed)]
        built = golden_build.build_parallel(tail, args.jobs) if args.jobs > 1 else golden_build.build(
            specs, args.tier, args.seed, golden_store.GoldenStore(work / "device"))
        print(f"0. golden build of the stand-in device's store, {args.jobs} process(es): "
              f"{time.perf_counter() - t0:.1f} s, {built['cases']} cases, {len(built['failures'])} failed")
        made = device_outputs(plan, args.seed, golden_store.GoldenStore(work / "device"), work / "device-out")
        print(f"   its outputs rounded to their dtypes, as a device returns them: {made} cases")
        backends = [StandInDevice(work / "device-out", args.seed)]
    else:
        backends = [registry.backend(n) for n in registry.parse_names(args.backends, "backend",
                                                                      registry.backend_names(), allow_options=True)]
    golden_store.versions(True)  # imports torch (~2 s, once per process): paid before both runs, not by the first
    walls = {}
    for i, label in ((1, "cold"), (2, "warm")):
        wall, clock, summary, not_ok = one_run(plan, backends, args.tier, args.seed, work / "store",
                                               work / f"run-{label}")
        walls[label] = wall
        print(f"{i}. {label} store: wall {wall:8.2f} s; references computed {clock.computed:8.2f} s "
              f"({100 * clock.computed / wall:4.1f}%), read from the store {clock.read:6.2f} s "
              f"({100 * clock.read / wall:4.1f}%); store hits {summary['hit']}, misses {summary['miss']}, "
              f"written {summary['write']}, bad {summary['corrupt'] + summary['stale']}; "
              f"{not_ok} case(s) not as expected")
    size = sum(p.stat().st_size for p in golden_store.entries(work / "store"))
    print(f"warm / cold wall: {walls['warm'] / walls['cold']:.3f} ({walls['warm']:.2f} s / {walls['cold']:.2f} s); "
          f"store {len(golden_store.entries(work / 'store'))} entries, {size / 2**20:.0f} MiB")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

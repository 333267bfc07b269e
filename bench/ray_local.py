"""`run --engine ray` on a local Ray cluster of 2 CPUs and 2 fake NPUs, against one process (prints figures).

    .tox/test/bin/python bench/ray_local.py [--ops paged_cache_load] [--case 'edge-*'] [--tier smoke]

1. the same selection through one process and through Ray (tasks requesting NPU=1): wall times and
   whether the rows are the same (case, backend, output, verdict, reason, errors);
2. a worker killed mid-run (the test fault backend segfaults the Ray worker on one case, --no-isolate):
   rows per case, crash rows, and whether every other row equals the one-process run.
Needs the `ray` extra.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import registry  # noqa: E402
from harness.cli import main as cli  # noqa: E402


def _rows(d):
    return [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()]


def _key(r):
    return (r["case_id"], r["backend"], r["output"], r["verdict"], r["reason"], r["max_abs_err"], r["mismatch_count"])


def _run(argv):
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli(argv)
    return rc, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="paged_cache_load")
    ap.add_argument("--case", default="edge-*")
    ap.add_argument("--tier", default="smoke")
    args = ap.parse_args()
    import ray

    from tests.fault_backend import register

    register()
    spec = registry.op(args.ops.split(",")[0])
    import fnmatch

    victim = next(c.id for c in spec.cases(args.tier) if fnmatch.fnmatchcase(c.id, args.case) and not c.negative)
    os.environ["OPDIFF_FAULTS"] = f"segfault={victim}"  # workers inherit the environment of ray.init
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, resources={"NPU": 2}, include_dashboard=False, log_to_driver=False)
    print(f"local Ray cluster (2 CPUs, 2 fake NPUs) up in {time.perf_counter() - t0:.1f} s; "
          f"host load average {os.getloadavg()[0]:.1f}")
    sel = ["--ops", args.ops, "--case", args.case, "--tier", args.tier, "--no-timing"]
    with tempfile.TemporaryDirectory(prefix="opdiff-bench-ray-") as tmp:
        rc1, w1 = _run(["run", *sel, "--out", f"{tmp}/local"])
        rc2, w2 = _run(["run", *sel, "--engine", "ray", "--ray-resource", "NPU=1", "--out", f"{tmp}/ray"])
        a, b = _rows(f"{tmp}/local"), _rows(f"{tmp}/ray")
        same = sorted(map(_key, a)) == sorted(map(_key, b))
        eng = json.loads(Path(f"{tmp}/ray/run.json").read_text())["engine"]
        print(f"1. numpy,torch: one process {w1:.1f} s (exit {rc1}), ray {w2:.1f} s (exit {rc2}, {eng['chunks']} chunks); "
              f"{len(a)} vs {len(b)} rows; same rows: {same}")
        faulty = [*sel, "--backends", "numpy,fault", "--no-isolate"]
        rc3, w3 = _run(["run", *faulty, "--engine", "ray", "--ray-resource", "NPU=1", "--out", f"{tmp}/kill"])
        os.environ["OPDIFF_FAULTS"] = ""
        rc4, _ = _run(["run", *faulty, "--out", f"{tmp}/kill-local"])
        k, ref = _rows(f"{tmp}/kill"), _rows(f"{tmp}/kill-local")
        per_case = Counter(r["case_id"] for r in k)
        crashed = sorted({r["case_id"] for r in k if r["verdict"] == "crash"})
        others_same = (sorted(_key(r) for r in k if r["case_id"] not in crashed)
                       == sorted(_key(r) for r in ref if r["case_id"] not in crashed))
        eng = json.loads(Path(f"{tmp}/kill/run.json").read_text())["engine"]
        print(f"2. worker killed on {victim}: {len(per_case)} of {len(Counter(r['case_id'] for r in ref))} cases "
              f"have rows ({len(k)} rows, {len(ref)} in one process), crash rows for {crashed}, "
              f"{eng['resubmitted']} chunk remainder(s) resubmitted; every other row as one process: {others_same}")
    ray.shutdown()


if __name__ == "__main__":
    main()

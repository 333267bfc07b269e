"""`run --engine ray` (harness.distributed.ray_engine): on a local Ray cluster with 2 CPUs and 2 fake
NPUs the rows equal a single-process run; a worker that dies loses no row (its case becomes `crash`,
the rest of its chunk runs elsewhere); a worker with another environment is refused. The cluster
tests need Ray (the `ray` extra) and --runslow (a local cluster takes seconds to start)."""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness import registry
from harness.cli import main
from harness.distributed import ray_engine
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SELECT = ["--ops", "paged_cache_load", "--case", "edge-*", "--no-timing"]
# the NZ case the fault backend segfaults on, looked up (case ids follow the derivation, never written here)
CRASH_CASE = next(c.id for c in registry.op("paged_cache_load").cases("smoke") if c.id.startswith("edge-nz_no_cumsum-1-"))


def test_resources_follow_the_backends_and_parse():
    assert ray_engine.parse_resources([], ["numpy", "torch"]) == {"num_cpus": 1.0}
    assert ray_engine.parse_resources([], ["numpy", "aclnn:1"]) == {"num_cpus": 0.0, "resources": {"NPU": 1.0}}
    assert ray_engine.parse_resources([], ["torch:cuda"]) == {"num_cpus": 0.0, "num_gpus": 1.0}
    assert ray_engine.parse_resources(["NPU=1", "CPU=2"], ["numpy"]) == {"num_cpus": 2.0, "resources": {"NPU": 1.0}}
    with pytest.raises(UsageError, match="NAME=AMOUNT"):
        ray_engine.parse_resources(["NPU"], ["numpy"])


def test_missing_ray_is_a_usage_error_naming_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError, match=r"\.\[ray\]"):
        ray_engine.import_ray()
    assert main(["run", *SELECT, "--engine", "ray", "--out", str(tmp_path / "r")]) == 2
    assert "needs Ray" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -c constraints.txt -e '.[ray]')")
    if ray.is_initialized():
        ray.shutdown()
    # workers inherit this environment: the fault backend's trigger and the checkout on sys.path
    old = {k: os.environ.get(k) for k in ("OPDIFF_FAULTS", "PYTHONPATH", "ASCEND_RT_VISIBLE_DEVICES")}
    # an xdist worker is pinned to one device (harness.pytest_support); Ray refuses to start 2 NPUs where
    # ASCEND_RT_VISIBLE_DEVICES names fewer, and sets it per task itself
    os.environ.pop("ASCEND_RT_VISIBLE_DEVICES", None)
    os.environ["OPDIFF_FAULTS"] = f"segfault={CRASH_CASE}"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old["PYTHONPATH"]) if p)
    ray.init(num_cpus=2, resources={"NPU": 2}, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _rows(d):
    return [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()]


def _key(r):
    return (r["case_id"], r["backend"], r["output"], r["verdict"], r["reason"], r["max_abs_err"], r["mismatch_count"])


@pytest.mark.slow
def test_ray_rows_equal_a_single_process_run(cluster, tmp_path, monkeypatch):
    from harness import golden_store

    monkeypatch.setenv(golden_store.ENV, "")  # restored afterwards: --golden-store sets it
    assert main(["run", *SELECT, "--out", str(tmp_path / "local")]) == 0
    ray_run = [*SELECT, "--engine", "ray", "--ray-resource", "NPU=1", "--golden-store", str(tmp_path / "store")]
    assert main(["run", *ray_run, "--out", str(tmp_path / "ray")]) == 0
    local, remote = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert len(local) == 80 and sorted(map(_key, remote)) == sorted(map(_key, local))
    # the workers filled the driver's golden store (a golden and the inputs per case, harness.input_store;
    # the judgements of the one case whose outputs are large enough to keep them, harness.judgements,
    # written by numpy and read by torch: the same bits); a second ray run reads every golden from it
    kinds = Counter(golden_store.entry_kind(e) for e in golden_store.entries(tmp_path / "store"))
    assert kinds == {"golden": 20, "inputs": 20, "judgement": 1}
    assert main(["run", *ray_run, "--out", str(tmp_path / "ray2")]) == 0
    assert {r["golden_source"] for r in _rows(tmp_path / "ray2")} == {"store"}
    assert sorted(map(_key, _rows(tmp_path / "ray2"))) == sorted(map(_key, local))
    meta = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert meta["engine"]["task_options"] == {"num_cpus": 0.0, "resources": {"NPU": 1.0}}
    assert meta["engine"]["chunks"] >= 2 and meta["engine"]["crashes"] == []
    done = [json.loads(line) for line in (tmp_path / "ray" / "done.jsonl").read_text().splitlines()]
    assert len(done) == 20  # every case flushed as done, as a local run does (what --resume reads)


@pytest.mark.slow
def test_a_worker_that_dies_loses_no_row(cluster, tmp_path):
    from tests.fault_backend import register

    register()
    args = [*SELECT, "--backends", "numpy,fault", "--no-isolate", "--ray-resource", "NPU=1"]
    assert main(["run", *args, "--engine", "ray", "--out", str(tmp_path / "ray")]) == 1
    remote = _rows(tmp_path / "ray")
    per_case = Counter(r["case_id"] for r in remote)
    assert len(per_case) == 20 and set(per_case.values()) == {4}  # 2 backends x 2 outputs, every case once
    crashed = {r["case_id"] for r in remote if r["verdict"] == "crash"}
    assert crashed == {CRASH_CASE}
    assert all("ray worker died" in r["reason"] for r in remote if r["verdict"] == "crash")
    meta = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert [c["case_id"] for c in meta["engine"]["crashes"]] == [CRASH_CASE]
    # every other row is what one process gives (the fault backend computes like numpy off its fault)
    os.environ["OPDIFF_FAULTS"] = ""
    try:
        assert main(["run", *args, "--out", str(tmp_path / "local")]) == 0
    finally:
        os.environ["OPDIFF_FAULTS"] = f"segfault={CRASH_CASE}"
    local = [r for r in _rows(tmp_path / "local") if r["case_id"] != CRASH_CASE]
    assert sorted(map(_key, local)) == sorted(_key(r) for r in remote if r["case_id"] != CRASH_CASE)


@pytest.mark.slow
def test_workers_with_another_environment_are_refused(cluster, tmp_path, monkeypatch):
    import harness.commands.run as run_cmd

    real = run_cmd.fingerprint
    monkeypatch.setattr(run_cmd, "fingerprint", lambda d=None: dict(real(d), opdiff_commit="0" * 40))
    assert main(["run", *SELECT, "--engine", "ray", "--ray-resource", "NPU=1", "--out", str(tmp_path / "r")]) == 1
    rows = _rows(tmp_path / "r")
    assert len(rows) == 80 and {r["verdict"] for r in rows} == {"error"}
    assert all("no ray worker with the driver's environment" in r["reason"] and "opdiff_commit" in r["reason"]
               for r in rows)
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert len(meta["engine"]["refusals"]) == meta["engine"]["chunks"] >= 3


def test_shard_auto_reads_the_slurm_array():
    from harness import shard

    env = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3",
           "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard.slurm_shard(env) == (1, 4)
    assert shard.slurm_shard(dict(env, SLURM_ARRAY_TASK_ID="3")) == (4, 4)
    one_based = dict(env, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_MIN="1", SLURM_ARRAY_TASK_MAX="4")
    assert shard.slurm_shard(one_based) == (2, 4)
    with pytest.raises(UsageError, match="do not number the shards"):
        shard.slurm_shard(dict(env, SLURM_ARRAY_TASK_MAX="6"))  # --array=0-6:2
    with pytest.raises(UsageError, match="SLURM_ARRAY_TASK_ID not set"):
        shard.slurm_shard({k: v for k, v in env.items() if k != "SLURM_ARRAY_TASK_ID"})


def test_shard_auto_on_the_command_line(monkeypatch, tmp_path):
    for k, v in {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "1",
                 "SLURM_ARRAY_TASK_COUNT": "2"}.items():
        monkeypatch.setenv(k, v)
    assert main(["run", *SELECT, "--backends", "numpy", "--shard", "auto", "--out", str(tmp_path / "r")]) == 0
    from harness import registry, shard

    spec = registry.op("paged_cache_load")
    plan = [(spec, c) for c in spec.cases("smoke") if c.id.startswith("edge-")]
    want = {c.id for _, c in shard.select(plan, 2, 2)}
    assert {r["case_id"] for r in _rows(tmp_path / "r")} == want and 0 < len(want) < 20

"""pytest-xdist survives a crashing worker (issue 16, case 1): the replacement worker gets a device
instead of an IndexError, the session completes, the crashed test is a `crash` row in the run
directory and run.json lists the crash; every other test keeps its rows."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness import registry
from harness.pytest_support import pin_device
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]
PICK = ("base", "edge-cache_dtype", "pw0")  # pw01.. run after the crash on pw00
BACKENDS = ("numpy", "fault")


def _expected_tests() -> set[tuple[str, str]]:
    """(case id, backend) of every test `-k "base or edge-cache_dtype or pw0"` selects."""
    spec = registry.op("paged_cache_load")
    out = set()
    for c in spec.cases("smoke"):
        for b in BACKENDS:
            name = f"{'test_negative_case_rejected' if c.negative else 'test_positive_case'}[{spec.name}-{c.id}-{b}]"
            if any(p in name.lower() for p in PICK):
                out.add((c.id, b))
    return out


def test_a_segfaulting_worker_costs_one_test_not_the_session(tmp_path):
    out = tmp_path / "d"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPDIFF_FAULTS="segfault=pw00-*")
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CI"):
        env.pop(v, None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fault_plugin",
                        "tests/test_matrix.py", "--ops", "paged_cache_load", "--backends", ",".join(BACKENDS),
                        "-k", " or ".join(PICK), "-n", "2", "--opdiff-out", str(out),
                        # in-process: the fault backend may crash, so by default an isolated worker would take
                        # the segfault (tests/test_pytest_engine.py); here it must take the xdist worker down
                        "--no-isolate"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = p.stdout + p.stderr
    assert p.returncode == 1, log  # one test failed (the crash), no INTERNALERROR (3)
    assert "INTERNALERROR" not in log and "node down: Not properly terminated" in log, log
    want = _expected_tests()
    crashed = {(c, b) for c, b in want if c.startswith("pw00-") and b == "fault"}
    assert len(crashed) == 1 and len(want) >= 10
    assert f"1 failed, {len(want) - 1} passed" in log, log
    meta, rows = load_run(out)
    assert meta["status"] == "finished" and meta["pytest_exitstatus"] == 1
    got = Counter((r["case_id"], r["backend"]) for r in rows)
    assert set(got) == want and set(got.values()) == {2}  # every test, each with its key and value rows
    crash_rows = [r for r in rows if r["verdict"] == "crash"]
    assert {(r["case_id"], r["backend"]) for r in crash_rows} == crashed and not any(r["ok"] for r in crash_rows)
    assert all("died while running this test" in r["reason"] for r in crash_rows)
    [crash] = meta["crashes"]
    assert "pw00-" in crash["nodeid"] and crash["rows"] == 2 and crash["worker"] in ("gw0", "gw1")
    workers = {w["worker"]: w for w in meta["workers"]}
    assert "gw2" in workers  # the replacement worker ran the dead one's remaining tests
    # it took the dead worker's device, not a third one, nor one still in use
    assert workers["gw2"]["device"] == {"gw0": "0", "gw1": "1"}[crash["worker"]]
    assert {r["verdict"] for r in rows if r["verdict"] != "crash"} <= {"pass", "rejected"}


class _Node:
    def __init__(self, wid):
        self.gateway = type("G", (), {"id": wid})()
        self.workerinput = {}


def test_replacement_workers_get_the_freed_device_else_round_robin():
    from harness.xdist_crash import DEVICE_KEY, Controller

    c = Controller(config=None, devices=["4", "6"], workers=2)
    nodes = [_Node("gw0"), _Node("gw1")]
    for n in nodes:
        c.pytest_configure_node(n)
    assert [n.workerinput[DEVICE_KEY] for n in nodes] == ["4", "6"]
    c.pytest_testnodedown(nodes[1], error="crashed")
    gw2 = _Node("gw2")
    c.pytest_configure_node(gw2)
    assert gw2.workerinput[DEVICE_KEY] == "6"  # the device gw1 left
    gw3 = _Node("gw3")
    c.pytest_configure_node(gw3)  # nothing freed: round robin over the pinned set
    assert gw3.workerinput[DEVICE_KEY] == "6"
    c.pytest_testnodedown(nodes[0], error=None)  # a worker ending normally frees nothing
    assert c.freed == []


class _Config:
    def __init__(self, wid, count, hint=None):
        self.workerinput = {"workerid": wid, "workercount": count, **({"opdiff_device": hint} if hint else {})}

    def getoption(self, name):
        return None


def test_pin_device_of_a_replacement_worker(monkeypatch):
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(v, raising=False)
    assert pin_device(_Config("gw2", 2)) == "0"  # was IndexError: devices[2] of 2
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(v)  # pinning set them; the next worker starts from a clean environment
    assert pin_device(_Config("gw5", 2, hint="1")) == "1"  # the controller's choice wins
    assert os.environ["ASCEND_RT_VISIBLE_DEVICES"] == os.environ["CUDA_VISIBLE_DEVICES"] == "1"


def test_crash_rows_never_duplicate_rows_the_worker_wrote():
    from harness.xdist_crash import matrix_id, merge_crash_rows

    assert matrix_id("tests/test_matrix.py::test_positive_case[op-pw00-x-fault]") == "op-pw00-x-fault"
    assert matrix_id("tests/test_x.py::test_plain") is None
    row = {"op": "op", "case_id": "c", "backend": "fault", "output": "key"}
    crashes = [{"nodeid": "n1", "worker": "gw0", "reason": "r", "rows": [dict(row), dict(row, output="value")]}]
    add, listed = merge_crash_rows([row], crashes)
    assert [r["output"] for r in add] == ["value"] and listed[0]["rows"] == 1

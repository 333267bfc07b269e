"""Isolation: a backend that segfaults, aborts, hangs, raises or returns garbage on chosen cases.
Each run completes, records the right verdict for the faulty case and keeps every other result."""
from __future__ import annotations

import json

import pytest

from harness import registry
from harness.cli import main
from harness.isolate import IsolatedRunner
from harness.results import load_run
from harness.timing import TimingConfig
from tests.fault_backend import ENV, FaultBackend, register

SPEC = registry.op("paged_cache_load")
BASE = next(c for c in SPEC.cases("smoke") if c.id.startswith("base-"))
EDGE0, EDGE1, EDGE2 = (next(c for c in SPEC.cases("smoke") if c.id.startswith(f"edge-cache_dtype-{i}-"))
                       for i in range(3))
PW00 = next(c for c in SPEC.cases("smoke") if c.id.startswith("pw00-"))
NEG = next(c for c in SPEC.cases("smoke") if c.id.startswith("neg-nz_no_cumsum-"))
PICK = [BASE, EDGE0, EDGE1, EDGE2, PW00, NEG]


@pytest.fixture(autouse=True)
def fault_backend():
    register()
    yield
    registry.unregister_backend("fault")


def _run(tmp_path, monkeypatch, faults, *extra):
    monkeypatch.setenv(ENV, faults)
    out = tmp_path / "run"
    args = ["run", "--ops", "paged_cache_load", "--backends", "numpy,fault", "--no-timing", "--out", str(out)]
    for c in PICK:
        args += ["--case", c.id]
    rc = main(args + list(extra))
    meta, rows = load_run(out)
    return rc, meta, {(r["case_id"], r["backend"]): r for r in rows}, rows


def test_every_fault_becomes_a_verdict_and_the_run_continues(tmp_path, monkeypatch):
    faults = f"segfault={BASE.id};hang={EDGE0.id};raise={EDGE1.id};garbage={PW00.id}"
    rc, meta, by, rows = _run(tmp_path, monkeypatch, faults, "--timeout", "4")
    assert rc == 1
    # --timeout puts every backend under the limit, so numpy is isolated too
    assert meta["status"] == "finished" and meta["isolated_backends"] == ["numpy", "fault"]
    crash = by[(BASE.id, "fault")]
    assert crash["verdict"] == "crash" and not crash["ok"]
    assert "SIGSEGV" in crash["reason"]
    assert f"--case {BASE.id}" in crash["repro"] and "--backends fault" in crash["repro"]
    to = by[(EDGE0.id, "fault")]
    assert to["verdict"] == "timeout" and "--timeout 4s" in to["reason"]
    err = by[(EDGE1.id, "fault")]
    assert err["verdict"] == "error" and "injected fault" in err["reason"]
    assert by[(PW00.id, "fault")]["verdict"] == "fail"
    # the worker was replaced after the crash and the timeout: later cases still ran and passed
    assert by[(EDGE2.id, "fault")]["verdict"] == "pass"
    assert by[(NEG.id, "fault")]["verdict"] == "rejected"
    # numpy (in-process) kept every result
    assert {by[(c.id, "numpy")]["verdict"] for c in PICK} == {"pass", "rejected"}
    assert {(r["case_id"], r["backend"]) for r in rows} == {(c.id, b) for c in PICK for b in ("numpy", "fault")}


def test_abort_is_a_crash_with_sigabrt(tmp_path, monkeypatch):
    rc, meta, by, _ = _run(tmp_path, monkeypatch, f"abort={EDGE2.id}")
    assert meta["isolated_backends"] == ["fault"]  # may_crash backends only, by default
    assert by[(EDGE2.id, "fault")]["verdict"] == "crash"
    assert "SIGABRT" in by[(EDGE2.id, "fault")]["reason"]
    assert by[(BASE.id, "fault")]["verdict"] == "pass"
    assert rc == 1


def test_no_isolate_runs_in_process_and_still_records_raise_and_garbage(tmp_path, monkeypatch):
    rc, meta, by, _ = _run(tmp_path, monkeypatch, f"raise={BASE.id};garbage={PW00.id}", "--no-isolate")
    assert meta["isolated_backends"] == []
    assert by[(BASE.id, "fault")]["verdict"] == "error"
    assert by[(PW00.id, "fault")]["verdict"] == "fail"
    assert by[(EDGE2.id, "fault")]["verdict"] == "pass"


def test_isolated_runner_replaces_the_worker(monkeypatch):
    monkeypatch.setenv(ENV, f"segfault={BASE.id}")
    with IsolatedRunner([FaultBackend()], "smoke", 0, TimingConfig(enabled=False), timeout=60) as pool:
        first = pool.run_case(SPEC, BASE)
        second = pool.run_case(SPEC, EDGE2)
        assert pool.crashes == 1 and pool.workers_started == 2
    assert {r["verdict"] for r in first.rows} == {"crash"}
    assert {r["verdict"] for r in second.rows} == {"pass"}
    json.dumps(second.rows)  # rows came back through the JSON protocol intact


@pytest.mark.slow  # the first timed case of a process pays the roofline probe (~4 s)
def test_timing_samples_come_back_from_the_worker(monkeypatch):
    monkeypatch.setenv(ENV, "")
    timing = TimingConfig(warmup_s=0.0, budget_s=0.005, min_samples=3, max_samples=5, warmup_calls=1)
    with IsolatedRunner([FaultBackend()], "smoke", 0, timing, timeout=60) as pool:
        res = pool.run_case(SPEC, BASE)
    assert {r["verdict"] for r in res.rows} == {"pass"}
    assert len(res.samples) >= 3 and all(s["latency_us"] > 0 for s in res.samples)
    assert all(r["n_samples"] >= 3 for r in res.rows)

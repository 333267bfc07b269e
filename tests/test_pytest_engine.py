"""One engine (issue 14): `python -m harness run` and the pytest matrix write the same run-directory
format and the same rows for the same selection; under pytest a backend that may crash runs in an
isolated worker, so a segfault is a `crash` row and one failed test, a hang past --opdiff-timeout a
`timeout` row, and the session finishes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from harness import registry
from harness.cli import main
from harness.compare import METRIC_KEYS
from harness.results import load_run
from harness.sink import PYTEST_KEYS, RUN_KEYS

ROOT = Path(__file__).resolve().parents[1]
SPEC = registry.op("paged_cache_load")
BASE = next(c for c in SPEC.cases("smoke") if c.id.startswith("base-"))
NEG = next(c for c in SPEC.cases("smoke") if c.id.startswith("neg-nz_no_cumsum-"))
EDGE0 = next(c for c in SPEC.cases("smoke") if c.id.startswith("edge-cache_dtype-0-"))
#: what a row says about its case, its verdict and its numbers (run_id, worker and timing differ by design)
ROW_KEYS = ("op", "case_id", "params", "negative", "violates", "backend", "output", "dtype", "verdict", "ok",
            "reason", "tier", "seed", "repro", "golden_source", "baseline_source", *METRIC_KEYS)


def _pytest(out, backends, cases, *extra, faults=""):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPDIFF_FAULTS=faults)
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CI"):
        env.pop(v, None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fault_plugin",
                           "tests/test_matrix.py", "--ops", SPEC.name, "--backends", backends,
                           "-k", " or ".join(c.id for c in cases), "--opdiff-out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _row(r) -> str:
    return json.dumps([r.get(k) for k in ROW_KEYS])  # text: NaN metrics compare equal


def test_cli_and_pytest_write_the_same_run_directory(tmp_path):
    # aclnn: unavailable without CANN, as on this machine (else its rows are real ones, on both sides alike)
    cli = tmp_path / "cli"
    args = ["run", "--ops", SPEC.name, "--backends", "numpy,torch,aclnn", "--no-timing", "--out", str(cli)]
    for c in (BASE, NEG):
        args += ["--case", c.id]
    assert main(args) == 0
    p = _pytest(tmp_path / "pt", "numpy,torch,aclnn", [BASE, NEG])
    assert p.returncode == 0, p.stdout + p.stderr
    aclnn_off = not registry.backend("aclnn").available()
    assert ("4 passed, 2 skipped" if aclnn_off else "6 passed") in p.stdout, p.stdout
    cli_meta, cli_rows = load_run(cli)
    pt_meta, pt_rows = load_run(tmp_path / "pt")
    assert set(cli_meta) == set(RUN_KEYS)
    assert set(pt_meta) == set(RUN_KEYS) | set(PYTEST_KEYS)
    assert (cli_meta["source"], pt_meta["source"]) == ("cli", "pytest")
    for k in ("ops", "backends", "tier", "seed", "availability", "isolated_backends", "timeout_s", "rows", "cases",
              "failed", "known_issues", "status", "plan_total"):
        assert pt_meta[k] == cli_meta[k], k
    assert set(pt_meta["plan_args"]) == set(cli_meta["plan_args"])
    assert pt_meta["env"]["devices"] == cli_meta["env"]["devices"]
    assert set(cli_meta["env"]["devices"]) == {"numpy", "torch", "aclnn"}
    assert cli_meta["rows"] == len(cli_rows) == 12  # 2 cases x 3 backends x key, value
    assert Counter(map(_row, pt_rows)) == Counter(map(_row, cli_rows))
    assert {r["verdict"] for r in pt_rows} == ({"pass", "rejected", "skipped"} if aclnn_off else {"pass", "rejected"})
    # a test collection skipped (backend unavailable) still has the rows `run` writes for it
    assert all(r["reason"].startswith("unavailable: ") for r in pt_rows if r["verdict"] == "skipped")
    names = sorted(p.name for p in cli.iterdir())
    assert sorted(p.name for p in (tmp_path / "pt").iterdir()) == names
    assert {"run.json", "results.jsonl", "samples.jsonl", "done.jsonl", "results.parquet"} <= set(names)


def test_a_segfault_under_pytest_is_a_crash_row_and_one_failed_test(tmp_path):
    out = tmp_path / "d"
    # two xdist workers: each runs its own isolated worker and writes its own part files
    p = _pytest(out, "numpy,fault", [BASE, EDGE0], "-n", "2", faults=f"segfault={BASE.id}")
    log = p.stdout + p.stderr
    assert p.returncode == 1 and "INTERNALERROR" not in log, log
    assert "1 failed, 3 passed" in log and "node down" not in log, log  # no xdist worker died
    assert "crash: worker process died with signal SIGSEGV" in log, log
    meta, rows = load_run(out)
    assert set(meta) == set(RUN_KEYS) | set(PYTEST_KEYS)
    assert meta["status"] == "finished" and meta["crashes"] == [] and meta["problems"] == []
    assert meta["isolated_backends"] == ["fault"] and meta["timeout_s"] == 600.0  # may_crash only, as `run`
    assert meta["availability"] == {"numpy": "available", "fault": "available"}
    assert meta["failed"] == 1 and meta["rows"] == len(rows) == 8
    by = Counter((r["case_id"], r["backend"], r["verdict"], r["ok"]) for r in rows)
    assert by == {(BASE.id, "fault", "crash", False): 2, (BASE.id, "numpy", "pass", True): 2,
                  (EDGE0.id, "fault", "pass", True): 2, (EDGE0.id, "numpy", "pass", True): 2}
    crash = next(r for r in rows if r["verdict"] == "crash")
    assert "SIGSEGV" in crash["reason"] and f"--case {BASE.id}" in crash["repro"]


def test_a_hang_past_the_timeout_is_a_timeout_row(tmp_path):
    out = tmp_path / "d"
    p = _pytest(out, "numpy,fault", [BASE, EDGE0], "--opdiff-timeout", "3", faults=f"hang={EDGE0.id}")
    log = p.stdout + p.stderr
    assert p.returncode == 1 and "1 failed, 3 passed" in log, log
    meta, rows = load_run(out)
    assert meta["isolated_backends"] == ["numpy", "fault"] and meta["timeout_s"] == 3.0  # a timeout isolates all
    assert meta["plan_args"]["timeout"] == 3.0
    hung = [r for r in rows if r["case_id"] == EDGE0.id and r["backend"] == "fault"]
    assert len(hung) == 2 and {r["verdict"] for r in hung} == {"timeout"} and not any(r["ok"] for r in hung)
    assert "no result within --timeout 3s" in hung[0]["reason"]
    # the worker was replaced: every other test ran and passed
    assert {r["verdict"] for r in rows if r not in hung} == {"pass"} and len(rows) == 8


def test_pytest_flags_that_contradict_are_usage_errors(tmp_path):
    p = _pytest(tmp_path / "d", "numpy", [BASE], "--no-isolate", "--opdiff-timeout", "3")
    assert p.returncode == 4 and "--opdiff-timeout needs isolated workers" in p.stdout + p.stderr
    p = _pytest(tmp_path / "e", "numpy", [BASE], "--isolate", "--no-isolate")
    assert p.returncode == 4 and "--isolate and --no-isolate contradict" in p.stdout + p.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_a_pytest_run_directory_is_not_resumed_as_a_cli_run(tmp_path, capsys):
    p = _pytest(tmp_path / "pt", "numpy", [BASE])
    assert p.returncode == 0, p.stdout + p.stderr
    assert main(["run", "--resume", str(tmp_path / "pt")]) == 2
    assert "written by a pytest session" in capsys.readouterr().err

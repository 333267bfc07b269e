"""Run directories: appended rows survive an interrupted run; corrupt files are reported."""
from __future__ import annotations

import json

import pytest

from harness.errors import UsageError
from harness.results import RunWriter, load_run, read_jsonl


def test_rows_survive_without_finish_and_consolidate_atomically(tmp_path):
    w = RunWriter(tmp_path, {"tier": "smoke"})
    w.append([{"op": "x", "case_id": "c1", "backend": "numpy", "verdict": "pass"}],
             [{"op": "x", "case_id": "c1", "backend": "numpy", "latency_us": 1.0}])
    # simulate a killed runner: no finish(); the JSONL already holds the row
    meta, rows = load_run(tmp_path)
    assert meta["status"] == "running" and [r["case_id"] for r in rows] == ["c1"]
    w.append([{"op": "x", "case_id": "c2", "backend": "numpy", "verdict": "fail"}])
    w.finish({"cases": 2})
    meta, rows = load_run(tmp_path)
    assert meta["status"] == "finished" and [r["case_id"] for r in rows] == ["c1", "c2"]
    assert rows[0]["run_id"] == meta["run_id"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_truncated_last_line_is_dropped_corrupt_middle_line_is_reported(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n" + '{"a": 2, "b"')
    assert read_jsonl(p) == [{"a": 1}]
    p.write_text('{"a": 1\n' + json.dumps({"a": 2}) + "\n")
    with pytest.raises(UsageError, match=r"results.jsonl:1: corrupt"):
        read_jsonl(p)


def test_load_run_names_the_problem(tmp_path):
    with pytest.raises(UsageError, match="no run.json"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupt run.json"):
        load_run(tmp_path)

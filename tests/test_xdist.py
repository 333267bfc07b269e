"""pytest-xdist: 2 workers, each pinned to its own device, write into one run directory; the rows
equal those of a single-process session and of a CLI run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UsageError
from harness.pytest_support import consolidate_parts, parse_devices, pin_device
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]
PICK = "base or edge-cache_dtype or neg-nz"


def _pytest(out, *extra, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CI"):
        e.pop(v, None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_matrix.py",
                           "--ops", "paged_cache_load", "--backends", "numpy", "-k", PICK, "--opdiff-out", str(out),
                           *extra], cwd=ROOT, env=e, capture_output=True, text=True, timeout=600)


def _key(r):
    return (r["op"], r["case_id"], r["backend"], r["output"], r["verdict"], r["ok"])


def test_two_workers_one_run_dir_same_rows_as_one_process(tmp_path):
    p = _pytest(tmp_path / "single")
    assert p.returncode == 0, p.stdout + p.stderr
    p = _pytest(tmp_path / "xdist", "-n", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    single_meta, single = load_run(tmp_path / "single")
    meta, rows = load_run(tmp_path / "xdist")
    assert len(single) >= 8 and Counter(map(_key, rows)) == Counter(map(_key, single))
    assert meta["status"] == "finished" and meta["problems"] == [] and meta["rows"] == len(rows)
    workers = {w["worker"]: w for w in meta["workers"]}
    assert set(workers) == {"gw0", "gw1"}
    for wid, dev in (("gw0", "0"), ("gw1", "1")):  # pinned before anything imported a runtime
        assert workers[wid]["device"] == dev
        assert workers[wid]["visible_devices"] == {"ASCEND_RT_VISIBLE_DEVICES": dev, "CUDA_VISIBLE_DEVICES": dev}
    assert sum(w["rows"] for w in workers.values()) == len(rows)
    assert {r["worker"] for r in rows} == {"gw0", "gw1"}  # the work really was split
    # and the CLI on the same cases gives the same verdicts
    cli = tmp_path / "cli"
    ids = sorted({r["case_id"] for r in single})
    args = ["run", "--ops", "paged_cache_load", "--backends", "numpy", "--no-timing", "--out", str(cli)]
    for i in ids:
        args += ["--case", i]
    assert main(args) == 0
    assert Counter(map(_key, load_run(cli)[1])) == Counter(map(_key, single))


class _Config:
    def __init__(self, wid, count, devices=None):
        self.workerinput = {"workerid": wid, "workercount": count}
        self._devices = devices

    def getoption(self, name):
        assert name == "--opdiff-devices"
        return self._devices


def test_devices_from_the_visible_devices_variable(monkeypatch):
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,6")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pin_device(_Config("gw1", 2)) == "6"
    assert os.environ["ASCEND_RT_VISIBLE_DEVICES"] == os.environ["CUDA_VISIBLE_DEVICES"] == "6"


def test_explicit_device_list_and_default_range(monkeypatch):
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(v, raising=False)
    assert pin_device(_Config("gw2", 4, "0-7")) == "2"
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(v, raising=False)
    assert pin_device(_Config("gw3", 8)) == "3"  # nothing set: worker K -> device K


def test_more_workers_than_devices_is_refused(monkeypatch):
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES", raising=False)
    with pytest.raises(UsageError, match=r"2 xdist workers but only 1 device\(s\) \(3\); use -n 1"):
        pin_device(_Config("gw0", 2, "3"))


@pytest.mark.parametrize("text, ok", [("0-3", ["0", "1", "2", "3"]), ("0,2,5", ["0", "2", "5"]), ("7", ["7"]),
                                      ("a", None), ("3-1", None), ("0,0", None), ("", None)])
def test_parse_devices(text, ok):
    if ok is None:
        with pytest.raises(UsageError, match="--opdiff-devices"):
            parse_devices(text)
    else:
        assert parse_devices(text) == ok


def test_consolidation_reports_a_truncated_part_and_keeps_the_rest(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    for wid, text in (("gw0", json.dumps({"op": "x", "case_id": "a"}) + "\n"),
                      ("gw1", json.dumps({"op": "x", "case_id": "b"}) + '\n{"op": "x", "ca')):
        (parts / f"{wid}.json").write_text(json.dumps({"worker": wid, "device": wid[-1]}))
        (parts / f"{wid}.results.jsonl").write_text(text)
    meta = consolidate_parts(tmp_path)
    assert meta["rows"] == 2 and len(meta["problems"]) == 1 and "gw1.results.jsonl:2: truncated" in meta["problems"][0]
    (parts / "gw1.results.jsonl").write_text('{"op": "x", "ca\n' + json.dumps({"op": "x", "case_id": "b"}) + "\n")
    with pytest.raises(UsageError, match=r"gw1.results.jsonl:1: corrupt results line"):
        consolidate_parts(tmp_path)


def test_opdiff_out_refuses_an_existing_run(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "run.json").write_text("{}")
    p = _pytest(tmp_path / "x")
    assert p.returncode != 0 and "already holds a run" in p.stdout + p.stderr

"""`run --resume DIR`: a runner killed with SIGKILL mid-run, resumed, ends with exactly the full set
of rows (nothing redone, nothing duplicated, half-written lines handled)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import registry
from harness.cli import main
from harness.errors import UsageError
from harness.results import load_run, read_jsonl
from harness.resume import prune
from tests.fault_backend import register

ROOT = Path(__file__).resolve().parents[1]
SELECT = ["--ops", "paged_cache_load", "--case", "edge-*", "--no-timing"]


def _key(r):
    return (r["op"], r["case_id"], r["backend"], r["output"], r["verdict"])


def _runner(*args, faults=""):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPDIFF_FAULTS=faults)
    return subprocess.Popen([sys.executable, "-m", "tests.fault_backend", "run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_sigkill_then_resume_gives_exactly_the_full_rows(tmp_path):
    full = tmp_path / "full"
    register()
    try:
        assert main(["run", *SELECT, "--backends", "numpy,fault", "--no-isolate", "--out", str(full)]) == 0
    finally:
        registry.unregister_backend("fault")
    want = Counter(_key(r) for r in load_run(full)[1])

    out = tmp_path / "killed"
    # slow=0.2: the fault backend sleeps on every case, so the kill lands mid-run
    p = _runner(*SELECT, "--backends", "numpy,fault", "--no-isolate", "--out", str(out), faults="slow=0.2")
    deadline = time.monotonic() + 120
    while _lines(out / "done.jsonl") < 3 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = _lines(out / "done.jsonl")
    assert 3 <= done_before < sum(1 for k in want if k[2] == "numpy")  # really interrupted mid-run
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    with open(out / "results.jsonl", "a") as f:  # and a half-written last line, as a kill mid-write leaves
        f.write('{"op": "paged_cache_load", "case_id": "edge-trunc", "params": {"a": 1}')  # cut after a brace

    p = _runner("--resume", str(out))
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stdout + stderr
    meta, rows = load_run(out)
    assert meta["status"] == "finished" and meta["resumed"] == 1
    assert Counter(_key(r) for r in rows) == want  # same rows, each exactly once
    assert len({r["run_id"] for r in rows}) == 1
    done = read_jsonl(out / "done.jsonl")
    assert len(done) == len({(d["op"], d["case_id"]) for d in done})  # no case run twice


def test_prune_drops_rows_of_unfinished_cases_and_the_truncated_line(tmp_path):
    rows = [{"op": "x", "case_id": c, "backend": "numpy", "output": "o", "verdict": "pass"} for c in ("a", "b", "c")]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"op": "x", "ca')
    (tmp_path / "samples.jsonl").write_text(json.dumps({"op": "x", "case_id": "c", "latency_us": 1}) + "\n")
    (tmp_path / "done.jsonl").write_text('{"op": "x", "case_id": "a"}\n{"op": "x", "case_id": "b"}\n{"op": "x"')
    done, dropped = prune(tmp_path)
    assert done == {("x", "a"), ("x", "b")} and dropped == 1
    assert [r["case_id"] for r in read_jsonl(tmp_path / "results.jsonl")] == ["a", "b"]
    assert read_jsonl(tmp_path / "samples.jsonl") == []
    assert (tmp_path / "results.jsonl").read_text().endswith("\n")


def test_resume_of_a_finished_run_redoes_nothing(tmp_path):
    out = tmp_path / "r"
    assert main(["run", *SELECT[:2], "--case", "base-*", "--backends", "numpy", "--no-timing", "--out", str(out)]) == 0
    before = load_run(out)[1]
    assert main(["run", "--resume", str(out)]) == 0
    after = load_run(out)[1]
    assert Counter(map(_key, after)) == Counter(map(_key, before))


@pytest.mark.parametrize("setup, args, needle", [
    (None, ["--resume", "{d}/missing"], "no such directory"),
    ("empty", ["--resume", "{d}"], "not a run directory (no run.json)"),
    ("corrupt", ["--resume", "{d}"], "corrupt run.json"),
    ("noplan", ["--resume", "{d}"], "no 'plan_args' recorded"),
    ("run", ["--resume", "{d}", "--tier", "nightly"], "drop --tier"),
    ("run", ["--resume", "{d}", "--out", "{d}/other"], "drop --out"),
    ("run", ["--out", "{d}"], "already holds a run"),
    (None, [], "give --out DIR"),
])
def test_resume_and_out_usage_errors(tmp_path, setup, args, needle):
    d = tmp_path / "d"
    if setup:
        d.mkdir()
    if setup == "corrupt":
        (d / "run.json").write_text("{oops")
    elif setup == "noplan":
        (d / "run.json").write_text(json.dumps({"status": "running"}))
    elif setup == "run":
        (d / "run.json").write_text(json.dumps({"status": "running", "plan_args": {
            "ops": "paged_cache_load", "backends": "numpy", "tier": "smoke", "seed": 0}}))
    from harness.cli import build_parser
    from harness.commands import run

    ns = build_parser().parse_args(["run", *[a.format(d=d) for a in args]])
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        run.main(ns)


def test_corrupt_middle_line_of_an_interrupted_run_is_reported(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"status": "running", "plan_args": {
        "ops": "paged_cache_load", "backends": "numpy", "tier": "smoke", "seed": 0}}))
    (d / "done.jsonl").write_text('{"op": "paged_cache_load", "case_id": "a"}\n')
    (d / "results.jsonl").write_text('{"op": "paged_cache_load", "case_id"\n{"op": "paged_cache_load"}\n')
    with pytest.raises(UsageError, match=r"results.jsonl:1: corrupt results line"):
        main_args = ["run", "--resume", str(d)]
        from harness.cli import build_parser
        from harness.commands import run

        run.main(build_parser().parse_args(main_args))

"""harness.rundir: the writer lock, the atomic claim of a new run directory, atomic writes that
never follow a link."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import rundir
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_writer_is_refused_with_the_holders_pid_and_command(tmp_path):
    first = rundir.claim_new(tmp_path / "d")
    try:
        with pytest.raises(UsageError) as exc:
            rundir.RunLock(tmp_path / "d").acquire()
        msg = str(exc.value)
        assert f"locked by another writer (pid {os.getpid()} on " in msg
        assert " ".join(sys.argv) in msg  # the holder's command line
        holder = json.loads((tmp_path / "d" / rundir.LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    finally:
        first.release()
    rundir.claim_new(tmp_path / "d").release()  # released: the next writer gets it


def test_the_lock_dies_with_its_holder(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    code = ("import sys, time; from harness import rundir; rundir.RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(d)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match=f"pid {p.pid} "):
            rundir.RunLock(d).acquire()
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rundir.RunLock(d).acquire().release()  # the kernel dropped it with the process


def test_claim_refuses_a_run_and_foreign_files_and_takes_an_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rundir.claim_new(empty).release()
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    with pytest.raises(UsageError, match=r"already holds a run \(run.json\); use --resume"):
        rundir.claim_new(run)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "results.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match=r"not an empty directory, and not an opdiff run directory "
                                         r"\(no run.json, holds results.jsonl\)"):
        rundir.claim_new(stray)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        rundir.claim_new(tmp_path / "file")


def test_a_claim_that_wrote_nothing_leaves_no_directory_behind(tmp_path):
    lock = rundir.claim_new(tmp_path / "new")
    assert (tmp_path / "new" / rundir.LOCK_NAME).is_file()
    lock.release()
    assert not (tmp_path / "new").exists()
    lock = rundir.claim_new(tmp_path / "kept")
    (tmp_path / "kept" / "run.json").write_text("{}")
    lock.release()
    assert (tmp_path / "kept" / "run.json").is_file()


def test_racing_claims_exactly_one_wins(tmp_path):
    """Eight processes claim one directory at the same instant: one gets it, seven are refused."""
    go = tmp_path / "go"
    code = ("import os, sys, time\nfrom harness import rundir\nfrom harness.errors import UsageError\n"
            "go, d = sys.argv[1], sys.argv[2]\nwhile not os.path.exists(go): time.sleep(0.001)\n"
            "try:\n    lock = rundir.claim_new(d)\nexcept UsageError as e:\n    print('refused', e); sys.exit(2)\n"
            "open(os.path.join(d, 'run.json'), 'w').write('{}')\ntime.sleep(0.5)\nlock.release()\nprint('won')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(tmp_path / "d")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(0.5)
    go.write_text("")
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sorted(p.returncode for p in procs) == [0] + [2] * 7, outs
    assert all(("locked by another writer" in o or "already holds a run" in o) for o in outs if "won" not in o)


def test_atomic_write_replaces_a_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "run.json").symlink_to(victim)
    (tmp_path / "run.json.tmp").symlink_to(victim)  # the fixed temp name older opdiff used
    rundir.atomic_write(tmp_path / "run.json", '{"a": 1}')
    assert victim.read_text() == "precious"
    assert not (tmp_path / "run.json").is_symlink() and (tmp_path / "run.json").read_text() == '{"a": 1}'
    assert [p.name for p in tmp_path.glob(".run.json.*")] == []  # no temp file left


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old report")
    with pytest.raises(UnicodeEncodeError):
        rundir.atomic_write(target, "new" + "\ud800")  # cannot be encoded: fails before any byte lands
    with pytest.raises(RuntimeError):
        with rundir.atomic_file(target) as f:
            f.write(b"half a rep")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_atomic_write_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(UsageError, match=r"directory .*/nope does not exist"):
        rundir.atomic_write(tmp_path / "nope" / "r.html", "x")


def test_appending_through_a_link_and_links_inside_a_run_are_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    d = tmp_path / "d"
    d.mkdir()
    (d / "results.jsonl").symlink_to(victim)
    with pytest.raises(UsageError, match="results.jsonl: is a symlink"):
        rundir.open_append(d / "results.jsonl")
    with pytest.raises(UsageError, match=r"d/results.jsonl: is a symlink \(to .*victim\)"):
        rundir.refuse_symlinks(d)
    assert victim.read_text() == "precious"


def test_written_files_keep_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        rundir.atomic_write(tmp_path / "a", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600

"""One writer per run directory (issue 16, cases 2, 3, 6, 7, 8): a resume or a second `run --out`
against a directory being written is refused with the holder's pid and command; a directory that
is not an opdiff run is never adopted; links inside a run directory are refused, never followed;
a report is replaced atomically; a repro command writes to a fresh temporary directory."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.results import load_run, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SELECT = ["--ops", "paged_cache_load", "--case", "edge-*", "--no-timing", "--no-isolate"]
RUN = ["run", "--ops", "paged_cache_load", "--backends", "numpy", "--case", "base-*", "--no-timing"]
#: a runner that imports everything, then waits for the go file: two of them call main() within a
#: millisecond of each other, so a check-then-create race cannot hide behind start-up jitter.
AT_GO = ("import os, sys, time\nfrom tests.fault_backend import register\nregister()\n"
         "from harness.cli import main\nopen(sys.argv[1] + '.ready' + str(os.getpid()), 'w').close()\n"
         "while not os.path.exists(sys.argv[1]): time.sleep(0.0005)\nsys.exit(main(sys.argv[2:]))\n")


def _env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def _key(r):
    return (r["op"], r["case_id"], r["backend"], r["output"], r["verdict"])


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def test_resume_of_a_run_still_being_written_is_refused(tmp_path):
    """Case 2: the resume used to prune (os.replace) the files under the running writer."""
    out = tmp_path / "d"
    writer = subprocess.Popen([sys.executable, "-m", "tests.fault_backend", "run", *SELECT, "--backends",
                               "numpy,fault", "--out", str(out)], cwd=ROOT, env=_env(OPDIFF_FAULTS="slow=0.15"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _lines(out / "done.jsonl") < 2 and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.poll() is None, writer.communicate()
        resume = subprocess.run([sys.executable, "-m", "tests.fault_backend", "run", "--resume", str(out)], cwd=ROOT,
                                env=_env(), capture_output=True, text=True, timeout=120)
        assert resume.returncode == 2, resume.stdout + resume.stderr
        assert f"{out}: locked by another writer (pid {writer.pid} on " in resume.stderr
        assert f"--out {out}" in resume.stderr  # the holder's command line
        stdout, stderr = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, stdout + stderr
    meta, rows = load_run(out)
    n_cases = len(read_jsonl(out / "done.jsonl"))
    assert meta["status"] == "finished" and "resumed" not in meta
    assert n_cases == 20 and len(rows) == n_cases * 2 * 2  # 20 cases x numpy,fault x key,value
    assert len({r["run_id"] for r in rows}) == 1


def test_two_runs_into_one_directory_started_together_one_is_refused(tmp_path):
    """Case 3: both passed the check-then-create test and appended to the same files (2 run ids)."""
    go, out = tmp_path / "go", tmp_path / "d"
    argv = ["run", *SELECT, "--backends", "numpy,fault", "--out", str(out)]
    procs = [subprocess.Popen([sys.executable, "-c", AT_GO, str(go), *argv], cwd=ROOT,
                              env=_env(OPDIFF_FAULTS="slow=0.05"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("go.ready*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        go.write_text("")
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    loser = outs[codes.index(2)][1]
    assert "locked by another writer (pid " in loser or "already holds a run" in loser, loser
    meta, rows = load_run(out)
    assert meta["status"] == "finished" and len(rows) == 20 * 2 * 2
    assert len({r["run_id"] for r in rows}) == 1
    assert Counter(map(_key, rows)).most_common(1)[0][1] == 1  # no row twice


def test_a_run_between_another_runs_check_and_its_first_write_is_refused(tmp_path, capsys):
    """Case 3, deterministic: run A has checked --out D and not yet written run.json (the window
    the two processes above race through); run B on D must be refused, not share D with A."""
    from harness import execute
    from harness.cli import build_parser

    argv = [*RUN, "--out", str(tmp_path / "d")]
    prepared = execute.prepare(build_parser().parse_args(argv))  # A: options checked, D claimed
    try:
        assert main(argv) == 2  # B
        assert f"{tmp_path / 'd'}: locked by another writer (pid {os.getpid()} " in capsys.readouterr().err
        assert not (tmp_path / "d" / "results.jsonl").exists()
    finally:
        for held in prepared[2:]:  # A's lock
            held.release()


def test_a_stray_results_file_is_never_adopted(tmp_path, capsys):
    """Case 6: a directory holding results.jsonl but no run.json used to become the new run."""
    d = tmp_path / "stray"
    d.mkdir()
    forged = {"op": "paged_cache_load", "case_id": "forged", "backend": "numpy", "output": "key",
              "verdict": "pass", "ok": True}
    (d / "results.jsonl").write_text(json.dumps(forged) + "\n")
    assert main([*RUN, "--out", str(d)]) == 2
    err = capsys.readouterr().err
    assert (f"--out {d}: not an empty directory, and not an opdiff run directory (no run.json, holds "
            f"results.jsonl)") in err
    assert read_jsonl(d / "results.jsonl") == [forged] and not (d / "run.json").exists()


def test_repro_commands_write_to_a_fresh_directory_each_time(good_run, tmp_path):
    """Case 6, second half: every repro used the fixed /tmp/opdiff-repro (refused the second time,
    or someone else's directory)."""
    repro = load_run(good_run)[1][0]["repro"]
    assert "/tmp/opdiff-repro" not in repro and "mktemp -d" in repro
    python = shlex.quote(sys.executable)
    assert repro.startswith("python -m harness run ")
    cmd = python + repro[len("python"):]
    env = _env(TMPDIR=str(tmp_path))
    outs = []
    for _ in range(2):  # the repro is a shell command line by design: run it as a user would
        p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        outs.append(next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("results: ")))
    assert outs[0] != outs[1] and all(o.startswith(str(tmp_path)) for o in outs)


def test_a_linked_report_is_refused_and_its_target_untouched(good_run, tmp_path, capsys):
    """Case 7: `report D` with D/report.html a symlink overwrote the link's target."""
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (d / "report.html").symlink_to(victim)
    assert main(["report", str(d)]) == 2
    assert f"{d}/report.html: is a symlink" in capsys.readouterr().err
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("link", ["run.json.tmp", "results.jsonl", "done.jsonl"])
def test_resume_refuses_links_inside_the_run_directory(good_run, tmp_path, capsys, link):
    """Case 7: `run --resume D` with D/run.json.tmp a symlink overwrote the link's target."""
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if (d / link).exists():
        (d / link).unlink()
    (d / link).symlink_to(victim)
    assert main(["run", "--resume", str(d)]) == 2
    assert f"{d}/{link}: is a symlink" in capsys.readouterr().err
    assert victim.read_text() == "precious"


def test_report_is_replaced_atomically(good_run, tmp_path, monkeypatch, capsys):
    """Case 8: a report write that dies midway used to leave a 0-byte report.html."""
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    assert main(["report", str(d)]) == 0
    before = (d / "report.html").read_text()
    assert len(before) > 1000
    import reports.nightly

    # text that fails to encode after 200 kB: the write dies part way, as a kill would stop it
    monkeypatch.setattr(reports.nightly, "render_report", lambda *a, **k: "<html>" + "x" * 200_000 + "\ud800")
    assert main(["report", str(d)]) == 2
    assert "cannot be written as UTF-8" in capsys.readouterr().err
    assert (d / "report.html").read_text() == before
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_report_into_a_directory_being_written_is_refused(good_run, tmp_path, capsys):
    from harness import rundir

    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    with rundir.lock_existing(d):
        assert main(["report", str(d)]) == 2
    assert f"{d}: locked by another writer (pid {os.getpid()} " in capsys.readouterr().err
    assert main(["report", str(d), "-o", str(tmp_path / "elsewhere.html")]) == 0  # reading needs no lock


def test_a_pytest_session_into_a_directory_being_written_is_refused(tmp_path):
    from harness import rundir

    d = tmp_path / "d"
    env = _env()
    for v in ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "CI"):
        env.pop(v, None)
    with rundir.claim_new(d):  # another writer holds d
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_matrix.py",
                            "--ops", "paged_cache_load", "--backends", "numpy", "-k", "base", "--opdiff-out", str(d)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert sorted(x.name for x in d.iterdir()) == [rundir.LOCK_NAME]  # the refused session wrote nothing
    assert p.returncode == 4, p.stdout + p.stderr  # pytest's usage error
    assert f"{d}: locked by another writer (pid {os.getpid()} " in p.stdout + p.stderr

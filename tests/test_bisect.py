"""`bisect-check` exit codes, and `git bisect run` finding a planted regression in a throwaway repo.

The throwaway repository is a copy of the harness with one operator and the test-only `spin`
backend (registered through an `opdiff.backends` entry point in a dist-info folder at the repo
root); its history plants a broken build (must be skipped) and then a latency or accuracy
regression (must be found)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OP = "paged_cache_load"
SPIN_MODULE = "tests/test_regress_spin.py"


def _git(repo, *args, check=True):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)


def _commit(repo, msg) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", msg)
    return _git(repo, "rev-parse", "HEAD").stdout.strip()


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPDIFF_TEST_") and k != "PYTHONPATH"}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def make_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "harness", repo / "harness", ignore=ignore)
    (repo / "backends" / "numpy").mkdir(parents=True)
    (repo / "backends" / "torch").mkdir()
    for f in (ROOT / "backends").glob("*.py"):
        shutil.copy(f, repo / "backends" / f.name)
    for pkg in ("numpy", "torch"):
        for name in ("__init__.py", f"{OP}.py"):
            shutil.copy(ROOT / "backends" / pkg / name, repo / "backends" / pkg / name)
    (repo / "cases").mkdir()
    for name in ("__init__.py", f"{OP}.py"):
        shutil.copy(ROOT / "cases" / name, repo / "cases" / name)
    (repo / "tests").mkdir()
    (repo / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / SPIN_MODULE, repo / SPIN_MODULE)
    dist = repo / "opdiff_spin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opdiff-spin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[opdiff.backends]\nspin = tests.test_regress_spin:SpinBackend\n")
    (repo / "NOTES.txt").write_text("history\n")
    _git(repo, "init", "-q")
    return repo


def _harness(repo, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=repo, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _case_id(repo) -> str:
    p = subprocess.run([sys.executable, "-c", f"from harness import registry; "
                        f"print(next(c.id for c in registry.op('{OP}').cases('smoke') if not c.negative))"],
                       cwd=repo, env=_env(), capture_output=True, text=True, check=True)
    return p.stdout.strip()


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _baseline(repo, tmp_path, case_id):
    base = tmp_path / "base"
    p = _harness(repo, "run", "--ops", OP, "--backends", "spin", "--case", case_id, "--out", str(base))
    assert p.returncode == 0, p.stdout + p.stderr
    return base


def _history(repo, plant) -> dict:
    """good, noise, broken build, fix, planted regression, noise: returns their shas by name."""
    shas = {"good": _commit(repo, "good")}
    (repo / "NOTES.txt").write_text("history\nnoise 1\n")
    shas["noise1"] = _commit(repo, "noise 1")
    golden = repo / "backends" / "numpy" / f"{OP}.py"
    saved = golden.read_text()
    golden.write_text(saved + "\ndef broken(:\n")
    shas["broken"] = _commit(repo, "broken build")
    golden.write_text(saved)
    shas["fixed"] = _commit(repo, "fix build")
    plant()
    shas["planted"] = _commit(repo, "planted regression")
    (repo / "NOTES.txt").write_text("history\nnoise 1\nnoise 2\n")
    shas["noise2"] = _commit(repo, "noise 2")
    return shas


def _bisect(repo, shas, check_args) -> str:
    _git(repo, "bisect", "start", shas["noise2"], shas["good"])
    p = subprocess.run(["git", "bisect", "run", sys.executable, "-m", "harness", "bisect-check", *check_args],
                       cwd=repo, env=_env(), capture_output=True, text=True, timeout=600)
    _git(repo, "bisect", "reset", check=False)
    return p.stdout + p.stderr


def test_git_bisect_run_finds_a_planted_latency_regression(tmp_path):
    repo = make_repo(tmp_path)
    case_id = _case_id(repo)
    shas = _history(repo, lambda: _edit(repo / SPIN_MODULE, "SPIN_BASE_US = 60.0", "SPIN_BASE_US = 400.0"))
    _git(repo, "checkout", "-q", shas["good"])
    base = _baseline(repo, tmp_path, case_id)
    _git(repo, "checkout", "-q", shas["noise2"])
    out = _bisect(repo, shas, ["--case", case_id, "--backend", "spin", "--metric", "latency",
                               "--baseline", str(base), "--threshold", "1.5", "--tier", "smoke", "--rounds", "2"])
    assert f"{shas['planted']} is the first bad commit" in out, out


@pytest.mark.slow
def test_git_bisect_run_finds_a_planted_accuracy_regression(tmp_path):
    repo = make_repo(tmp_path)
    case_id = _case_id(repo)
    shas = _history(repo, lambda: _edit(repo / SPIN_MODULE, 'raw = os.environ.get(var, "")',
                                        'raw = os.environ.get(var, "*" if var == "OPDIFF_TEST_CORRUPT" else "")'))
    _git(repo, "checkout", "-q", shas["good"])
    base = _baseline(repo, tmp_path, case_id)
    _git(repo, "checkout", "-q", shas["noise2"])
    out = _bisect(repo, shas, ["--case", case_id, "--backend", "spin", "--metric", "accuracy",
                               "--baseline", str(base)])
    assert f"{shas['planted']} is the first bad commit" in out, out


@pytest.mark.slow
def test_exit_codes_good_bad_skip_abort(tmp_path):
    repo = make_repo(tmp_path)
    case_id = _case_id(repo)
    _commit(repo, "good")
    base = _baseline(repo, tmp_path, case_id)
    check = ["bisect-check", "--case", case_id, "--backend", "spin", "--baseline", str(base), "--tier", "smoke",
             "--rounds", "1", "--threshold", "1.5"]
    good = _harness(repo, *check)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "good:" in good.stdout and "ratio" in good.stdout
    assert _harness(repo, *check, "--metric", "accuracy").returncode == 0
    _edit(repo / SPIN_MODULE, "SPIN_BASE_US = 60.0", "SPIN_BASE_US = 400.0")
    bad = _harness(repo, *check)
    assert bad.returncode == 1 and "bad:" in bad.stdout
    # a baseline without the case: abort (128); backend gone, broken op module: skip (125)
    missing_case = _harness(repo, *check[:2], "other-case", *check[3:])
    assert missing_case.returncode == 128 and "abort" in missing_case.stdout
    shutil.rmtree(repo / "opdiff_spin-0.1.dist-info")
    gone = _harness(repo, *check)
    assert gone.returncode == 125 and "skip: backend spin" in gone.stdout
    (repo / "backends" / "numpy" / f"{OP}.py").write_text("def broken(:\n")
    skipped = _harness(repo, *check)
    assert skipped.returncode == 125 and "skip" in skipped.stdout

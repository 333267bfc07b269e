"""Adding an operator takes exactly three files (README "Adding an operator"): a copy of the tree gets
cases/toy_axpy.py, backends/numpy/toy_axpy.py and backends/torch/toy_axpy.py (tests/meta/toy_op/) and
nothing else; the registry lists the op, the CLI runs it on every backend (device backends decline it as
"not implemented for toy_axpy"), and the suite's op-discovering tests run it and pass."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOY = Path(__file__).resolve().parent / "toy_op"
OP = "toy_axpy"
NEW_FILES = {f"cases/{OP}.py": "spec.py.txt", f"backends/numpy/{OP}.py": "golden.py.txt",
             f"backends/torch/{OP}.py": "reference.py.txt"}
COPIED = ("harness", "cases", "backends", "reports", "tests", "conftest.py", "pyproject.toml")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("toy") / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        (shutil.copytree(src, repo / name, ignore=ignore) if src.is_dir() else shutil.copy(src, repo / name))
    before = _tree(repo)
    for dst, template in NEW_FILES.items():
        (repo / dst).write_text((TOY / template).read_text())
    assert _tree(repo) - before == set(NEW_FILES) and before <= _tree(repo)   # three new files, nothing edited
    return repo


def _env() -> dict:
    env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return env


def _run(repo, *args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=repo, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_the_registry_and_list_see_the_toy_op(repo):
    p = _run(repo, "-m", "harness", "list", "--op", OP)
    assert p.returncode == 0, p.stderr
    assert OP in p.stdout and "pairwise coverage: smoke" in p.stdout and "(100.0%)" in p.stdout, p.stdout


def test_the_cli_runs_the_toy_op_on_every_backend(repo, tmp_path):
    out = tmp_path / "run"
    p = _run(repo, "-m", "harness", "run", "--ops", OP, "--backends", "all", "--tier", "smoke", "--no-timing",
             "--out", str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    by_backend = {}
    for r in rows:
        by_backend.setdefault(r["backend"].partition(":")[0], set()).add(r["verdict"])
    assert by_backend["numpy"] <= {"pass", "rejected"} and by_backend["torch"] <= {"pass", "rejected"}
    assert {"pass", "rejected"} <= by_backend["torch"]               # positives pass, negatives are refused
    for device in ("torch_npu", "aclnn"):                               # declined with the reason, never crashed
        reasons = {r["reason"] for r in rows if r["backend"].startswith(device)}
        assert reasons and all("not implemented for toy_axpy" in x or "unavailable" in x or "not available" in x
                               or "cannot" in x for x in reasons), reasons


def test_the_suite_discovers_and_passes_the_toy_op(repo):
    p = _run(repo, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-k", OP, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    summary = p.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 8, summary                                       # matrix items of the toy op ran and passed

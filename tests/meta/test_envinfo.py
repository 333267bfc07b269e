"""The environment fingerprint must not take the checkout's .git/index.lock (issue 16, minor): a
plain `git status` refreshes the index under that lock, so a `git commit` running at the same
moment in the checkout failed with "index.lock: File exists"."""
from __future__ import annotations

import subprocess

from harness import envinfo


def test_git_status_runs_without_optional_locks(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f").write_text("a")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (repo / "f").write_text("b")
    calls = []
    real = subprocess.run

    def spy(argv, *a, **k):
        calls.append(list(argv))
        return real(argv, *a, **k)

    monkeypatch.setattr(envinfo.subprocess, "run", spy)
    commit = envinfo.git_commit(str(repo))
    assert commit is not None and commit.endswith("-dirty")
    [status] = [c for c in calls if "status" in c]
    assert status[:3] == ["git", "--no-optional-locks", "status"]
    assert not (repo / ".git" / "index.lock").exists()

"""Environment fingerprint recorded in run.json (never imports torch_npu: it may not load)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version: '2.5.1.post1' -> (2, 5, 1), '2.5.1+cpu' -> (2, 5, 1)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+", 1)[0])[:3])


def cann_version() -> str | None:
    for var in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        root = os.environ.get(var)
        if not root:
            continue
        for rel in ("version.cfg", "version.info", "compiler/version.info", "runtime/version.info"):
            f = Path(root) / rel
            if f.is_file():
                for line in f.read_text(errors="replace").splitlines():
                    if "version" in line.lower() and "=" in line:
                        return line.split("=", 1)[1].strip()
    return None


def git_commit(cwd: str | None = None) -> str | None:
    here = cwd or str(Path(__file__).resolve().parent.parent)
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() if out.returncode == 0 else None
        if commit:
            # --no-optional-locks: a plain `git status` refreshes the index under .git/index.lock,
            # which makes a concurrent `git commit` in the checkout fail
            dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(device_names: dict | None = None) -> dict:
    return {
        "python": sys.version.split()[0],
        "numpy": dist_version("numpy"),
        "ml_dtypes": dist_version("ml_dtypes"),
        "torch": dist_version("torch"),
        "torch_npu": dist_version("torch-npu") or dist_version("torch_npu"),
        "cann": cann_version(),
        "opdiff_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "devices": device_names or {},
    }

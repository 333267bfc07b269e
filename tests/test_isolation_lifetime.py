"""Isolated workers (issue 16, cases 12, 13): a backend defined in the program run with
`python -m` is rebuilt by its real module name; a worker never outlives its runner."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.results import load_run

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def test_python_dash_m_fault_backend_runs_isolated(tmp_path):
    """Case 12: every fault row read `error: module '__main__' has no attribute 'FaultBackend'`."""
    out = tmp_path / "d"
    p = subprocess.run([sys.executable, "-m", "tests.fault_backend", "run", "--ops", "paged_cache_load", "--backends",
                        "numpy,fault", "--case", "base-*", "--case", "pw00-*", "--isolate", "--no-timing", "--out",
                        str(out)], cwd=ROOT, env=_env(OPDIFF_FAULTS=""), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    meta, rows = load_run(out)
    assert meta["isolated_backends"] == ["numpy", "fault"]
    fault = [r for r in rows if r["backend"] == "fault"]
    assert len(fault) == 4 and {r["verdict"] for r in fault} == {"pass"}, [r["reason"] for r in fault]


def test_a_class_of_a_plain_script_is_refused_up_front(monkeypatch):
    from harness.isolate import backend_ref, importable_module

    main_mod = type(sys)("__main__")
    main_mod.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main_mod)
    cls = type("ScriptBackend", (), {"__module__": "__main__"})
    with pytest.raises(UsageError, match="defined in a script run as __main__; an isolated worker cannot import it"):
        importable_module(cls)
    from tests.fault_backend import FaultBackend

    assert backend_ref(FaultBackend())["cls"] == "tests.fault_backend:FaultBackend"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped by whoever adopted it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker")
def test_a_hung_worker_dies_with_its_runner(tmp_path):
    """Case 13: SIGKILL of the runner left the hung worker holding the device for its whole hang."""
    p = subprocess.Popen([sys.executable, "-m", "tests.fault_backend", "run", "--ops", "paged_cache_load",
                          "--backends", "fault", "--case", "base-*", "--timeout", "300", "--no-timing", "--out",
                          str(tmp_path / "d")], cwd=ROOT, env=_env(OPDIFF_FAULTS="hang=base-*"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline:
            workers = [c for c in _children(p.pid)
                       if b"harness.isolate" in Path(f"/proc/{c}/cmdline").read_bytes()]
            time.sleep(0.1)
        assert workers, "no isolated worker started"
        time.sleep(1.5)  # let it take the case and hang
        assert _alive(workers[0])
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(workers[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(workers[0]), "the isolated worker outlived its runner"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:  # only the worker this test started, by its pid
            if _alive(w):
                os.kill(w, signal.SIGKILL)

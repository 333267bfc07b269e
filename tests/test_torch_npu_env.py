"""torch_npu availability: each missing piece gives its own precise reason, and nothing breaks.

The in-process tests inject the two lookups of `probe`; the subprocess tests put a stand-in
`torch_npu` package first on PYTHONPATH (an import that fails like a CANN-less install, or an
import that sees no device) and run the real CLI, so they mean the same on any machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from backends.torch_npu import _env as torch_npu_env
from backends.torch_npu import TorchNpuBackend, classify, parse_device
from harness import registry
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
LIBHCCL = ("libhccl.so: cannot open shared object file: No such file or directory. Please check that the cann "
           "package is installed. Please run 'source set_env.sh' in the CANN installation path.")


def _fake_npu(count):
    return SimpleNamespace(npu=SimpleNamespace(device_count=lambda: count))


def _raise(exc):
    def imp(name):
        raise exc
    return imp


# ---- probe: one reason per missing piece --------------------------------------------------------------------------
def test_not_installed():
    a = torch_npu_env.probe(find_spec=lambda name: None)
    assert not a and a.reason == torch_npu_env.NOT_INSTALLED
    assert "pip install torch-npu" in a.reason


@pytest.mark.parametrize("exc", [ImportError(LIBHCCL), OSError("libascendcl.so: cannot open shared object file"),
                                 RuntimeError("Failed to load the backend extension: torch_npu.")])
def test_import_fails_without_cann(exc):
    a = torch_npu_env.probe(find_spec=lambda name: object(), import_module=_raise(exc))
    assert not a
    assert a.reason.startswith(f"torch_npu cannot be imported ({type(exc).__name__}: ")
    assert str(exc).split(":")[0] in a.reason      # the missing library is named
    assert "set_env.sh" in a.reason                # and the fix


def test_no_device(monkeypatch):
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "")
    a = torch_npu_env.probe(find_spec=lambda name: object(), import_module=lambda name: _fake_npu(0))
    assert not a and a.reason.startswith("no NPU visible")
    assert "ASCEND_RT_VISIBLE_DEVICES=''" in a.reason


def test_driver_broken():
    def boom():
        raise OSError("libascend_hal.so: cannot open shared object file")
    mod = SimpleNamespace(npu=SimpleNamespace(device_count=boom))
    a = torch_npu_env.probe(find_spec=lambda name: object(), import_module=lambda name: mod)
    assert not a and "device_count() failed" in a.reason and "libascend_hal.so" in a.reason


def test_available_with_a_device():
    assert torch_npu_env.probe(find_spec=lambda name: object(), import_module=lambda name: _fake_npu(2))


@pytest.mark.parametrize("text, ids", [(None, None), ("", []), ("0,2,5", [0, 2, 5]), ("1, 2,3", [1]),
                                       ("3,1", [3]), ("0,0", [0]), ("0,1a,2", [0, 1])])
def test_visible_devices_parsing(text, ids):
    assert torch_npu_env.parse_visible_devices(text) == ids


def test_device_option():
    assert parse_device(None) == "npu:0"
    assert parse_device("1") == "npu:1" and parse_device("npu:2") == "npu:2"
    with pytest.raises(UsageError):
        parse_device("cuda")


def test_logical_index_beyond_visible_devices(monkeypatch):
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,5")
    monkeypatch.setattr(torch_npu_env, "npu_availability", lambda: torch_npu_env.Availability(True))
    import backends.torch_npu as tn

    monkeypatch.setattr(tn, "npu_availability", lambda: torch_npu_env.Availability(True))
    monkeypatch.setattr(tn, "load", lambda: _fake_npu(2))
    assert TorchNpuBackend("1").available()
    a = TorchNpuBackend("2").available()
    assert not a and "npu:2 requested but only 2 NPU(s) visible" in a.reason and "[4, 5]" in a.reason


def test_refusals_and_errors_are_told_apart():
    assert classify(RuntimeError("aclnnNsaCompressWithCacheGetWorkspaceSize failed, error code 161002")) == "rejected"
    assert classify(RuntimeError("EZ1001: [PID: 1] The input dim is invalid")) == "rejected"
    # our own bugs and device faults are errors, whatever else the message says
    assert classify(RuntimeError("npu_x() is missing value for argument 'cache'. Declaration: ...")) == "error"
    assert classify(RuntimeError("error code 507015 ACL_ERROR_RT_AICORE_EXCEPTION ERR00100")) == "error"
    assert classify(RuntimeError("Boolean value of Tensor with more than one value is ambiguous")) == "error"


# ---- this machine, through the registry -----------------------------------------------------------------------------
def test_registry_backends_agree_with_the_probe():
    expected = torch_npu_env.npu_availability()
    for name in ("torch_npu", "torch:npu"):
        a = registry.backend(name).available()
        assert bool(a) == bool(expected)
        if not expected:
            assert a.reason == expected.reason


# ---- the CLI with a stand-in torch_npu package ------------------------------------------------------------------------
STANDINS = {
    "broken": f"raise ImportError({LIBHCCL!r})\n",
    "nodevice": textwrap.dedent("""\
        class npu:
            @staticmethod
            def device_count():
                return 0
        """),
}


def _env(tmp_path, kind):
    pkg = tmp_path / kind / "torch_npu"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(STANDINS[kind])
    env = {k: v for k, v in os.environ.items() if k != "TORCH_DEVICE_BACKEND_AUTOLOAD"}  # the harness must set it
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / kind), str(ROOT)])
    env.pop("ASCEND_RT_VISIBLE_DEVICES", None)
    return env


@pytest.mark.parametrize("kind, reason", [("broken", "torch_npu cannot be imported (ImportError: libhccl.so"),
                                          pytest.param("nodevice", "no NPU visible", marks=pytest.mark.slow)])
def test_cli_run_skips_every_case_with_the_reason(tmp_path, kind, reason):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--backends", "torch_npu,torch:npu",
                           "--ops", "paged_cache_load", "--tier", "smoke", "--no-timing", "--out", str(out)],
                          cwd=ROOT, env=_env(tmp_path, kind), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert rows and {r["verdict"] for r in rows} == {"skipped"}
    assert {r["backend"] for r in rows} == {"torch_npu", "torch:npu"}
    assert all(r["reason"].startswith(f"unavailable: {reason}") for r in rows), rows[0]["reason"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["availability"]["torch_npu"].startswith(reason)


@pytest.mark.parametrize("kind", [pytest.param("broken", marks=pytest.mark.slow), "installed"])
def test_import_torch_keeps_working_after_the_probe(tmp_path, kind):
    """`broken`: a stand-in failing like a CANN-less install; `installed`: whatever torch_npu this machine has
    (here: the real wheel without CANN, whose failed import leaves some torch_npu submodules behind)."""
    script = textwrap.dedent("""\
        import harness
        from harness import registry
        a = registry.backend("torch_npu").available()
        import torch
        print(a.reason or "available")
        print((torch.ones(3) * 2).sum().item())
        """)
    env = _env(tmp_path, "broken")
    if kind == "installed":
        env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reason, total = proc.stdout.strip().splitlines()
    assert float(total) == 6.0
    if kind == "broken":
        assert "libhccl.so" in reason


def test_nnal_missing_is_a_reason(monkeypatch):
    from backends.torch_npu import nnal_missing

    name = "torch_npu.op_plugin.atb._atb_ops"
    monkeypatch.setitem(sys.modules, name, SimpleNamespace(NNAL_EX=OSError(2, "Please check that the nnal package "
                                                                             "is installed.")))
    why = nnal_missing()
    assert "NNAL (libatb.so) did not load" in why and "nnal package" in why and "set_env.sh" in why
    monkeypatch.setitem(sys.modules, name, SimpleNamespace(NNAL_EX=None))
    assert nnal_missing() is None

"""`python -m harness doctor` here (no CANN, no NPU) and against the C double of CANN."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import doctor
from tests.aclnn_double.support import CANN_ENV, built_or_skip

ROOT = Path(__file__).resolve().parents[1]


def _doctor(args, env_extra, home):
    env = {k: v for k, v in os.environ.items() if k not in CANN_ENV}
    env.update(env_extra, HOME=str(home), TORCH_DEVICE_BACKEND_AUTOLOAD="0")
    proc = subprocess.run([sys.executable, "-m", "harness", "doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _status(out: str, item: str) -> str:
    for line in out.splitlines():
        if line.startswith(item + " "):
            return line[len(item):].split()[0]
    raise AssertionError(f"no line {item!r} in:\n{out}")


def test_this_machine_reports_what_is_missing_and_exits_non_zero(tmp_path):
    rc, out, err = _doctor([], {}, tmp_path)
    assert rc == 1, out + err
    assert _status(out, "CANN toolkit") == "MISSING" and "ASCEND_HOME_PATH" in out
    assert _status(out, "symbol aclnnIncreFlashAttentionV4") == "MISSING"
    assert _status(out, "torch_npu import / devices") == "MISSING"
    assert _status(out, "task queue") == "INFO"
    assert _status(out, "aclnn: smoke") == "MISSING" and _status(out, "torch_npu: smoke") == "MISSING"
    assert "not ready for aclnn, torch_npu" in out


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    return built_or_skip(tmp_path_factory)


def test_with_the_double_it_says_so_runs_every_op_and_exits_0(double, tmp_path):
    rc, out, err = _doctor(["--backends", "aclnn"], double.env(), tmp_path)
    assert rc == 0, out + err
    assert _status(out, "CANN toolkit") == "DOUBLE" and "the C test double of CANN" in out
    assert _status(out, "NNAL / ATB") == "DOUBLE"
    assert _status(out, "symbol AtbPagedCacheLoad") == "OK" and "libatb.so" in out
    assert _status(out, "devices (ACL)") == "OK" and "SoC Ascend910B1" in out
    from backends.aclnn._binding import bindings

    for op in bindings():   # the registered ops with an aclnn module
        assert _status(out, f"aclnn: {op} positive") == "OK"
        assert _status(out, f"aclnn: {op} negative") == "OK"
    negatives = [line for line in out.splitlines() if line.startswith("aclnn: ") and " negative " in line]
    assert all(": rejected: " in line for line in negatives), negatives
    assert "ready: aclnn (on the C double of CANN, not a device)" in out
    # torch_npu cannot import against the double (no libhccl): reported, but aclnn alone was asked for
    assert _status(out, "torch_npu import / devices") == "MISSING"


def test_asking_for_torch_npu_too_is_not_ready_with_the_double(double, tmp_path):
    rc, out, _ = _doctor(["--backends", "aclnn,torch_npu", "--no-run"], double.env(), tmp_path)
    assert rc == 1 and "not ready for aclnn, torch_npu" in out
    assert "aclnn: " not in out   # --no-run: no cases


def test_unknown_backend_is_a_usage_error(tmp_path):
    rc, _, err = _doctor(["--backends", "aclnn:nonsense"], {}, tmp_path)
    assert rc == 2 and "nonsense" in err


def test_version_match_rule():
    assert doctor.release("2.5.1.post1") == (2, 5, 1) == doctor.release("2.5.1+cpu")
    assert doctor.release("2.13.0") != doctor.release("2.12.0")


def test_a_missing_piece_blocks_only_the_backends_that_need_it():
    line = doctor.Line("torch_npu import / devices", "missing", "no libhccl", ("torch_npu",))
    assert line.blocks(["torch_npu"]) and not line.blocks(["aclnn"])
    assert not doctor.Line("task queue", "info", "on").blocks(["aclnn", "torch_npu"])
    assert doctor.ready([doctor.Line("CANN toolkit", "double", "stand-in", doctor.DEVICE_BACKENDS)], ["aclnn"])

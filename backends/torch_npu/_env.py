"""Whether torch_npu can be used here, with a precise reason when it cannot (never raises).

Three missing pieces are told apart (acl_abi.md section 5):
  - the torch-npu wheel is not installed;
  - it is installed but `import torch_npu` fails, nearly always because the CANN libraries
    (libhccl.so, libascendcl.so ...) are not on the loader path: `set_env.sh` was not sourced;
  - it imports but no NPU is visible (driver missing, or ASCEND_RT_VISIBLE_DEVICES hides them all).

With torch-npu installed, `import torch` itself imports torch_npu through the `torch.backends`
entry point and fails without CANN, unless TORCH_DEVICE_BACKEND_AUTOLOAD=0; this module (like
`harness/__init__.py`) sets that default before anything imports torch, and imports torch_npu
explicitly only here. A failed `import torch_npu` leaves torch usable.

The probe runs once per process (`npu_availability` is cached): the runner asks per case, and a
failing import costs a second or so each time.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os

from backends.base import Availability

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

SET_ENV_HINT = ("source /usr/local/Ascend/ascend-toolkit/set_env.sh (or <CANN install>/set_env.sh; for ATB "
                "ops also the NNAL set_env.sh) before running")
NOT_INSTALLED = "torch_npu is not installed (pip install torch-npu==<your torch version>)"


def parse_visible_devices(text: str | None) -> list[int] | None:
    """ASCEND_RT_VISIBLE_DEVICES as the Ascend runtime reads it; None when unset.

    Comma-separated ids; parsing stops at the first character that is neither a digit nor a comma
    ("1, 2,3" -> [1]); the list must ascend without repeats, else the runtime refuses it: we keep
    the valid ascending prefix (acl_abi.md section 5, RT ASCEND_RT_VISIBLE_DEVICES.md).
    """
    if text is None:
        return None
    ids: list[int] = []
    for tok in text.split(","):
        digits = ""
        for ch in tok:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        value = int(digits)
        if ids and value <= ids[-1]:
            break
        ids.append(value)
        if digits != tok:  # a non-digit ended the token: the runtime stops reading here
            break
    return ids


def visible_devices_note() -> str:
    raw = os.environ.get("ASCEND_RT_VISIBLE_DEVICES")
    if raw is None:
        return "ASCEND_RT_VISIBLE_DEVICES is unset (all devices visible)"
    return f"ASCEND_RT_VISIBLE_DEVICES={raw!r} (physical ids {parse_visible_devices(raw)})"


def task_queue_enabled() -> bool:
    """torch_npu's task queue is on unless TASK_QUEUE_ENABLE=0 (1 and 2 are its two pipelined levels)."""
    return os.environ.get("TASK_QUEUE_ENABLE", "1").strip() != "0"


def task_queue_note() -> str:
    raw = os.environ.get("TASK_QUEUE_ENABLE")
    if task_queue_enabled():
        return (f"task queue on (TASK_QUEUE_ENABLE={raw or 'unset, default 1'}): refusals surface at synchronize; "
                f"TASK_QUEUE_ENABLE=0 raises them at the call")
    return "task queue off (TASK_QUEUE_ENABLE=0): refusals raise at the call"


def probe(find_spec=importlib.util.find_spec, import_module=importlib.import_module) -> Availability:
    """Uncached availability check; the two callables are injectable for tests."""
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
    try:
        installed = find_spec("torch_npu") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return Availability(False, NOT_INSTALLED)
    try:
        torch_npu = import_module("torch_npu")
    except Exception as exc:  # ImportError (missing .so), OSError, RuntimeError: all mean "no usable CANN"
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return Availability(False, f"torch_npu cannot be imported ({type(exc).__name__}: {msg}); CANN libraries "
                                   f"missing? {SET_ENV_HINT}")
    try:
        count = int(torch_npu.npu.device_count())
    except Exception as exc:  # driver library (libascend_hal.so) missing or broken
        return Availability(False, f"torch_npu.npu.device_count() failed ({type(exc).__name__}: {exc}); "
                                   f"is the Ascend driver installed?")
    if count < 1:
        return Availability(False, f"no NPU visible (torch_npu.npu.device_count() == 0; {visible_devices_note()}; "
                                   f"check the driver with npu-smi info)")
    return Availability(True)


@functools.lru_cache(maxsize=None)
def npu_availability() -> Availability:
    return probe()


def device_count() -> int:
    """Visible NPUs (0 when torch_npu is unusable)."""
    if not npu_availability():
        return 0
    return int(importlib.import_module("torch_npu").npu.device_count())


def load():
    """The imported torch_npu module; call only after `npu_availability()` said yes."""
    return importlib.import_module("torch_npu")

"""Whether torch_npu can be used here, with a precise reason when it cannot (never raises)."""
from __future__ import annotations

import importlib.util
import os

from .base import Availability

SET_ENV_HINT = ("source /usr/local/Ascend/ascend-toolkit/set_env.sh (or /usr/local/Ascend/cann/set_env.sh) "
                "before running")


def npu_availability() -> Availability:
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
    if importlib.util.find_spec("torch_npu") is None:
        return Availability(False, "torch_npu is not installed (pip install torch-npu matching torch)")
    try:
        import torch_npu  # noqa: F401
        import torch
    except Exception as exc:  # ImportError, OSError from missing CANN .so files, RuntimeError ...
        return Availability(False, f"torch_npu cannot be imported ({type(exc).__name__}: {str(exc)[:200]}); "
                                   f"CANN libraries missing? {SET_ENV_HINT}")
    try:
        count = torch.npu.device_count()
    except Exception as exc:
        return Availability(False, f"torch.npu.device_count() failed: {exc}")
    if count < 1:
        return Availability(False, "no NPU visible (torch.npu.device_count() == 0; check ASCEND_RT_VISIBLE_DEVICES "
                                   "and the driver)")
    return Availability(True)

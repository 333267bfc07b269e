"""torch backend: the same-precision reference, following each op's device precision path.

Runs on `cpu` (default), `cuda` or `npu` (`--backends torch:cuda`). Inputs are moved to the
device in `prepare` (untimed); outputs come back as numpy arrays.
"""
from __future__ import annotations

import os

import numpy as np

from harness.dtypes import name_of, np_dtype

from backends.base import Availability, Backend
from backends.op_modules import not_implemented, op_module

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")  # see README: torch-npu without CANN

# CPU threads of the reference. One by default: the smoke and nightly shapes are small, and on a
# shared 2-core machine torch's default 2 threads made them 2-100x slower (measured: smoke of
# nsa_selected_attention_grad + incre_flash_attention 18.5 s with 2 threads, 10.4 s with 1, load 1.5).
# OPDIFF_TORCH_THREADS=N overrides it (0 keeps torch's own default).
DEFAULT_TORCH_THREADS = 1


def _set_threads(torch) -> None:
    text = os.environ.get("OPDIFF_TORCH_THREADS", str(DEFAULT_TORCH_THREADS))
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"OPDIFF_TORCH_THREADS={text!r} is not an integer") from None
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def to_torch(x, device):
    """numpy array -> torch tensor on device (bfloat16 through a uint16 view); others unchanged."""
    import torch

    if not isinstance(x, np.ndarray):
        return x
    if name_of(x) == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(x).view(np.uint16).view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device)


def to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).view(np_dtype("bfloat16"))
    return t.numpy()


class TorchBackend(Backend):
    name = "torch"
    params_first = True      # spec.validate(params, inputs) first: see Backend.params_first

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._timer = None
        if device != "cpu":
            self.name = f"torch:{device}"

    def available(self):
        try:
            import torch
        except Exception as exc:  # an install can be broken in many ways
            return Availability(False, f"torch cannot be imported: {exc}")
        try:
            _set_threads(torch)
        except ValueError as exc:
            return Availability(False, str(exc))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            return Availability(False, "torch.cuda.is_available() is False (no CUDA device or CPU-only torch)")
        if self.device.startswith("npu"):
            from backends.torch_npu._env import npu_availability

            return npu_availability()
        return Availability(True)

    def supports(self, spec, case):
        if op_module("torch", spec.name) is None:
            return not_implemented("torch", spec.name)
        return None

    def prepare(self, spec, case, inputs):
        spec.validate(case.params, inputs)
        dev_inputs = {k: to_torch(v, self.device) for k, v in inputs.items()}
        self.synchronize()
        return {"spec": spec, "case": case, "inputs": dev_inputs, "out": None}

    def launch(self, prepared):
        mod = op_module("torch", prepared["spec"].name)
        prepared["out"] = mod.reference(prepared["case"].params, prepared["inputs"], self.device)

    def fetch(self, prepared):
        return {k: to_numpy(v) for k, v in prepared["out"].items()}

    def synchronize(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        elif self.device.startswith("npu"):
            import torch

            torch.npu.synchronize()

    def timer(self):
        """Device events + an L2-sized flush buffer on cuda/npu (cold by default); host clock on cpu."""
        if self._timer is None:
            self._timer = self._make_timer()
        return self._timer

    def _make_timer(self):
        from harness.timing import (ASCEND_L2_BYTES, CUDA_L2_FALLBACK_BYTES, DeviceFlusher, EventTimer,
                                    HostTimer)

        if self.device.startswith("cuda"):
            import torch

            l2 = getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0) or CUDA_L2_FALLBACK_BYTES
            return EventTimer("cuda_event", lambda: torch.cuda.Event(enable_timing=True), self.synchronize,
                              DeviceFlusher.torch(self.device, l2))
        if self.device.startswith("npu"):
            import torch

            return EventTimer("npu_event", lambda: torch.npu.Event(enable_timing=True), self.synchronize,
                              DeviceFlusher.torch(self.device, ASCEND_L2_BYTES))
        return HostTimer(self.synchronize)

    def device_name(self):
        if self.device.startswith("cuda"):
            import torch

            return torch.cuda.get_device_name()
        if self.device.startswith("npu"):
            import torch

            return torch.npu.get_device_name()  # e.g. "Ascend910B3": matched by harness.roofline
        return self.device

"""torch_npu backend: the operators through their fused torch_npu entry points.

    torch_npu.npu_incre_flash_attention, npu_nsa_compress_infer (NsaCompressWithCache),
    npu_dequant_rope_quant_kvcache (npu_rope_quant_kvcache for non-int32 x),
    npu_nsa_select_attention_grad, torch_npu.atb.npu_paged_cache_load (NZ caches through
    npu_format_cast(x, 29)).

The inputs dict is keyed by the torch_npu argument names, so the backend is a pass-through; what
differs per operator lives in `backends/torch_npu/<op>.py` (its `ADAPTER`; an op without a module is
declined as not implemented). Inputs move to the device once per case
in `prepare` (untimed), `launch` is the bare call, `fetch` brings outputs back as numpy; caches the
op updates in place are read back from the input tensors after the call. Latency comes from
`torch_npu.npu.Event(enable_timing=True)` pairs around the launch, cold-cache by default (a 192 MiB NPU
buffer zeroed before each sample's start event; `--cache hot` skips it).

`--backends torch_npu` uses logical device 0, `torch_npu:1` logical device 1: logical ids count the
devices that ASCEND_RT_VISIBLE_DEVICES leaves visible (the runtime re-indexes them from 0), so the
variable is honoured by never bypassing it.

The call target is injectable (`api=`): the test suite passes a namespace of `torch.ops.<ns>`
operators defined from the real torch_npu schemas, so every call is checked by the PyTorch
dispatcher against the real signatures without an NPU (tests/npu_schemas.py).
"""
from __future__ import annotations

import logging

import numpy as np

from harness.errors import Declined, Rejected
from harness.timing import ASCEND_L2_BYTES, EventTimer

from backends.base import Availability, Backend
from backends.torch import to_numpy, to_torch
from ._env import load, npu_availability, task_queue_note, visible_devices_note
from ._errors import DEVICE_FAULT, REFUSAL, SCHEMA_ERRORS, classify, deferred_operator, library_message
from backends.op_modules import not_implemented

from ._adapters import MODES, Call, adapter

log = logging.getLogger(__name__)
__all__ = ["TorchNpuBackend", "classify", "parse_device", "parse_option", "DEVICE_FAULT", "REFUSAL", "SCHEMA_ERRORS"]


class NpuEventTimer(EventTimer):
    """Device time between two `torch_npu.npu.Event(enable_timing=True)` recorded around the launch on the
    current stream (EventTimer synchronizes the end event before elapsed_time, acl_abi.md section 5 "Timing").

    Cold-cache timing: `flush()` (harness.timing.measure_run calls it before each cold sample, outside
    `elapsed_us`) zeroes an L2-sized NPU buffer (192 MiB) on the current stream, so the device runs it
    before the start event is recorded."""

    def __init__(self, torch_npu, synchronize, flusher: "NpuFlusher | None" = None):
        npu = torch_npu.npu
        super().__init__("npu_event", lambda: npu.Event(enable_timing=True), synchronize, flusher)


class NpuFlusher:
    """The flush buffer: `torch.empty(nbytes, int8)` on the backend's NPU at the first flush (never inside a
    timed call; hot mode never allocates it), then `zero_()` per flush; `release()` drops it."""

    def __init__(self, device: str, nbytes: int):
        self.device, self.nbytes, self.buffer = device, int(nbytes), None

    def flush(self) -> None:
        if self.buffer is None:
            import torch

            self.buffer = torch.empty(self.nbytes, dtype=torch.int8, device=self.device)
        self.buffer.zero_()

    def release(self) -> None:
        self.buffer = None   # back to torch_npu's caching allocator


def parse_option(option: str | None) -> tuple[str, frozenset]:
    """The device and the workaround modes of an option: '1+pcl_zero_seq_starts' -> ('npu:1', {...})."""
    device, modes = None, set()
    for part in filter(None, (option or "").strip().split("+")):
        if part in MODES:
            modes.add(part)
        else:
            device = part
    return parse_device(device), frozenset(modes)


def parse_device(option: str | None) -> str:
    """'' / None -> npu:0, '1' -> npu:1, 'npu:2' -> npu:2 (logical ids, after ASCEND_RT_VISIBLE_DEVICES)."""
    text = (option or "0").strip()
    if text.startswith("npu"):
        text = text[3:].lstrip(":") or "0"
    if not text.isdigit():
        from harness.errors import UsageError

        raise UsageError(f"torch_npu device option {option!r}: expected a logical device index like torch_npu:1 "
                         f"or a mode ({', '.join(sorted(MODES))})")
    return f"npu:{int(text)}"


class TorchNpuBackend(Backend):
    name = "torch_npu"
    may_crash = True  # an out-of-bounds kernel access can take the device (and the process) down
    flush_bytes = ASCEND_L2_BYTES  # cold-cache flush size (harness.timing)

    def __init__(self, option: str | None = None, *, api=None, device: str | None = None):
        """`api`: the object the torch_npu functions are looked up on (default: the torch_npu module)."""
        self._api = api
        self.option = option or None  # harness.isolate rebuilds the backend in a worker from this
        parsed_device, self.modes = parse_option(option)
        if api is not None:
            self.device = device or "cpu"
            self.name = "torch_npu[injected]" + (f":{option}" if option else "")
        else:
            self.device = parsed_device
            if option:
                self.name = f"torch_npu:{option}"
        self._device_set = False
        self._device_name: str | None = None
        self._timer: NpuEventTimer | None = None

    # ---- availability ----------------------------------------------------------------------------------------
    def available(self) -> Availability:
        if self._api is not None:
            return Availability(True)
        avail = npu_availability()
        if not avail:
            return avail
        index = int(self.device.split(":")[1])
        count = int(load().npu.device_count())
        if index >= count:
            return Availability(False, f"{self.device} requested but only {count} NPU(s) visible "
                                       f"({visible_devices_note()})")
        return Availability(True)

    def supports(self, spec, case):
        ad = adapter(spec.name)
        if ad is None:
            return not_implemented("torch_npu", spec.name)
        if ad.device_decline is not None and self._api is None:
            why = ad.device_decline(self.device_name())
            if why:
                return why
        if ad.api.startswith("atb.") and self._api is None:
            why = nnal_missing()
            if why:
                return why
        if case.negative:
            why = _unsafe_negative(spec, case)
            if why:
                return why
        return None

    # ---- running ---------------------------------------------------------------------------------------------
    @property
    def api(self):
        return self._api if self._api is not None else load()

    def _ensure_device(self):
        if self._api is None and not self._device_set:
            self.api.npu.set_device(self.device)
            self._device_set = True

    def has_mode(self, mode: str) -> bool:
        return mode in self.modes

    @property
    def kernel_key(self) -> str:
        """Equal for backends running the same kernel on the same device: harness.devcheck compares their outputs
        bitwise (aclnn and torch_npu on one NPU; torch_npu eager and torch_npu:graph)."""
        return f"injected:{id(self._api)}:{self.device}" if self._api is not None else f"ascend:{self.device}"

    def prepare(self, spec, case, inputs):
        ad = adapter(spec.name)
        if ad is None:
            raise Declined(not_implemented("torch_npu", spec.name))
        if ad.case_decline is not None:
            why = ad.case_decline(case.params, inputs)
            if why:
                raise Declined(why)
        if ad.workaround is not None:
            inputs = ad.workaround(self.modes, inputs)
        self._ensure_device()
        tensors = {k: self._to_device(k, v, ad.host_int_lists) for k, v in inputs.items()}
        call = ad.bind(self.api, tensors, case.params)
        self.synchronize()
        return {"spec": spec, "case": case, "adapter": ad, "call": call, "out": None}

    def _to_device(self, key, value, host_lists):
        if key in host_lists and value is not None:
            return [int(v) for v in np.asarray(value).reshape(-1)]  # int[] / SymInt[]: a host list
        if isinstance(value, np.ndarray):
            t = to_torch(value, self.device)
            # on cpu, to_torch shares memory with the numpy input: in-place ops must not write the case's data
            return t.clone() if t.device.type == "cpu" else t
        if isinstance(value, np.generic):
            return value.item()
        return value

    def launch(self, prepared):
        call: Call = prepared["call"]
        try:
            prepared["out"] = call.fn(*call.args, **call.kwargs)
        except RuntimeError as exc:
            # Parameter checks (aclnn GetWorkspaceSize, ATB Setup) raise from the call itself; a call that does
            # not fit the schema, or a Python error, is ours and stays an error, as do device faults.
            if classify(exc) != "rejected":
                raise
            raise Rejected(f"{call.name} refused the case: {library_message(exc)}") from exc

    def fetch(self, prepared):
        spec, ad, call = prepared["spec"], prepared["adapter"], prepared["call"]
        out = prepared["out"]
        values = list(out) if isinstance(out, (tuple, list)) else [out]
        by_name = dict(zip(ad.returns, values))
        if len(values) == len(spec.outputs):  # OpSpec.outputs follow the API's return order
            by_name.update(zip(spec.outputs, values))
        for name in ad.in_place:  # the cache the op updated in place, read after the call
            by_name[name] = call.tensors[name]
        missing = [o for o in spec.outputs if o not in by_name]
        if missing:
            raise RuntimeError(f"{call.name} returned {len(values)} tensor(s); cannot map outputs {missing}")
        return {o: to_numpy(by_name[o]) for o in spec.outputs}

    def synchronize(self):
        """Wait for the device. A refusal the task queue deferred to here is `Rejected` with the library's
        message (torch_npu_errors); any other failure is raised as it is (`error`)."""
        npu = load().npu if self._api is None else getattr(self._api, "npu", None)
        if npu is None:
            return
        try:
            npu.synchronize()
        except RuntimeError as exc:
            if classify(exc) != "rejected":
                raise
            op = deferred_operator(exc) or "the queued call"
            raise Rejected(f"{op} refused the case (raised at synchronize: the task queue runs GetWorkspaceSize "
                           f"in the queued task; TASK_QUEUE_ENABLE=0 raises it at the call): "
                           f"{library_message(exc)}") from exc

    def timer(self):
        """NPU events with an L2 flush (cold by default), made once: the flush buffer outlives cases."""
        if self._api is not None:
            return super().timer()
        if self._timer is None:
            self._timer = NpuEventTimer(load(), self.synchronize, NpuFlusher(self.device, self.flush_bytes))
        return self._timer

    def close(self) -> None:
        """Drop the timer and its flush buffer."""
        if self._timer is not None:
            self._timer._flusher.release()
            self._timer = None

    def device_name(self):
        if self._device_name is None:
            self._device_name = self._describe_device()
        return self._device_name

    def _describe_device(self):
        if self._api is not None:
            return f"{self.device} (injected torch_npu API)"
        if not self.available():
            return "unavailable"
        try:
            name = load().npu.get_device_name(int(self.device.split(":")[1]))
        except Exception as exc:  # a name is informative only
            log.debug("get_device_name failed: %s", exc)
            name = "NPU"
        modes = f"; workaround modes: {', '.join(sorted(self.modes))}" if self.modes else ""
        return f"{name} ({self.device}; {visible_devices_note()}; {task_queue_note()}{modes})"


def nnal_missing() -> str | None:
    """torch_npu.atb ops need NNAL's libatb.so, loaded lazily: torch_npu records the load failure at import
    (acl_abi.md section 5) and re-raises it on the first torch_npu.atb call; report it as a reason instead."""
    import importlib

    try:
        mod = importlib.import_module("torch_npu.op_plugin.atb._atb_ops")
    except Exception as exc:
        return f"torch_npu.atb cannot be imported ({type(exc).__name__}: {exc})"
    err = getattr(mod, "NNAL_EX", None)
    if err is not None:
        return (f"torch_npu.atb is unusable: NNAL (libatb.so) did not load ({err}); source the NNAL set_env.sh "
                f"(e.g. /usr/local/Ascend/nnal/atb/set_env.sh)")
    return None


def _unsafe_negative(spec, case) -> str | None:
    """Negative cases whose fault lives in the data (an out-of-range id, a duplicate slot): the kernels do
    not bounds-check (ops.md sections 1 and 4), so running them writes or reads outside the tensors."""
    try:
        c = spec.constraint(case.violates)
    except Exception:
        return None
    data_fault = "fault" in c.params or (c.check_inputs is not None and c.satisfied(case.params))
    if data_fault:
        return (f"negative case breaks data-level constraint {c.name!r}: the kernel does not check it, so running "
                f"it on the device risks out-of-bounds memory access")
    return None

"""aclnn backend: CANN's two-phase C API through ctypes (ATB's C API for PagedCacheLoad).

    prepare  device copies + aclTensors (untimed), phase 1 (XxxGetWorkspaceSize): a non-zero status is
             the verdict `rejected` (harness.errors.Rejected with the status name and aclGetRecentErrMsg),
             workspace allocated only when its size is > 0
    launch   phase 2 on the backend's stream (an unused phase-1 executor first, else phase 1 again: a
             non-repeatable executor is consumed by each phase 2); a failure raises AclCallError (`error`)
    fetch    device-to-host copies of the outputs
    timer    AclEventTimer: events around phase 2 only; cold-cache by default (an L2-sized aclrtMemsetAsync
             queued before the start event), `--cache hot` skips it

Resources of a prepared call are released exactly once: by `run()` after fetching, or, for calls the
harness prepares for timing, when the next call is prepared or the backend is closed. An executor that
phase 2 never consumed is destroyed with aclDestroyAclOpExecutor; an ATB operation with
atb::DestroyOperation. Nothing here touches CANN at import time.
"""
from __future__ import annotations

import atexit
import logging
from ctypes import byref, c_uint32, c_uint64, c_void_p

from harness.errors import Declined, Rejected
from harness.timing import ASCEND_L2_BYTES

from . import _codes
from ._binding import Binding, binding_of
from ._lib import Cann, CannUnavailable, load
from ._runtime import AclCallError, Runtime, check, recent_error
from ._tensor import DeviceBuffer, Scope
from .paged_cache_load import PCL_ZERO_SEQ_STARTS

from backends.base import Availability, Backend
from backends.op_modules import not_implemented

log = logging.getLogger(__name__)
__all__ = ["AclnnBackend", "AclCallError"]
#: workaround modes the option may name (the op module that reads one documents it)
MODES = frozenset({PCL_ZERO_SEQ_STARTS})


class Call:
    """One prepared operator call: its scope, phase-1 arguments, outputs, and executor / ATB op state."""

    def __init__(self, backend: "AclnnBackend", binding: Binding):
        self.backend, self.binding = backend, binding
        self.rt: Runtime = backend._runtime
        self.scope = Scope(self.rt)
        self.outputs: dict[str, DeviceBuffer] = {}
        self.args: list = []
        self.executor: int | None = None      # phase-1 executor not yet consumed by a phase 2
        self.atb_op = c_void_p(None)           # ATB: NULL until the first GetWorkspaceSize creates it
        self.workspace: int | None = None
        self.workspace_size = 0
        self.launched = False                  # work queued since the last synchronize
        self.closed = False

    # ---- what the argument tables call (backends/aclnn/_binding.py) ---------------------------------------
    def tensor(self, array, fmt: int = _codes.ACL_FORMAT_ND) -> int:
        return self.scope.tensor(array, fmt).handle

    def output(self, name: str, shape, dtype: str, fmt: int = _codes.ACL_FORMAT_ND) -> int:
        buf = self.scope.empty(shape, dtype, fmt)
        self.outputs[name] = buf
        return buf.handle

    def inout(self, name: str, array, fmt: int = _codes.ACL_FORMAT_ND) -> int:
        buf = self.scope.tensor(array, fmt)
        self.outputs[name] = buf
        return buf.handle

    def optional(self, array, fmt: int = _codes.ACL_FORMAT_ND) -> int | None:
        return None if array is None else self.tensor(array, fmt)

    def int_array(self, values) -> int | None:
        return None if values is None else self.scope.int_array(values)

    def tensor_list(self, arrays, fmt: int = _codes.ACL_FORMAT_ND) -> int:
        return self.scope.tensor_list([self.tensor(a, fmt) for a in arrays])

    # ---- phases ---------------------------------------------------------------------------------------------
    def _c_args(self) -> list:
        return [a.encode() if isinstance(a, str) else a for a in self.args]

    def phase1(self) -> None:
        b, cann = self.binding, self.rt.cann
        size = c_uint64(0)
        p1, _ = cann.op_symbol(b)
        if b.family == "atb":
            st = p1(*self._c_args(), byref(size), byref(self.atb_op), self.rt.atb())
        else:
            executor = c_void_p(None)
            st = p1(*self._c_args(), byref(size), byref(executor))
            if st == 0:
                self.executor = executor.value
        if st != 0:
            name = _codes.status_name(st, b.family)
            raise Rejected(f"{b.symbol}GetWorkspaceSize rejected the case: status {st} {name}: "
                           f"{recent_error(cann) or '(no error message)'}", code=st, code_name=name)
        if size.value > self.workspace_size:   # allocate only when > 0; grow if a re-query asks for more
            if self.workspace is not None:
                self.rt.synchronize()
                self.rt.free(self.workspace)
                self.scope._items.remove(("mem", self.workspace))
                self.workspace = None
            self.workspace = self.scope.alloc(size.value)
            self.workspace_size = size.value

    def launch(self, events: tuple[int, int] | None = None) -> None:
        b, cann, rt = self.binding, self.rt.cann, self.rt
        rt.ensure_thread()
        _, p2 = cann.op_symbol(b)
        if b.family == "atb":
            if self.launched_once:
                self.phase1()
            ctx = rt.atb()
            run = lambda: p2(self.workspace, self.workspace_size, self.atb_op, ctx)  # noqa: E731
        else:
            if self.executor is None:
                self.phase1()
            executor, self.executor = self.executor, None   # phase 2 consumes it, even when it fails
            run = lambda: p2(self.workspace, self.workspace_size, executor, rt.stream)  # noqa: E731
        if events:
            rt.record(events[0])
        st = run()
        self.launched_once = self.launched = True
        if events:
            rt.record(events[1])
        check(cann, st, b.symbol, b.family)

    launched_once = False

    def fetch(self, params, inputs) -> dict:
        out = {name: self.scope.fetch(buf) for name, buf in self.outputs.items()}
        return self.binding.post(params, inputs, out) if self.binding.post else out

    def close(self) -> None:
        """Release everything once; synchronize first if work may still be running on the stream."""
        if self.closed:
            return
        self.closed = True
        cann = self.rt.cann
        try:
            if self.launched:
                self.rt.synchronize()
        except AclCallError as exc:
            log.warning("synchronize before release failed: %s", exc)
        if self.executor is not None:   # phase 1 ran, phase 2 never did
            st = cann.nn.aclDestroyAclOpExecutor(self.executor)
            if st != 0:
                log.warning("aclDestroyAclOpExecutor returned %d: %s", st, recent_error(cann))
            self.executor = None
        if self.atb_op.value:
            from ._lib import ATB_DESTROY_OPERATION

            st = cann.atb_fn(ATB_DESTROY_OPERATION)(self.atb_op)
            if st != 0:
                log.warning("atb::DestroyOperation returned %d: %s", st, recent_error(cann))
            self.atb_op = c_void_p(None)
        self.scope.close()


def parse_option(text: str) -> tuple[int, frozenset]:
    """'0' -> (0, {}); '1+pcl_zero_seq_starts' -> (1, {'pcl_zero_seq_starts'}); an unknown part is a TypeError
    (the registry turns it into a usage error naming the option)."""
    device, modes = 0, set()
    for part in filter(None, text.split("+")):
        if part.isdigit():
            device = int(part)
        elif part in MODES:
            modes.add(part)
        else:
            raise TypeError(f"aclnn option {text!r}: {part!r} is neither a device id (aclnn:1) nor a mode "
                            f"({', '.join(sorted(MODES))})")
    return device, frozenset(modes)


class AclEventTimer:
    """Device time of one phase 2 between two ACL_EVENT_TIME_LINE events (aclrtEventElapsedTime).

    Cold-cache timing (harness.timing.measure_run calls `flush()` before each `elapsed_us()` when the mode
    is cold): `flush()` queues aclrtMemsetAsync over a `cache_bytes` device buffer (the Ascend L2, 192 MiB)
    on the backend's stream. The start event is recorded later, inside `launch`, on the same stream, so the
    device runs the memset before the timed span begins. The buffer is allocated on the first flush (hot
    mode never allocates it) and freed when the backend closes.
    """

    mode = "acl_event"

    def __init__(self, backend: "AclnnBackend"):
        self.backend = backend
        self.cache_bytes = backend.flush_bytes

    def flush(self) -> None:
        self.backend._runtime.flush_l2(self.cache_bytes)

    def elapsed_us(self, launch) -> float:
        b = self.backend
        events = b._runtime.timing_events()
        b._armed = events
        try:
            launch()
        finally:
            b._armed = None
        b.synchronize()
        return b._runtime.elapsed_ms(*events) * 1e3


class AclnnBackend(Backend):
    name = "aclnn"
    may_crash = True   # a kernel fault or a CANN abort takes the process down: the CLI isolates it
    flush_bytes = ASCEND_L2_BYTES   # cold-cache flush size (harness.timing; tests shrink it per instance)

    def __init__(self, device: str = "0"):
        """`device`: the option after the colon: a device id, and/or workaround modes joined by '+'
        (`aclnn:1`, `aclnn:pcl_zero_seq_starts`, `aclnn:1+pcl_zero_seq_starts`)."""
        self.device_id, self.modes = parse_option(str(device))
        self.option = str(device) if str(device) != "0" else None   # harness.isolate rebuilds the worker from it
        if self.option:
            self.name = f"aclnn:{self.option}"
        self._cann: Cann | None = None
        self._rt: Runtime | None = None
        self._closed = False
        self._availability: Availability | None = None
        self._live: list[Call] = []
        self._armed = None
        self._atexit = False

    def has_mode(self, mode: str) -> bool:
        return mode in self.modes

    @property
    def kernel_key(self) -> str:
        """The same kernel as torch_npu on this device (backends.torch_npu): harness.devcheck pairs them bitwise."""
        return f"ascend:npu:{self.device_id}"

    # ---- availability ---------------------------------------------------------------------------------------
    def available(self) -> Availability:
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def _probe(self) -> Availability:
        """Load the libraries, aclInit, count devices. The device itself (aclrtSetDevice, stream, ATB
        context) is taken on the first prepare, so a process that only asks (the CLI parent of an isolated
        worker) holds no device context."""
        try:
            self._cann = load()
        except CannUnavailable as exc:
            return Availability(False, str(exc))
        rt = self._cann.rt
        st = rt.aclInit(None)
        if st not in (_codes.ACL_SUCCESS, _codes.ACL_ERROR_REPEAT_INITIALIZE):
            return Availability(False, f"CANN found at {self._cann.root} but aclInit failed: status {st} "
                                       f"{_codes.status_name(st)}: {recent_error(self._cann)}")
        recent_error(self._cann)   # a repeat-initialize leaves a message behind
        count = c_uint32(0)
        st = rt.aclrtGetDeviceCount(byref(count))
        if st != 0 or count.value <= self.device_id:
            return Availability(False, f"CANN found at {self._cann.root} but device {self.device_id} is not visible "
                                       f"(aclrtGetDeviceCount: status {st}, {count.value} device(s); check the driver "
                                       f"and ASCEND_RT_VISIBLE_DEVICES)")
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True
        return Availability(True)

    @property
    def _runtime(self) -> Runtime | None:
        """The runtime for this device, created on first use (aclrtSetDevice, stream)."""
        if self._rt is None and not self._closed and self.available():
            self._rt = Runtime(self._cann, self.device_id)
        return self._rt

    def supports(self, spec, case):
        binding = binding_of(spec.name)
        if binding is None:
            return not_implemented("aclnn", spec.name)
        if not self.available():
            return None   # reported as unavailable, not declined
        try:
            self._cann.op_symbol(binding)
        except CannUnavailable as exc:
            return str(exc)
        return binding.decline(case.params, self.soc_name())

    def device_name(self) -> str:
        if not self.available():
            return "unavailable"
        modes = f"; workaround modes: {', '.join(sorted(self.modes))}" if self.modes else ""
        return f"{self.soc_name()} (device {self.device_id}, CANN at {self._cann.root}{modes})"

    def soc_name(self) -> str:
        """aclrtGetSocName(), e.g. Ascend910B1; '' when unavailable."""
        if not self.available():
            return ""
        name = self._cann.rt.aclrtGetSocName()
        return name.decode() if name else ""

    # ---- running --------------------------------------------------------------------------------------------
    def prepare(self, spec, case, inputs) -> Call:
        binding = binding_of(spec.name)
        if binding is None:
            raise Declined(not_implemented("aclnn", spec.name))
        avail = self.available()
        if not avail:
            raise CannUnavailable(avail.reason)
        self._runtime.ensure_thread()
        self._release_live()
        call = Call(self, binding)
        call.params, call.inputs = case.params, inputs
        self._live.append(call)
        try:
            call.args = binding.arguments(call, case.params, inputs, self.modes)
            call.phase1()
        except BaseException:
            self._release(call)
            raise
        return call

    def launch(self, prepared: Call) -> None:
        prepared.launch(self._armed)

    def synchronize(self) -> None:
        if self._rt is not None:
            self._rt.synchronize()
            for c in self._live:
                c.launched = False

    def fetch(self, prepared: Call) -> dict:
        self._runtime.ensure_thread()
        return prepared.fetch(prepared.params, prepared.inputs)

    def run(self, spec, case, inputs) -> dict:
        prepared = self.prepare(spec, case, inputs)
        try:
            self.launch(prepared)
            self.synchronize()
            return self.fetch(prepared)
        finally:
            self._release(prepared)

    def timer(self):
        return AclEventTimer(self)

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def _release(self, call: Call) -> None:
        if call in self._live:
            self._live.remove(call)
        call.close()

    def _release_live(self) -> None:
        for c in list(self._live):
            self._release(c)

    def close(self) -> None:
        """Release every prepared call, then the runtime's flush buffer, stream, events and ATB context."""
        self._closed = True
        self._availability = Availability(False, "aclnn backend closed")
        if self._rt is None:
            return
        self._release_live()
        self._rt.close()
        self._rt = None

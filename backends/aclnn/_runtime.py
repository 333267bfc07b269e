"""ACL runtime through ctypes: init once, device per thread, one stream, device memory, events, and the
L2-sized buffer that cold-cache timing overwrites before each sample.

Every non-zero status raises `AclCallError` carrying the code, its name and the text of
aclGetRecentErrMsg(), read at once (reading clears it).
"""
from __future__ import annotations

import ctypes
import logging
import threading
from ctypes import byref, c_float, c_void_p

import numpy as np

from . import _codes
from ._lib import Cann

log = logging.getLogger(__name__)


class AclCallError(RuntimeError):
    """A CANN call returned a non-zero status."""

    def __init__(self, api: str, code: int, name: str, message: str):
        self.api, self.code, self.code_name, self.message = api, code, name, message
        super().__init__(f"{api} returned {code} {name}: {message or '(no error message)'}")


def recent_error(cann: Cann) -> str:
    msg = cann.rt.aclGetRecentErrMsg()
    return msg.decode("utf-8", "replace").strip() if msg else ""


def check(cann: Cann, status: int, api: str, family: str = "acl") -> None:
    if status != 0:
        raise AclCallError(api, status, _codes.status_name(status, family), recent_error(cann))


class Runtime:
    """Process-wide ACL state for one device: init, per-thread device, one stream, ATB context."""

    def __init__(self, cann: Cann, device_id: int = 0):
        self.cann, self.device_id = cann, device_id
        self._local = threading.local()
        self.stream = None
        self.atb_context = None
        self._events: list = []
        self._flush: tuple[int, int] | None = None   # (device pointer, bytes) of the L2 flush buffer
        self._closed = False
        rt = cann.rt
        st = rt.aclInit(None)
        if st not in (_codes.ACL_SUCCESS, _codes.ACL_ERROR_REPEAT_INITIALIZE):  # torch_npu may have called it
            check(cann, st, "aclInit")
        recent_error(cann)  # a repeat-initialize leaves a message behind; clear it
        self.ensure_thread()
        stream = c_void_p()
        check(cann, rt.aclrtCreateStream(byref(stream)), "aclrtCreateStream")
        self.stream = stream.value

    # ---- device / stream --------------------------------------------------------------------------------
    def ensure_thread(self) -> None:
        """aclrtSetDevice in every thread that calls the runtime (the device is per thread)."""
        if not getattr(self._local, "device_set", False):
            check(self.cann, self.cann.rt.aclrtSetDevice(self.device_id), f"aclrtSetDevice({self.device_id})")
            self._local.device_set = True

    def synchronize(self) -> None:
        self.ensure_thread()
        check(self.cann, self.cann.rt.aclrtSynchronizeStream(self.stream), "aclrtSynchronizeStream")

    # ---- memory -------------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        ptr = c_void_p()
        check(self.cann, self.cann.rt.aclrtMalloc(byref(ptr), nbytes, _codes.ACL_MEM_MALLOC_HUGE_FIRST),
              f"aclrtMalloc({nbytes})")
        return ptr.value

    def free(self, ptr: int) -> None:
        check(self.cann, self.cann.rt.aclrtFree(ptr), "aclrtFree")

    def h2d(self, dst: int, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        check(self.cann, self.cann.rt.aclrtMemcpy(dst, a.nbytes, a.ctypes.data, a.nbytes,
                                                  _codes.ACL_MEMCPY_HOST_TO_DEVICE), "aclrtMemcpy(host to device)")

    def d2h(self, out: np.ndarray, src: int) -> None:
        check(self.cann, self.cann.rt.aclrtMemcpy(out.ctypes.data, out.nbytes, src, out.nbytes,
                                                  _codes.ACL_MEMCPY_DEVICE_TO_HOST), "aclrtMemcpy(device to host)")

    def memset(self, ptr: int, nbytes: int, value: int = 0) -> None:
        check(self.cann, self.cann.rt.aclrtMemset(ptr, nbytes, value, nbytes), "aclrtMemset")

    def flush_l2(self, nbytes: int) -> None:
        """Queue aclrtMemsetAsync over an `nbytes` device buffer on this stream (cold-cache timing). The buffer
        is allocated on the first call (never inside a timed span: the caller flushes before recording its
        start event) and reused until close(); a request for more bytes replaces it."""
        self.ensure_thread()
        if self._flush is not None and self._flush[1] < nbytes:
            self.synchronize()   # a queued memset may still target the old buffer
            ptr, self._flush = self._flush[0], None
            self.free(ptr)
        if self._flush is None:
            self._flush = (self.malloc(nbytes), nbytes)
        ptr = self._flush[0]
        check(self.cann, self.cann.rt.aclrtMemsetAsync(ptr, nbytes, 0, nbytes, self.stream), "aclrtMemsetAsync")

    # ---- events -------------------------------------------------------------------------------------------
    def timing_events(self) -> tuple[int, int]:
        """Two events created once with ACL_EVENT_TIME_LINE, destroyed by close()."""
        if not self._events:
            for _ in range(2):
                ev = c_void_p()
                check(self.cann, self.cann.rt.aclrtCreateEventWithFlag(byref(ev), _codes.ACL_EVENT_TIME_LINE),
                      "aclrtCreateEventWithFlag(ACL_EVENT_TIME_LINE)")
                self._events.append(ev.value)
        return self._events[0], self._events[1]

    def record(self, event: int) -> None:
        check(self.cann, self.cann.rt.aclrtRecordEvent(event, self.stream), "aclrtRecordEvent")

    def elapsed_ms(self, start: int, end: int) -> float:
        check(self.cann, self.cann.rt.aclrtSynchronizeEvent(end), "aclrtSynchronizeEvent")
        ms = c_float()
        check(self.cann, self.cann.rt.aclrtEventElapsedTime(byref(ms), start, end), "aclrtEventElapsedTime")
        return float(ms.value)

    # ---- ATB context ----------------------------------------------------------------------------------------
    def atb(self):
        """The process-wide atb::Context (created after aclrtSetDevice), with this stream set on it."""
        from . import _lib

        self.ensure_thread()
        if self.atb_context is None:
            ctx = c_void_p()
            check(self.cann, self.cann.atb_fn(_lib.ATB_CREATE_CONTEXT)(byref(ctx)), "atb::CreateContext", "atb")
            self.atb_context = ctx.value
        # SetExecuteStream is a pure virtual of atb::Context: call it through vtable slot 2 (acl_abi.md)
        vtable = ctypes.cast(self.atb_context, ctypes.POINTER(c_void_p))[0]
        slot = ctypes.cast(vtable, ctypes.POINTER(c_void_p))[_lib.ATB_SET_EXECUTE_STREAM_SLOT]
        st = _lib.ATB_SET_EXECUTE_STREAM(slot)(self.atb_context, self.stream)
        check(self.cann, st, "atb::Context::SetExecuteStream", "atb")
        return self.atb_context

    # ---- teardown -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy what this runtime created, each once. aclFinalize is left alone: torch_npu or another
        user of the process may still need ACL, and CANN advises against finalizing from teardown code."""
        if self._closed:
            return
        self._closed = True
        from . import _lib

        rt = self.cann.rt
        try:
            self.ensure_thread()
        except AclCallError as exc:
            log.warning("aclnn runtime close: %s", exc)
            return
        steps = []
        if self.atb_context is not None:
            steps.append(("atb::DestroyContext",
                          lambda: self.cann.atb_fn(_lib.ATB_DESTROY_CONTEXT)(self.atb_context)))
        if self._flush is not None:   # a flush may still be queued: let the stream finish before freeing
            steps.append(("aclrtSynchronizeStream", lambda: rt.aclrtSynchronizeStream(self.stream)))
            steps.append(("aclrtFree(flush buffer)", lambda: rt.aclrtFree(self._flush[0])))
        steps += [("aclrtDestroyEvent", (lambda e=e: rt.aclrtDestroyEvent(e))) for e in self._events]
        if self.stream is not None:
            steps.append(("aclrtDestroyStream", lambda: rt.aclrtDestroyStream(self.stream)))
        steps.append(("aclrtResetDevice", lambda: rt.aclrtResetDevice(self.device_id)))
        for api, call in steps:
            st = call()
            if st != 0:
                log.warning("aclnn runtime close: %s returned %d: %s", api, st, recent_error(self.cann))
        self.atb_context, self._events, self.stream, self._flush = None, [], None, None
        self._local.device_set = False

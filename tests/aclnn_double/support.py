"""Test support for the aclnn backend: build the CANN double once per session, read its counters."""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path

CANN_ENV = ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "ATB_HOME_PATH", "ASCEND_CUSTOM_OPP_PATH", "ASCEND_OPP_PATH",
            "OPDIFF_ACLNN_DOUBLE_FAULT")
KINDS = ("tensor", "int_array", "tensor_list", "executor", "device_mem", "stream", "event", "atb_context",
         "atb_operation")


_SHARED: dict = {}


def shared_build(tmp_path_factory):
    """The double, built once per process for every test module: two builds loaded into one process would
    bind each other's runtime (their libraries share sonames), so the modules must share one."""
    from . import build

    if "install" not in _SHARED:
        try:
            _SHARED["install"] = build.build(tmp_path_factory.mktemp("cann_double"))
        except build.BuildUnavailable as exc:
            _SHARED["install"] = exc
    if isinstance(_SHARED["install"], Exception):
        raise _SHARED["install"]
    return _SHARED["install"]


def built_or_skip(tmp_path_factory):
    """`shared_build`, or skip the calling test where no compiler or ACL header can build the double."""
    import pytest

    from . import build

    try:
        return shared_build(tmp_path_factory)
    except build.BuildUnavailable as exc:
        pytest.skip(f"the CANN double cannot be built here: {exc}")


@contextmanager
def cann_env(env: dict, home: Path | None = None):
    """Point CANN discovery at `env` only (and optionally HOME, which discovery also probes)."""
    saved = {k: os.environ.get(k) for k in CANN_ENV + ("HOME",)}
    try:
        for k in CANN_ENV:
            os.environ.pop(k, None)
        os.environ.update(env)
        if home is not None:
            os.environ["HOME"] = str(home)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Counters:
    """The double's create/destroy counters, read through its libascendcl.so (the same loaded copy)."""

    def __init__(self, lib64: Path):
        self.lib = ctypes.CDLL(str(lib64 / "libascendcl.so"), mode=ctypes.RTLD_GLOBAL)
        for name, res, args in (("opdiff_double_live", ctypes.c_int64, [ctypes.c_char_p]),
                                ("opdiff_double_created", ctypes.c_int64, [ctypes.c_char_p]),
                                ("opdiff_double_bad_calls", ctypes.c_int64, []),
                                ("opdiff_double_set_fault", None, [ctypes.c_char_p]),
                                ("opdiff_double_calls", ctypes.c_int64, [ctypes.c_char_p]),
                                ("opdiff_double_last_memset_bytes", ctypes.c_uint64, []),
                                ("opdiff_double_take_trace", ctypes.c_size_t, [ctypes.c_char_p, ctypes.c_size_t])):
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = res, args

    def live(self) -> dict:
        return {k: self.lib.opdiff_double_live(k.encode()) for k in KINDS}

    def created(self, kind: str) -> int:
        return self.lib.opdiff_double_created(kind.encode())

    def bad_calls(self) -> int:
        return self.lib.opdiff_double_bad_calls()

    def fault(self, spec: str) -> None:
        self.lib.opdiff_double_set_fault(spec.encode())

    def calls(self, api: str) -> int:
        """How many times the double's `api` entry point was called (aclrtMemset, aclrtMemsetAsync)."""
        return self.lib.opdiff_double_calls(api.encode())

    def last_memset_bytes(self) -> int:
        return self.lib.opdiff_double_last_memset_bytes()

    def take_trace(self) -> str:
        """Stream tasks in the order they ran since the last read ('M' memset, 'R' event record, 'K' kernel)."""
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.opdiff_double_take_trace(buf, len(buf))
        assert n < len(buf), f"trace overflowed ({n} tasks)"
        return buf.value.decode()

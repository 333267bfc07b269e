"""aclTensor / aclIntArray / aclTensorList from numpy arrays, owned by a `Scope`.

A Scope records every device allocation and nnopbase handle it creates and releases each exactly once,
newest first: tensors placed into a tensor list belong to the list (aclDestroyTensorList destroys them).
"""
from __future__ import annotations

import ctypes
import logging
from ctypes import c_int64, c_void_p
from dataclasses import dataclass

import numpy as np

from harness.dtypes import name_of, np_dtype

from . import _codes
from ._runtime import Runtime, recent_error

log = logging.getLogger(__name__)


class TensorError(RuntimeError):
    """An nnopbase create call returned NULL."""


@dataclass
class DeviceBuffer:
    ptr: int | None        # None for an empty tensor (no allocation: aclrtMalloc(0) is illegal)
    shape: tuple
    dtype: str
    handle: int            # aclTensor*
    strides: tuple | None = None   # element strides of a strided view; None = contiguous
    storage: int = 0               # elements of the storage a strided view spans


def acl_dtype(name: str) -> int:
    try:
        return _codes.ACL_DTYPE[name][1]
    except KeyError:
        raise TensorError(f"dtype {name} has no aclDataType mapping in backends/aclnn/_codes.py") from None


def _i64(values) -> ctypes.Array:
    vals = [int(v) for v in values]
    return (c_int64 * max(len(vals), 1))(*vals)


class Scope:
    def __init__(self, rt: Runtime):
        self.rt = rt
        self._items: list[tuple[str, int]] = []   # (kind, handle or pointer), creation order
        self._owned_by_list: set[int] = set()
        self.closed = False

    # ---- creation -----------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int | None:
        if nbytes <= 0:
            return None
        ptr = self.rt.malloc(nbytes)
        self._items.append(("mem", ptr))
        return ptr

    def _tensor(self, ptr, shape, dtype: str, fmt: int, strides=None, storage: int = 0) -> int:
        nn = self.rt.cann.nn
        dims = _i64(shape)
        if strides is None:
            strides, s = [], 1
            for d in reversed(shape):   # element strides of a contiguous array
                strides.append(s)
                s *= int(d)
            strides = list(reversed(strides))
            storage_dims, n_storage = dims, len(shape)
        else:                           # a strided view over a 1-D storage (as torch_npu passes views)
            storage_dims, n_storage = _i64([storage]), 1
        h = nn.aclCreateTensor(dims, len(shape), acl_dtype(dtype), _i64(strides), 0, fmt, storage_dims, n_storage,
                               ptr)
        if not h:
            raise TensorError(f"aclCreateTensor(shape={tuple(shape)}, dtype={dtype}) returned NULL: "
                              f"{recent_error(self.rt.cann)}")
        self._items.append(("tensor", h))
        return h

    def tensor(self, array: np.ndarray, fmt: int = _codes.ACL_FORMAT_ND) -> DeviceBuffer:
        """Device copy of a host array and an aclTensor over it (element strides, offset 0).

        A non-contiguous view with non-negative strides keeps its strides, broadcast views (stride 0)
        included, as torch_npu passes expanded tensors: the library decides whether it accepts them, and a
        huge broadcast input of a negative case stays small. Other arrays are made contiguous."""
        a = np.asarray(array)
        item = a.dtype.itemsize
        if not a.flags.c_contiguous and a.size and all(s >= 0 and s % item == 0 for s in a.strides):
            return self._strided(a)
        a = np.ascontiguousarray(a)
        ptr = self.alloc(a.nbytes)
        if ptr is not None:
            self.rt.h2d(ptr, a)
        return DeviceBuffer(ptr, a.shape, name_of(a), self._tensor(ptr, a.shape, name_of(a), fmt))

    def _strided(self, a: np.ndarray) -> DeviceBuffer:
        item = a.dtype.itemsize
        strides = tuple(s // item for s in a.strides)
        span = 1 + sum((d - 1) * s for d, s in zip(a.shape, strides))
        host = np.zeros(span, dtype=a.dtype)
        np.lib.stride_tricks.as_strided(host, a.shape, a.strides)[...] = a
        ptr = self.alloc(host.nbytes)
        self.rt.h2d(ptr, host)
        h = self._tensor(ptr, a.shape, name_of(a), _codes.ACL_FORMAT_ND, strides, span)
        return DeviceBuffer(ptr, a.shape, name_of(a), h, strides, span)

    def empty(self, shape, dtype: str, fmt: int = _codes.ACL_FORMAT_ND) -> DeviceBuffer:
        """A zero-filled device tensor (outputs: regions the op does not write compare as zeros)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype(dtype).itemsize
        ptr = self.alloc(nbytes)
        if ptr is not None:
            self.rt.memset(ptr, nbytes)
        return DeviceBuffer(ptr, tuple(int(d) for d in shape), dtype, self._tensor(ptr, shape, dtype, fmt))

    def int_array(self, values) -> int:
        vals = [int(v) for v in values]
        h = self.rt.cann.nn.aclCreateIntArray(_i64(vals), len(vals))
        if not h:
            raise TensorError(f"aclCreateIntArray({vals}) returned NULL")
        self._items.append(("int_array", h))
        return h

    def tensor_list(self, tensors: list[int]) -> int:
        arr = (c_void_p * max(len(tensors), 1))(*tensors)
        h = self.rt.cann.nn.aclCreateTensorList(arr, len(tensors))
        if not h:
            raise TensorError("aclCreateTensorList returned NULL")
        self._owned_by_list.update(tensors)   # destroyed by aclDestroyTensorList, never on their own
        self._items.append(("tensor_list", h))
        return h

    def fetch(self, buf: DeviceBuffer) -> np.ndarray:
        if buf.strides is not None:
            host = np.empty(buf.storage, dtype=np_dtype(buf.dtype))
            self.rt.d2h(host, buf.ptr)
            item = host.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(host, buf.shape, tuple(s * item for s in buf.strides))
            return np.array(view)
        out = np.empty(buf.shape, dtype=np_dtype(buf.dtype))
        if buf.ptr is not None and out.nbytes:
            self.rt.d2h(out, buf.ptr)
        return out

    # ---- release --------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        rt = self.rt
        nn = rt.cann.nn
        destroy = {"tensor": nn.aclDestroyTensor, "int_array": nn.aclDestroyIntArray,
                   "tensor_list": nn.aclDestroyTensorList, "mem": rt.cann.rt.aclrtFree}
        for kind, h in reversed(self._items):
            if kind == "tensor" and h in self._owned_by_list:
                continue
            st = destroy[kind](h)
            if st != 0:
                log.warning("releasing %s: status %d: %s", kind, st, recent_error(rt.cann))
        self._items.clear()

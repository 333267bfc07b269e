"""Tensors of a torch_npu call as host numpy arrays, and their signature, without touching the call."""
from __future__ import annotations

import hashlib

import numpy as np

from ..dtypes import np_dtype

ACL_FORMATS = {2: "ND", 29: "FRACTAL_NZ"}   # aclFormat codes opdiff distinguishes (acl_abi.md section 3)


_TENSOR: tuple = ()


def is_tensor(value) -> bool:
    global _TENSOR
    if not _TENSOR:
        import torch   # lazy: only a program that calls torch_npu reaches here, and it has torch loaded

        _TENSOR = (torch.Tensor,)
    return isinstance(value, _TENSOR)


def dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def nbytes(t) -> int:
    return int(t.numel()) * int(t.element_size())


def to_host(t) -> np.ndarray:
    """A host copy (never a view: the op may write the tensor in place after this returns)."""
    import torch

    c = t.detach().to("cpu").contiguous()
    if c.dtype == torch.bfloat16:
        return np.array(c.view(torch.int16).numpy().view(np.uint16).view(np_dtype("bfloat16")), copy=True)
    return np.array(c.numpy(), copy=True)


def format_getter(module):
    return getattr(module, "get_npu_format", None)


def storage_format(getter, t) -> str:
    """The tensor's storage format as torch_npu's get_npu_format reports it (ND when it cannot tell)."""
    if getter is None:
        return "ND"
    try:
        code = int(getter(t))
    except Exception:   # a CPU tensor, or a torch_npu without the query: no private format
        return "ND"
    return ACL_FORMATS.get(code, f"ACL_FORMAT_{code}")


def describe(bound: dict, skip: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(tensor name -> (dtype, shape), attribute name -> value) of a bound call."""
    tensors, attrs = {}, {}
    for name, v in bound.items():
        if name in skip:
            continue
        if is_tensor(v):
            tensors[name] = (dtype_name(v), [int(s) for s in v.shape])
        else:
            attrs[name] = list(v) if isinstance(v, tuple) else v
    return tensors, attrs


def _frozen(v):
    return tuple(_frozen(x) for x in v) if isinstance(v, (list, tuple)) else v


def signature_key(api: str, tensors: dict, attrs: dict, formats: dict) -> tuple:
    """Identical signature = same entry point, tensor dtypes, shapes and formats, same attribute values.
    A plain tuple: it is computed on every call looked at, so it must cost microseconds, not a hash digest."""
    return (api, tuple(sorted((k, d, tuple(s), formats.get(k, "ND")) for k, (d, s) in tensors.items())),
            tuple(sorted((k, _frozen(v)) for k, v in attrs.items())))


def signature(api: str, tensors: dict, attrs: dict, formats: dict) -> str:
    """The signature as a stable hex digest, for manifests."""
    return hashlib.sha1(repr(signature_key(api, tensors, attrs, formats)).encode()).hexdigest()

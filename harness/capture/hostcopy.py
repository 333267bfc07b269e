"""Tensors of a torch_npu call as host numpy arrays, and their signature, without touching the call."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from ..dtypes import np_dtype

ACL_FORMATS = {2: "ND", 29: "FRACTAL_NZ"}   # aclFormat codes opdiff distinguishes (acl_abi.md section 3)


def is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and hasattr(value, "dtype")


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


def storage_format(module, t) -> str:
    """The tensor's storage format as torch_npu reports it (ND when the module cannot tell)."""
    getter = getattr(module, "get_npu_format", None)
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


def signature(api: str, tensors: dict, attrs: dict, formats: dict) -> str:
    """Identical signature = same entry point, tensor dtypes, shapes and formats, same attribute values."""
    text = json.dumps([api, sorted((k, d, s, formats.get(k, "ND")) for k, (d, s) in tensors.items()),
                       sorted(attrs.items(), key=lambda kv: kv[0])], default=repr, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()

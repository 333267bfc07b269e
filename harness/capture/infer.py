"""Case parameters of a recorded call, inferred from its tensors and attributes.

`infer(record) -> (params, inputs)` calls the op spec's `infer_call(arguments, tensor meta, manifest)`
(`cases/_capture_<op>.py`; an op without one cannot be replayed), built from the helpers here: `inputs` is the op's inputs dict (keyed like its build_inputs:
torch_npu argument names plus the keys the backends read, such as paged_cache_load's kv_cache_cfg),
`params` a full parameter dict of the op's spec, each value read off the data (what build_inputs
would have been given to produce such tensors), so that the spec's constraints, output dtypes,
regions and the backends' declines judge the real call. Values a tensor cannot tell (the value
distribution, a data-level fault) are "recorded" / "none": the data-level constraint checks run on
the tensors themselves. A record the op's inputs cannot be built from raises Unusable.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import name_of


class Unusable(ValueError):
    """The record's arguments do not form an input of the op (the message says what is wrong)."""


def infer(record) -> tuple[dict, dict]:
    from .. import registry
    from ..errors import UnknownNameError

    try:
        spec = registry.op(record.op)
    except UnknownNameError as exc:
        raise Unusable(str(exc)) from None
    if spec.infer_call is None:
        raise Unusable(f"no parameter inference for operator {record.op!r} (its spec has no infer_call)")
    meta = {k: record.manifest["tensors"].get(k, {}) for k in record.tensors}   # format, contiguous
    return spec.infer_call(record.arguments(), meta, record.manifest)


def tensor(args: dict, name: str, ndim: tuple[int, ...] | None = None) -> np.ndarray:
    """A required tensor argument, with a rank check."""
    v = args.get(name)
    if not isinstance(v, np.ndarray):
        raise Unusable(f"argument {name!r} is {'missing' if v is None else type(v).__name__}, a tensor is required")
    if ndim is not None and v.ndim not in ndim:
        raise Unusable(f"argument {name!r} has rank {v.ndim} (shape {list(v.shape)}), expected rank "
                       f"{' or '.join(map(str, ndim))}")
    return v


def dtype_or_none(v) -> str:
    return name_of(v) if isinstance(v, np.ndarray) else "none"


def int_list(v) -> list[int] | None:
    if v is None:
        return None
    return [int(x) for x in np.asarray(v).reshape(-1)]

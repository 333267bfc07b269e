"""What every torch_npu call adapter shares; the adapters themselves are one module per operator.

`backends/torch_npu/<op>.py` exposes `ADAPTER`, an `OpAdapter` for that operator; `adapter(op)` finds it
(backends.op_modules), and an operator without a module is declined with "not implemented for <op>".

An operator's inputs dict is keyed by the argument names of its torch_npu schema, so an adapter
mostly says how to call: which torch_npu function, which arguments go positionally (the rest are
passed by keyword, exactly as a user writes the call), which arguments are host int lists rather
than device tensors, which outputs are caches updated in place, and the documented quirks
(shared/reference/ops.md, acl_abi.md section 4) that change the call or make a case unrunnable.

Keys of an inputs dict that are not torch_npu arguments are consumed by the adapter's `bind`,
explicitly; anything else reaches the call unchanged, so a stray key makes the call fail
against the real schema (tests/test_torch_npu_schema.py proves it does).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from backends.op_modules import op_entry, registered_entries

ACL_FORMAT_FRACTAL_NZ = 29  # aclFormat FRACTAL_NZ (acl_abi.md section 3)
#: backend mode (option `torch_npu:pcl_zero_seq_starts`): ND paged_cache_load without seq_starts is called with
#: zeros, so torch_npu passes hasSeqStarts=true; the backend's name carries the mode into every result row
PCL_ZERO_SEQ_STARTS = "pcl_zero_seq_starts"
#: backend mode (option `torch_npu:pcl_functional`): NZ paged_cache_load through the functional form, as a user
#: writes it, to see whether the installed torch_npu still allocates the wrong output shape (known issue)
PCL_FUNCTIONAL = "pcl_functional"
MODES = frozenset({PCL_ZERO_SEQ_STARTS, PCL_FUNCTIONAL})


@dataclass
class Call:
    """A bound call: `fn(*args, **kwargs)`; `tensors` are the device inputs (in-place caches read back)."""

    fn: Callable
    name: str
    args: tuple
    kwargs: dict
    tensors: dict


@dataclass(frozen=True)
class OpAdapter:
    op: str                                   # opdiff operator (cases/<op>.py)
    api: str                                  # torch_npu attribute path
    positional: tuple[str, ...]               # leading schema arguments, passed positionally in this order
    returns: tuple[str, ...]                  # names of the returned tensors, in order
    host_int_lists: tuple[str, ...] = ()      # int[] / SymInt[] arguments: host lists, never device tensors
    in_place: tuple[str, ...] = ()            # inputs the op updates in place (compared after the call)
    device_decline: Callable[[str], str | None] | None = None   # device name -> reason
    case_decline: Callable[[Mapping, Mapping], str | None] | None = None  # (params, inputs) -> reason
    bind_fn: Callable[["OpAdapter", Any, dict, Mapping], Call] | None = None
    workaround: Callable[[frozenset, Mapping], Mapping] | None = None  # (modes, inputs) -> inputs
    also_calls: tuple[str, ...] = ()          # other torch_npu functions bind_fn may call (schema stand-ins)
    doc: str = field(default="", compare=False)

    def resolve(self, api, path: str | None = None):
        obj = api
        for part in (path or self.api).split("."):
            obj = getattr(obj, part)
        return obj

    def bind(self, api, tensors: dict, params: Mapping) -> Call:
        if self.bind_fn is not None:
            return self.bind_fn(self, api, tensors, params)
        return split_call(self.resolve(api), self.api, self.positional, tensors)


def split_call(fn, name: str, positional: tuple[str, ...], tensors: dict) -> Call:
    """Positional arguments in order, the rest by keyword; a missing positional one is left to the
    schema to report (the call then fails with the dispatcher's own message)."""
    args, kwargs = [], {}
    for i, key in enumerate(positional):
        if key not in tensors:
            kwargs.update({k: tensors[k] for k in positional[i:] if k in tensors})
            break
        args.append(tensors[key])
    kwargs.update({k: v for k, v in tensors.items() if k not in positional})
    return Call(fn, name, tuple(args), kwargs, tensors)


def adapter(op: str) -> OpAdapter | None:
    """The ADAPTER of `backends/torch_npu/<op>.py`; None when the op has no module there."""
    return op_entry("torch_npu", op, "ADAPTER")


def adapters() -> dict[str, OpAdapter]:
    """Registered operator -> its adapter, for every registered operator that has a torch_npu module."""
    return registered_entries("torch_npu", "ADAPTER")


def api_functions() -> tuple[str, ...]:
    """The torch_npu functions the backend may call: each adapter's entry point and what its bind also calls
    (the schema stand-ins define exactly these, tests/npu_schemas.py)."""
    names = [name for ad in adapters().values() for name in (ad.api, *ad.also_calls)]
    return tuple(dict.fromkeys(names))

"""One argument table per operator, from which its ctypes prototype and its call are both derived.

`backends/aclnn/<op>.py` exposes `BINDING`: the C entry point (an aclnn two-phase op, or the ATB C API) and
`args`, one `Arg` per phase-1 parameter of `<symbol>GetWorkspaceSize` in header order (acl_abi.md section 4),
each with its C parameter name, its kind and how its value is obtained from the case. The prototype
(`Binding.phase1_prototype`) and the argument list of a call (`Binding.arguments`) are read from that one
tuple, so the order is written once; tests/test_aclnn_binding.py checks it against the prototype of the C
double (tests/aclnn_double), which follows the real headers.

Values are made through the backend's `Call` (backends/aclnn/__init__.py): `call.tensor` / `call.optional` /
`call.tensor_list` / `call.int_array` create the handles, `call.output` (fresh, zero-filled) and `call.inout`
(an input updated in place) also register what the backend copies back after synchronizing.
"""
from __future__ import annotations

from ctypes import POINTER, c_bool, c_char_p, c_double, c_int8, c_int64, c_uint64
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from backends.op_modules import op_entry, registered_entries

from . import _codes
from ._lib import P, STATUS

#: argument kind -> the ctypes type of that C parameter (acl_abi.md sections 2 and 4)
KIND_CTYPES = {
    "tensor": P,              # const aclTensor * / aclTensor *
    "tensor_list": P,         # const aclTensorList *
    "int_array": P,           # const aclIntArray *
    "str": c_char_p,          # char * (passed as a NUL-terminated byte string)
    "i64": c_int64,
    "f64": c_double,
    "bool": c_bool,
    "i8": c_int8,
}
#: what phase 1 takes after the table's arguments, per family:
#: aclnn (uint64_t *workspaceSize, aclOpExecutor **executor); ATB (uint64_t *workspaceSize,
#: atb::Operation **op, atb::Context *context) (acl_abi.md section 4; atb_acl.h)
PHASE1_TAIL = {"aclnn": (POINTER(c_uint64), POINTER(P)), "atb": (POINTER(c_uint64), POINTER(P), P)}
#: phase 2 of both families: (void *workspace, uint64_t size, aclOpExecutor * | atb::Operation *,
#: aclrtStream | atb::Context *)
PHASE2_PROTOTYPE = (STATUS, [P, c_uint64, P, P])

Source = Callable[[Mapping, Mapping], Any]   # (params, inputs) -> value


@dataclass(frozen=True)
class Arg:
    name: str                                     # C parameter name, as in the header
    kind: str                                     # a KIND_CTYPES key
    value: Callable[[Any, Mapping, Mapping], Any]  # (call, params, inputs) -> the argument

    def __post_init__(self):
        if self.kind not in KIND_CTYPES:
            raise ValueError(f"argument {self.name}: kind {self.kind!r} is none of {', '.join(KIND_CTYPES)}")


@dataclass(frozen=True)
class Binding:
    op: str
    symbol: str                       # aclnnXxx (phase 2 name) or AtbPagedCacheLoad
    family: str                       # "aclnn" | "atb": which status table names the codes
    args: tuple[Arg, ...]             # phase-1 arguments in prototype order (before PHASE1_TAIL)
    #: (params, soc name) -> the documented reason this case cannot run on this device, or None
    decline: Callable[[dict, str], str | None] = lambda params, soc: None
    #: (backend modes, inputs) -> inputs: an opt-in workaround mode changes the inputs before the table reads them
    workaround: Callable[[frozenset, Mapping], Mapping] | None = None
    #: (params, inputs, outputs) -> outputs: reshape what the C API returns into the case's outputs
    post: Callable[[dict, dict, dict], dict] | None = None

    def __post_init__(self):
        if self.family not in PHASE1_TAIL:
            raise ValueError(f"{self.op}: family {self.family!r} is none of {', '.join(PHASE1_TAIL)}")
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.op}: C parameter names repeated in the argument table: {names}")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(a.kind for a in self.args)

    def phase1_prototype(self) -> tuple:
        """(restype, argtypes) of `<symbol>GetWorkspaceSize`."""
        return STATUS, [KIND_CTYPES[k] for k in self.kinds] + list(PHASE1_TAIL[self.family])

    @property
    def phase2_prototype(self) -> tuple:
        """(restype, argtypes) of `<symbol>`, the launch."""
        return PHASE2_PROTOTYPE

    def arguments(self, call, params: Mapping, inputs: Mapping, modes: frozenset = frozenset()) -> list:
        """The phase-1 arguments before the tail, in prototype order, made through `call`."""
        if self.workaround is not None:
            inputs = self.workaround(modes, inputs)
        return [a.value(call, params, inputs) for a in self.args]


def binding_of(op: str) -> Binding | None:
    """The BINDING of `backends/aclnn/<op>.py`; None when the op has no module there."""
    return op_entry("aclnn", op, "BINDING")


def bindings() -> dict[str, Binding]:
    """Registered operator -> its binding, for every registered operator that has an aclnn module."""
    return registered_entries("aclnn", "BINDING")


# ---- sources: where a value comes from ---------------------------------------------------------------------------
def _source(source: str | Source) -> Source:
    """An inputs key reads that input; a callable (params, inputs) -> value is used as it is."""
    if callable(source):
        return source
    return lambda params, inputs: inputs[source]


def const(value) -> Source:
    return lambda params, inputs: value


def param(name: str, default) -> Source:
    """A case parameter (not an input: the torch_npu wrappers hard-code it, the C API takes it)."""
    return lambda params, inputs: params.get(name, default)


# ---- entries of an argument table ----------------------------------------------------------------------------------
def tensor(name: str, source: str | Source, fmt: Source | None = None) -> Arg:
    """A required input tensor; `fmt(params, inputs)` its aclFormat (default ND)."""
    get = _source(source)
    fmt = fmt or const(_codes.ACL_FORMAT_ND)
    return Arg(name, "tensor", lambda call, p, i: call.tensor(get(p, i), fmt(p, i)))


def optional(name: str, key: str) -> Arg:
    """An optional input tensor: NULL when the input is absent or None."""
    return Arg(name, "tensor", lambda call, p, i: call.optional(i.get(key)))


def inout(name: str, key: str) -> Arg:
    """An input the op updates in place; read back as output `key`."""
    return Arg(name, "tensor", lambda call, p, i: call.inout(key, i[key]))


def output(name: str, key: str, shape: Source, dtype: Source) -> Arg:
    """A fresh, zero-filled output tensor `key` of `shape(params, inputs)` and `dtype(params, inputs)`."""
    return Arg(name, "tensor", lambda call, p, i: call.output(key, shape(p, i), dtype(p, i)))


def tensor_list(name: str, key: str) -> Arg:
    """An aclTensorList holding the one input tensor `key`."""
    return Arg(name, "tensor_list", lambda call, p, i: call.tensor_list([i[key]]))


def int_array(name: str, key: str, absent: list | None = None) -> Arg:
    """An aclIntArray of the input `key`; an absent or None input is NULL, or `absent` (e.g. [] for an empty array)."""
    return Arg(name, "int_array", lambda call, p, i: call.int_array(absent if i.get(key) is None else i[key]))


def _scalar(kind: str, convert: Callable) -> Callable[[str, str | Source], Arg]:
    def entry(name: str, source: str | Source) -> Arg:
        get = _source(source)
        return Arg(name, kind, lambda call, p, i: convert(get(p, i)))

    entry.__doc__ = f"A {kind} C scalar read from an input key or a source."
    return entry


i64 = _scalar("i64", int)
i8 = _scalar("i8", int)
f64 = _scalar("f64", float)
flag = _scalar("bool", bool)
string = _scalar("str", lambda v: None if v is None else str(v))   # None: a NULL char *

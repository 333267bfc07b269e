"""Each aclnn argument table against the prototype of its C double, and the values it builds.

The order of an operator's phase-1 arguments is written once, in `backends/aclnn/<op>.py`; the ctypes
prototype and the call are both derived from it (backends/aclnn/_binding.py). What checks that one
description is the C double (tests/aclnn_double): its prototypes are copied from the seeds / acl_abi.md
section 4 and compiled against the real ACL headers. Here the `GetWorkspaceSize` declaration in
opdiff_double.h and the definition in the op's double source are parsed, and every parameter's name and C
type must be the table's, in order, tail included. No compiler is needed.
"""
from __future__ import annotations

import re
from ctypes import POINTER, c_bool, c_char_p, c_double, c_int8, c_int64, c_uint64, c_void_p
from pathlib import Path

import numpy as np
import pytest

from backends.aclnn import _codes
from backends.aclnn._binding import binding_of, bindings
from backends.op_modules import module_names
from harness import registry

DOUBLE = Path(__file__).resolve().parent / "aclnn_double"
HEADER = DOUBLE / "opdiff_double.h"
#: where the double defines an op's entry points: one file per aclnn op; ATB's C API lives with atb::Context
SOURCE = {"aclnn": "op_{op}.c", "atb": "atb.cpp"}

#: C parameter type (spaces around `*` removed) -> the kinds of a table entry it may be
C_KINDS = {"const aclTensor*": "tensor", "aclTensor*": "tensor", "const aclTensorList*": "tensor_list",
           "const aclIntArray*": "int_array", "char*": "str", "const char*": "str", "int64_t": "i64",
           "double": "f64", "bool": "bool", "int8_t": "i8"}
#: C parameter type -> the ctypes type a correct prototype declares for it
C_CTYPES = {"const aclTensor*": c_void_p, "aclTensor*": c_void_p, "const aclTensorList*": c_void_p,
            "const aclIntArray*": c_void_p, "char*": c_char_p, "const char*": c_char_p, "int64_t": c_int64,
            "double": c_double, "bool": c_bool, "int8_t": c_int8, "uint64_t*": POINTER(c_uint64),
            "aclOpExecutor**": POINTER(c_void_p), "atb::Operation**": POINTER(c_void_p), "atb::Context*": c_void_p}
#: the parameters after the table's, per family (acl_abi.md section 4)
TAIL = {"aclnn": [("uint64_t*", "workspaceSize"), ("aclOpExecutor**", "executor")],
        "atb": [("uint64_t*", "workspaceSize"), ("atb::Operation**", "op"), ("atb::Context*", "context")]}

BOUND = bindings()


def c_parameters(text: str, function: str, end: str) -> list[tuple[str, str]]:
    """[(C type, name)] of `function(...)` followed by `end` (';' a declaration, '{' a definition) in `text`."""
    found = re.findall(rf"\b{re.escape(function)}\s*\(([^)]*)\)\s*{re.escape(end)}", text)
    assert len(found) == 1, f"{function}: {len(found)} matches followed by {end!r}"
    params = []
    for part in found[0].split(","):
        m = re.fullmatch(r"(.*?)\s*\b(\w+)", " ".join(part.split()))
        assert m, f"{function}: cannot read parameter {part!r}"
        params.append((re.sub(r"\s*\*", "*", m.group(1)).strip(), m.group(2)))
    return params


def test_the_parser_reads_a_prototype():
    text = "int f(const aclTensor *a, aclOpExecutor **executor, int64_t  n);\nint f(void *x) {"
    assert c_parameters(text, "f", ";") == [("const aclTensor*", "a"), ("aclOpExecutor**", "executor"),
                                            ("int64_t", "n")]
    assert c_parameters(text, "f", "{") == [("void*", "x")]


@pytest.mark.parametrize("op", sorted(BOUND))
@pytest.mark.parametrize("where", ["declaration", "definition"])
def test_argument_table_is_the_doubles_prototype(op, where):
    b = BOUND[op]
    source = DOUBLE / SOURCE[b.family].format(op=op)
    text, end = (HEADER.read_text(), ";") if where == "declaration" else (source.read_text(), "{")
    params = c_parameters(text, b.symbol + "GetWorkspaceSize", end)
    table, tail = params[: len(b.args)], params[len(b.args):]
    assert [name for _, name in table] == [a.name for a in b.args]
    assert [C_KINDS.get(c_type) for c_type, _ in table] == list(b.kinds)
    assert tail == TAIL[b.family]
    restype, argtypes = b.phase1_prototype()
    assert argtypes == [C_CTYPES[c_type] for c_type, _ in params]


def test_every_aclnn_module_has_a_c_double():
    """A module without a double would run nowhere here (tests/test_op_modules.py: each is a registered op)."""
    assert module_names("aclnn")
    for op in module_names("aclnn"):
        b = binding_of(op)
        assert (DOUBLE / SOURCE[b.family].format(op=op)).is_file(), op


def test_every_c_double_op_file_has_its_module():
    assert sorted(p.stem[len("op_"):] for p in DOUBLE.glob("op_*.c") if p.stem != "op_common") == \
        sorted(op for op, b in BOUND.items() if b.family == "aclnn")


ND = _codes.ACL_FORMAT_ND   # the backend Call's default format


class RecordingCall:
    """What the argument tables call on the backend's Call, recording handles instead of creating them."""

    def __init__(self):
        self.outputs = {}

    def tensor(self, array, fmt=ND):
        return ("tensor", np.asarray(array).shape, fmt)

    def optional(self, array, fmt=ND):
        return None if array is None else self.tensor(array, fmt)

    def output(self, name, shape, dtype, fmt=ND):
        self.outputs[name] = (tuple(shape), dtype)
        return ("tensor", tuple(shape), fmt)

    def inout(self, name, array, fmt=ND):
        self.outputs[name] = (np.asarray(array).shape, str(np.asarray(array).dtype))
        return self.tensor(array, fmt)

    def int_array(self, values):
        return None if values is None else ("int_array", [int(v) for v in np.asarray(values).reshape(-1)])

    def tensor_list(self, arrays, fmt=ND):
        return ("tensor_list", [self.tensor(a, fmt) for a in arrays])


def _fits(kind: str, value) -> bool:
    if kind in ("tensor", "tensor_list", "int_array"):
        return value is None or (isinstance(value, tuple) and value[0] == kind)
    return {"str": lambda v: v is None or isinstance(v, str), "bool": lambda v: isinstance(v, bool),
            "f64": lambda v: isinstance(v, float),
            "i64": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "i8": lambda v: isinstance(v, int) and not isinstance(v, bool) and -128 <= v < 128}[kind](value)


@pytest.mark.parametrize("op", sorted(BOUND))
def test_built_arguments_have_their_kinds_and_outputs_are_the_specs(op):
    spec, b = registry.op(op), BOUND[op]
    cases = [c for c in spec.cases("smoke") if not c.negative][:3]
    assert cases
    for case in cases:
        call = RecordingCall()
        values = b.arguments(call, case.params, spec.make_inputs(case, 0))
        assert len(values) == len(b.args)
        wrong = [(a.name, a.kind, v) for a, v in zip(b.args, values) if not _fits(a.kind, v)]
        assert not wrong, (case.id, wrong)
        assert set(call.outputs) == set(spec.outputs), case.id


def test_pcl_zero_seq_starts_mode_passes_zeros_and_has_seq_starts():
    """aclnn:pcl_zero_seq_starts: an ND case without seq_starts gets a zero seqStarts tensor of one entry per
    batch and hasSeqStarts=true; without the mode seqStarts is NULL and hasSeqStarts false."""
    from backends.aclnn.paged_cache_load import PCL_ZERO_SEQ_STARTS

    spec, b = registry.op("paged_cache_load"), BOUND["paged_cache_load"]
    case = spec.case(layout="ND", has_seq_starts=False)
    inputs = spec.make_inputs(case, 0)
    assert inputs.get("seq_starts") is None
    names = [a.name for a in b.args]
    plain = dict(zip(names, b.arguments(RecordingCall(), case.params, inputs)))
    assert plain["seqStarts"] is None and plain["hasSeqStarts"] is False
    zeros = dict(zip(names, b.arguments(RecordingCall(), case.params, inputs, frozenset({PCL_ZERO_SEQ_STARTS}))))
    assert zeros["seqStarts"] == ("tensor", (inputs["block_table"].shape[0],), ND) and zeros["hasSeqStarts"] is True

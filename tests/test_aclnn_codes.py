"""Every enum value and status code the aclnn backend uses matches the real headers.

The ACL runtime values (aclDataType, aclFormat, memcpy kinds, malloc policy, event flags, aclError and
ACL_ERROR_RT_* codes) are compiled against the ACL headers shipped in the torch-npu wheel. The aclnn
status codes and atb::ErrorType are not in those headers: they are checked against the double's header,
which declares them from shared/reference/acl_abi.md, so the double and the backend cannot drift apart.
The mangled ATB symbols are checked against what g++ produces for the declarations in that header.
"""
from __future__ import annotations

import subprocess

import pytest

from backends.aclnn import _codes, _lib
from tests.aclnn_double import build


@pytest.fixture(scope="module")
def toolchain():
    try:
        return build.compilers(), build.acl_include_dir()
    except build.BuildUnavailable as exc:
        pytest.skip(f"cannot compile against the ACL headers: {exc}")


def _values(toolchain, tmp_path, names: list[str], cxx: bool = False) -> dict:
    (cc, cxx_bin), inc = toolchain
    src = tmp_path / ("probe.cpp" if cxx else "probe.c")
    lines = ['#include <stdio.h>', '#include "opdiff_double.h"', "int main(void) {"]
    lines += [f'  printf("%s %lld\\n", "{n}", (long long)({n}));' for n in names]
    lines += ["  return 0;", "}"]
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "probe"
    compiler = cxx_bin if cxx else cc
    subprocess.run([compiler, f"-I{inc}", f"-I{build.HERE}", str(src), "-o", str(exe)], check=True,
                   capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_acl_enums_and_errors_match_the_wheel_headers(toolchain, tmp_path):
    ours = {name: value for name, value in _codes.ACL_DTYPE.values()}
    ours.update(_codes.FORMATS)
    ours.update(_codes.RT_ENUMS)
    ours.update({name: code for code, name in _codes.ACL_ERRORS.items()})
    ours["ACL_SUCCESS"] = _codes.ACL_SUCCESS
    assert _codes.ACL_ERRORS[_codes.ACL_ERROR_REPEAT_INITIALIZE] == "ACL_ERROR_REPEAT_INITIALIZE"
    assert _values(toolchain, tmp_path, sorted(ours)) == ours


def test_aclnn_and_atb_codes_match_the_double_header(toolchain, tmp_path):
    aclnn = {name: code for code, name in _codes.ACLNN_STATUS.items()
             if name in ("ACLNN_SUCCESS", "ACLNN_ERR_PARAM_NULLPTR", "ACLNN_ERR_PARAM_INVALID",
                         "ACLNN_ERR_RUNTIME_ERROR", "ACLNN_ERR_INNER", "ACLNN_ERR_INNER_NULLPTR")}
    assert _codes.ACLNN_ERR_PARAM_INVALID == 161002
    assert _values(toolchain, tmp_path, sorted(aclnn)) == aclnn
    in_header = ("NO_ERROR", "ERROR_INVALID_PARAM", "ERROR_RT_FAIL", "ERROR_INVALID_IN_TENSOR_NUM",
                 "ERROR_INVALID_TENSOR_DIM_NUM", "ERROR_INVALID_TENSOR_DTYPE",
                 "ERROR_INVALID_TENSOR_FORMAT", "ERROR_INVALID_TENSOR_DIM", "ERROR_INVALID_TENSOR_SIZE",
                 "ERROR_INVALID_TENSOR_ADDR", "ERROR_INVALID_CONTEXT_ADDR", "ERROR_INVALID_STREAM",
                 "ERROR_INVALID_WORKSPACE_SIZE", "ERROR_INVALID_WORKSPACE_ADDR", "ERROR_INVALID_OPERATION_ADDR")
    atb = {name: code for code, name in _codes.ATB_STATUS.items() if name in in_header}
    assert len(atb) == len(in_header)
    got = _values(toolchain, tmp_path, [f"atb::{n}" for n in sorted(atb)], cxx=True)
    assert {k.removeprefix("atb::"): v for k, v in got.items()} == atb
    assert (_codes.ATB_KV_CACHE_NZ, _codes.ATB_KV_CACHE_ND) == (0, 1)


def test_atb_mangled_symbols_match_gxx(toolchain, tmp_path):
    (_, cxx), inc = toolchain
    src = tmp_path / "use.cpp"
    src.write_text('#include "opdiff_double.h"\n'
                   "void use(atb::Context **c, atb::Operation *o) {\n"
                   "  atb::CreateContext(c); atb::DestroyContext(*c); atb::DestroyOperation(o);\n}\n")
    obj = tmp_path / "use.o"
    subprocess.run([cxx, f"-I{inc}", f"-I{build.HERE}", "-c", str(src), "-o", str(obj)], check=True,
                   capture_output=True, text=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], check=True, capture_output=True, text=True).stdout.split()
    for sym in (_lib.ATB_CREATE_CONTEXT, _lib.ATB_DESTROY_CONTEXT, _lib.ATB_DESTROY_OPERATION):
        assert sym in undefined


def test_set_execute_stream_is_vtable_slot_2(toolchain, tmp_path):
    """The Itanium ABI slot of atb::Context::SetExecuteStream for the class as declared (acl_abi.md)."""
    (_, cxx), inc = toolchain
    src = tmp_path / "slot.cpp"
    src.write_text('#include <cstdio>\n#include "opdiff_double.h"\n'
                   "struct C : atb::Context {\n"
                   "  aclrtStream s = nullptr;\n"
                   "  atb::Status SetExecuteStream(aclrtStream x) override { s = x; return 7; }\n"
                   "  aclrtStream GetExecuteStream() const override { return s; }\n"
                   "  atb::Status SetAsyncTilingCopyStatus(bool) override { return 0; }\n"
                   "  bool GetAsyncTilingCopyStatus() const override { return false; }\n};\n"
                   "typedef atb::Status (*Fn)(void *, void *);\n"
                   "int main() { C c; atb::Context *p = &c; void **vt = *(void ***)p;\n"
                   f"  int st = ((Fn)vt[{_lib.ATB_SET_EXECUTE_STREAM_SLOT}])(p, (void *)0x1234);\n"
                   '  std::printf("%d %d\\n", st, c.s == (void *)0x1234); return 0; }\n')
    exe = tmp_path / "slot"
    subprocess.run([cxx, f"-I{inc}", f"-I{build.HERE}", str(src), "-o", str(exe)], check=True,
                   capture_output=True, text=True)
    assert subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split() == ["7", "1"]

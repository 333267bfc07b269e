"""Finding CANN and declaring the C symbols the aclnn backend calls; an operator's own entry points are declared
from its argument table (backends/aclnn/<op>.py, `Cann.op_symbol`).

Discovery (shared/reference/acl_abi.md section 1), in order:
  roots:    $ASCEND_HOME_PATH, $ASCEND_TOOLKIT_HOME, /usr/local/Ascend/ascend-toolkit/latest,
            /usr/local/Ascend/cann, ~/Ascend/ascend-toolkit/latest, ~/Ascend/cann
  runtime:  <root>/lib64/libascendcl.so, else libacl_rt.so
  nnopbase: <root>/lib64/libnnopbase.so
  op libs:  $ASCEND_CUSTOM_OPP_PATH/<p>/op_api/lib/libcust_opapi.so (each entry),
            $ASCEND_OPP_PATH/vendors/<load_priority of vendors/config.ini>/op_api/lib/libcust_opapi.so,
            <root>/lib64/libopapi_*.so, <root>/lib64/libopapi.so, the legacy feature libraries
  ATB:      $ATB_HOME_PATH/lib/libatb.so, else /usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_{1,0}/lib/libatb.so

Nothing here raises at import; `load()` returns a `Cann` or raises `CannUnavailable` with the precise reason.
"""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, field
from pathlib import Path

P = c_void_p
STATUS = c_int32          # aclError / aclnnStatus / atb::Status are 32-bit ints
I64P = POINTER(c_int64)

SET_ENV_HINT = ("source /usr/local/Ascend/ascend-toolkit/set_env.sh (or /usr/local/Ascend/cann/set_env.sh), "
                "or set ASCEND_HOME_PATH to the toolkit root holding lib64/")
ATB_HINT = "source /usr/local/Ascend/nnal/atb/set_env.sh, or set ATB_HOME_PATH to the directory holding lib/libatb.so"
LEGACY_OP_LIBS = ("libaclnn_ops_infer.so", "libaclnn_ops_train.so", "libaclnn_math.so", "libaclnn_sparse.so",
                  "libaclnn_fft.so", "libaclnn_rand.so")

# ---- prototypes: name -> (restype, argtypes) --------------------------------------------------------------
RUNTIME = {
    "aclInit": (STATUS, [c_char_p]),
    "aclFinalize": (STATUS, []),
    "aclGetRecentErrMsg": (c_char_p, []),
    "aclrtGetSocName": (c_char_p, []),
    "aclrtGetDeviceCount": (STATUS, [POINTER(c_uint32)]),
    "aclrtSetDevice": (STATUS, [c_int32]),
    "aclrtResetDevice": (STATUS, [c_int32]),
    "aclrtCreateStream": (STATUS, [POINTER(P)]),
    "aclrtDestroyStream": (STATUS, [P]),
    "aclrtSynchronizeStream": (STATUS, [P]),
    "aclrtMalloc": (STATUS, [POINTER(P), c_size_t, c_int]),
    "aclrtFree": (STATUS, [P]),
    "aclrtMemcpy": (STATUS, [P, c_size_t, P, c_size_t, c_int]),
    "aclrtMemset": (STATUS, [P, c_size_t, c_int32, c_size_t]),
    "aclrtMemsetAsync": (STATUS, [P, c_size_t, c_int32, c_size_t, P]),   # cold-cache flush (AclEventTimer)
    "aclrtCreateEventWithFlag": (STATUS, [POINTER(P), c_uint32]),
    "aclrtRecordEvent": (STATUS, [P, P]),
    "aclrtSynchronizeEvent": (STATUS, [P]),
    "aclrtEventElapsedTime": (STATUS, [POINTER(c_float), P, P]),
    "aclrtDestroyEvent": (STATUS, [P]),
}
NNOPBASE = {
    "aclCreateTensor": (P, [I64P, c_uint64, c_int, I64P, c_int64, c_int, I64P, c_uint64, P]),
    "aclCreateIntArray": (P, [I64P, c_uint64]),
    "aclCreateTensorList": (P, [POINTER(P), c_uint64]),
    "aclDestroyTensor": (STATUS, [P]),
    "aclDestroyIntArray": (STATUS, [P]),
    "aclDestroyTensorList": (STATUS, [P]),
    "aclDestroyAclOpExecutor": (STATUS, [P]),
}
# atb::CreateContext(Context**), DestroyContext(Context*), DestroyOperation(Operation*): C++ only (mangled)
ATB_CREATE_CONTEXT = "_ZN3atb13CreateContextEPPNS_7ContextE"
ATB_DESTROY_CONTEXT = "_ZN3atb14DestroyContextEPNS_7ContextE"
ATB_DESTROY_OPERATION = "_ZN3atb16DestroyOperationEPNS_9OperationE"
ATB = {
    ATB_CREATE_CONTEXT: (STATUS, [POINTER(P)]),
    ATB_DESTROY_CONTEXT: (STATUS, [P]),
    ATB_DESTROY_OPERATION: (STATUS, [P]),
}
# atb::Context vtable (Itanium ABI): slots 0/1 destructors, slot 2 SetExecuteStream(this, aclrtStream)
ATB_SET_EXECUTE_STREAM_SLOT = 2
ATB_SET_EXECUTE_STREAM = ctypes.CFUNCTYPE(STATUS, P, P)



class CannUnavailable(RuntimeError):
    """CANN (or the part of it an op needs) cannot be used here; the message says what to set."""


def _declare(lib, name, proto):
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = proto[0], list(proto[1])
    return fn


def candidate_roots() -> list[Path]:
    roots = [os.environ.get("ASCEND_HOME_PATH"), os.environ.get("ASCEND_TOOLKIT_HOME"),
             "/usr/local/Ascend/ascend-toolkit/latest", "/usr/local/Ascend/cann",
             str(Path.home() / "Ascend/ascend-toolkit/latest"), str(Path.home() / "Ascend/cann")]
    seen, out = set(), []
    for r in roots:
        if r and r not in seen:
            seen.add(r)
            out.append(Path(r))
    return out


def find_root() -> tuple[Path | None, str]:
    """(root holding lib64/ with a runtime library, '') or (None, why not)."""
    tried = []
    for root in candidate_roots():
        lib64 = root / "lib64"
        if (lib64 / "libascendcl.so").is_file() or (lib64 / "libacl_rt.so").is_file():
            return root, ""
        tried.append(str(lib64))
    return None, f"no CANN runtime library (libascendcl.so / libacl_rt.so) in {', '.join(tried)}; {SET_ENV_HINT}"


def _vendor_priorities(opp: Path) -> list[str]:
    cfg = opp / "vendors" / "config.ini"
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "load_priority":
                return [v.strip() for v in value.split(",") if v.strip()]
    except OSError:
        pass
    return []


def op_library_paths(root: Path) -> list[Path]:
    """Op libraries in CANN's documented search order (custom ops first)."""
    paths = []
    for entry in filter(None, os.environ.get("ASCEND_CUSTOM_OPP_PATH", "").split(":")):
        paths.append(Path(entry) / "op_api" / "lib" / "libcust_opapi.so")
    opp = os.environ.get("ASCEND_OPP_PATH")
    if opp:
        for vendor in _vendor_priorities(Path(opp)):
            paths.append(Path(opp) / "vendors" / vendor / "op_api" / "lib" / "libcust_opapi.so")
    lib64 = root / "lib64"
    paths += sorted(lib64.glob("libopapi_*.so"))
    paths.append(lib64 / "libopapi.so")
    paths += [lib64 / n for n in LEGACY_OP_LIBS]
    return [p for p in paths if p.is_file()]


def atb_library_path() -> tuple[Path | None, str]:
    home = os.environ.get("ATB_HOME_PATH")
    cands = [Path(home) / "lib" / "libatb.so"] if home else []
    cands += [Path(f"/usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_{abi}/lib/libatb.so") for abi in (1, 0)]
    for c in cands:
        if c.is_file():
            return c, ""
    where = ", ".join(str(c) for c in cands)
    return None, f"libatb.so (NNAL) not found in {where}; {ATB_HINT}"


@dataclass
class Cann:
    """Loaded libraries with declared functions: `rt.<name>`, `nn.<name>`, `op_symbol(binding)`, `atb_fn(name)`."""

    root: Path
    rt: object
    nn: object
    runtime_path: Path
    op_libs: list = field(default_factory=list)        # [(path, CDLL)]
    op_lib_errors: list = field(default_factory=list)  # [str]
    atb: object | None = None
    atb_reason: str = ""
    _ops: dict = field(default_factory=dict)

    def op_symbol(self, binding):
        """(phase1, phase2) functions of an operator, declared with the prototypes its binding derives from its
        argument table (backends/aclnn/_binding.py); CannUnavailable names the libraries searched."""
        symbol = binding.symbol
        if symbol in self._ops:
            return self._ops[symbol]
        if binding.family == "atb":
            if self.atb is None:
                raise CannUnavailable(self.atb_reason)
            libs = [(Path(self.atb._name), self.atb)]
        else:
            libs = self.op_libs
        for path, lib in libs:
            if hasattr(lib, symbol + "GetWorkspaceSize") and hasattr(lib, symbol):
                p1 = _declare(lib, symbol + "GetWorkspaceSize", binding.phase1_prototype())
                p2 = _declare(lib, symbol, binding.phase2_prototype)
                self._ops[symbol] = (p1, p2)
                return p1, p2
        searched = ", ".join(str(p) for p, _ in libs) or "no op library found"
        if binding.family == "atb":
            raise CannUnavailable(f"{symbol}/{symbol}GetWorkspaceSize not exported by {searched}; {ATB_HINT}")
        errs = f" (failed to load: {'; '.join(self.op_lib_errors)})" if self.op_lib_errors else ""
        raise CannUnavailable(f"{symbol}/{symbol}GetWorkspaceSize not exported by the op libraries ({searched}){errs}; "
                              f"the op needs a newer CANN or the ops package for this SoC")

    def atb_fn(self, name: str):
        if self.atb is None:
            raise CannUnavailable(self.atb_reason)
        return getattr(self.atb, name)


def load() -> Cann:
    root, why = find_root()
    if root is None:
        raise CannUnavailable(why)
    lib64 = root / "lib64"
    rt_path = lib64 / "libascendcl.so"
    if not rt_path.is_file():
        rt_path = lib64 / "libacl_rt.so"
    try:
        rt = ctypes.CDLL(str(rt_path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise CannUnavailable(f"cannot load {rt_path}: {exc}; {SET_ENV_HINT}") from None
    nn_path = lib64 / "libnnopbase.so"
    try:
        nn = ctypes.CDLL(str(nn_path), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise CannUnavailable(f"cannot load {nn_path}: {exc}; {SET_ENV_HINT}") from None
    for table, lib, path in ((RUNTIME, rt, rt_path), (NNOPBASE, nn, nn_path)):
        for name, proto in table.items():
            try:
                _declare(lib, name, proto)
            except AttributeError:
                raise CannUnavailable(f"{path} does not export {name}; is this a CANN install?") from None
    cann = Cann(root=root, rt=rt, nn=nn, runtime_path=rt_path)
    for path in op_library_paths(root):
        try:
            cann.op_libs.append((path, ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)))
        except OSError as exc:
            cann.op_lib_errors.append(f"{path}: {exc}")
    atb_path, cann.atb_reason = atb_library_path()
    if atb_path is not None:
        try:
            cann.atb = ctypes.CDLL(str(atb_path))
            for name, proto in ATB.items():
                _declare(cann.atb, name, proto)
        except (OSError, AttributeError) as exc:
            cann.atb, cann.atb_reason = None, f"cannot use {atb_path}: {exc}; {ATB_HINT}"
    return cann

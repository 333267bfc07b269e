"""Build the C test double of CANN into a directory laid out like a CANN + NNAL install.

    python -m tests.aclnn_double.build OUTDIR        # prints the `export` lines to use it

Layout (what the aclnn backend's discovery expects from a real install):

    OUTDIR/cann/lib64/libascendcl.so            runtime.c   (ASCEND_HOME_PATH=OUTDIR/cann)
    OUTDIR/cann/lib64/libnnopbase.so            nnopbase.c
    OUTDIR/cann/lib64/libopapi.so               (no ops: the ops live in the split library below)
    OUTDIR/cann/lib64/libopapi_transformer.so   op_*.c
    OUTDIR/nnal/atb/lib/libatb.so               atb.cpp     (ATB_HOME_PATH=OUTDIR/nnal/atb)

Everything is compiled against the real ACL headers of the installed torch-npu wheel
(`torch_npu/include/acl/`), found without importing torch_npu.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CFLAGS = ["-std=gnu11", "-O1", "-g", "-fPIC", "-Wall", "-Werror"]
CXXFLAGS = ["-std=c++17", "-O1", "-g", "-fPIC", "-Wall", "-Werror"]


class BuildUnavailable(RuntimeError):
    """No compiler or no ACL headers: the double cannot be built here."""


@dataclass(frozen=True)
class DoubleInstall:
    root: Path
    ascend_home: Path
    atb_home: Path

    def env(self) -> dict:
        """Environment variables pointing the aclnn backend at the double."""
        return {"ASCEND_HOME_PATH": str(self.ascend_home), "ATB_HOME_PATH": str(self.atb_home)}


def acl_include_dir() -> Path:
    """The torch-npu wheel's include directory (holding acl/acl.h), located without importing torch_npu."""
    spec = importlib.util.find_spec("torch_npu")
    if spec is None or not spec.submodule_search_locations:
        raise BuildUnavailable("torch-npu is not installed: its ACL headers (torch_npu/include/acl) are needed")
    for loc in spec.submodule_search_locations:
        inc = Path(loc) / "include"
        if (inc / "acl" / "acl.h").is_file():
            return inc
    raise BuildUnavailable("torch_npu/include/acl/acl.h not found in the installed torch-npu wheel")


def compilers() -> tuple[str, str]:
    cc, cxx = shutil.which(os.environ.get("CC", "gcc")), shutil.which(os.environ.get("CXX", "g++"))
    if not cc or not cxx:
        raise BuildUnavailable(f"no C/C++ compiler on PATH (gcc: {cc or 'missing'}, g++: {cxx or 'missing'})")
    return cc, cxx


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compile failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def build(outdir: str | os.PathLike) -> DoubleInstall:
    cc, cxx = compilers()
    inc = acl_include_dir()
    root = Path(outdir).resolve()
    lib64 = root / "cann" / "lib64"
    atb_lib = root / "nnal" / "atb" / "lib"
    lib64.mkdir(parents=True, exist_ok=True)
    atb_lib.mkdir(parents=True, exist_ok=True)
    common = [f"-I{inc}", f"-I{HERE}"]

    def shared(out: Path, soname: str) -> list[str]:
        return ["-shared", f"-Wl,-soname,{soname}", "-o", str(out)]

    link_rt = [f"-L{lib64}", "-lascendcl", f"-Wl,-rpath,{lib64}"]
    _run([cc, *CFLAGS, *common, str(HERE / "runtime.c"), *shared(lib64 / "libascendcl.so", "libascendcl.so"),
          "-lpthread"])
    _run([cc, *CFLAGS, *common, str(HERE / "nnopbase.c"), *shared(lib64 / "libnnopbase.so", "libnnopbase.so"),
          *link_rt])
    _run([cc, *CFLAGS, *common, str(HERE / "opapi.c"), *shared(lib64 / "libopapi.so", "libopapi.so"), *link_rt])
    ops = sorted(str(p) for p in HERE.glob("op_*.c"))
    _run([cc, *CFLAGS, *common, *ops, *shared(lib64 / "libopapi_transformer.so", "libopapi_transformer.so"),
          *link_rt, "-lm"])
    _run([cxx, *CXXFLAGS, *common, str(HERE / "atb.cpp"), *shared(atb_lib / "libatb.so", "libatb.so"), *link_rt])
    return DoubleInstall(root, root / "cann", root / "nnal" / "atb")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write("usage: python -m tests.aclnn_double.build OUTDIR\n")
        return 2
    try:
        inst = build(argv[0])
    except BuildUnavailable as exc:
        sys.stderr.write(f"cannot build the CANN double: {exc}\n")
        return 1
    for k, v in inst.env().items():
        sys.stdout.write(f"export {k}={v}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

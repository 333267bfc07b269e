"""The allowed import directions of the whole tree, checked on every import statement (lazy ones too).

    harness (core)  <-  cases  <-  backends/*  (numpy, torch, torch_npu, aclnn; each on its own)
          ^                                 reports  <-  app: harness.commands, cli, __main__, doctor

The numpy golden and the torch reference are two references only if neither imports the other; facts
both need (a window rule, a dtype's item size) live in cases/ or harness/. Core harness code reaches
cases and backends only through the registry's discovery by name (harness/registry.py), never by import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "cases", "backends", "reports")

#: module prefix -> its group (the longest matching prefix wins)
GROUPS = {
    "harness": "core", "harness.commands": "app", "harness.cli": "app", "harness.__main__": "app",
    "harness.doctor": "app", "cases": "cases", "backends": "backends", "backends.numpy": "numpy",
    "backends.torch": "torch", "backends.torch_npu": "torch_npu", "backends.aclnn": "aclnn", "reports": "reports",
}
_BACKEND_BASE = {"core", "cases", "backends"}
#: group -> the groups it may import (its own always)
ALLOWED = {
    "core": set(),
    "cases": {"core"},
    "backends": {"core", "cases"},
    "numpy": _BACKEND_BASE,
    "torch": _BACKEND_BASE,
    "torch_npu": _BACKEND_BASE,
    "aclnn": _BACKEND_BASE,
    "reports": {"core"},
    "app": {"core", "cases", "backends", "numpy", "torch", "torch_npu", "aclnn", "reports"},
}
#: single edges allowed across groups, each with its reason (a module, not a whole group)
EXCEPTIONS = {
    ("harness.registry", "cases"): "discovery: the op specs are found by listing the package (pkgutil), then by name",
    ("backends.torch", "backends.torch_npu._env"): "torch:npu asks torch_npu's guarded loader whether an NPU is usable",
    ("backends.torch_npu", "backends.torch"): "torch_npu moves tensors to and from the device as the torch backend does",
}


def group_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        g = GROUPS.get(".".join(parts[:n]))
        if g:
            return g
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` may name a submodule: judge the submodule when it is one
                out += [(node.lineno, f"{target}.{a.name}" if not node.module else target) for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def _allowed(src: str, dst: str) -> bool:
    gs, gd = group_of(src), group_of(dst)
    if gd is None or gs == gd or gd in ALLOWED[gs]:
        return True
    return any(src.startswith(a) and (dst == b or dst.startswith(b + ".")) for a, b in EXCEPTIONS)


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_group():
    files = _sources()
    assert len(files) > 100                       # the scan saw the tree
    assert [str(p) for p in files if group_of(module_name(p)) is None] == []


def test_imports_follow_the_allowed_directions():
    bad = [f"{p.relative_to(ROOT)}:{line}: {module_name(p)} ({group_of(module_name(p))}) imports {dst} "
           f"({group_of(dst)})"
           for p in _sources() for line, dst in imports(p) if not _allowed(module_name(p), dst)]
    assert bad == []


@pytest.mark.parametrize("src, dst, ok", [
    ("backends.torch.paged_cache_load", "backends.numpy.paged_cache_load", False),
    ("backends.numpy.incre_flash_attention", "backends.torch", False),
    ("cases.incre_flash_attention", "backends.numpy.incre_flash_attention", False),
    ("harness.runner", "cases.paged_cache_load", False),
    ("harness.runner", "harness.commands.run", False),
    ("reports.nightly", "harness.commands.compare", False),
    ("backends.numpy.incre_flash_attention", "cases._ifa_windows", True),
    ("harness.commands.run", "reports.nightly", True),
    ("backends.torch", "backends.torch_npu._env", True),
    ("backends.torch", "backends.torch_npu", False),
])
def test_the_rules_themselves(src, dst, ok):
    assert _allowed(src, dst) is ok

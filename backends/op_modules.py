"""Per-op module lookup: every backend is a package with one module per operator.

`backends/numpy/<op>.py` holds the golden (function `golden`), `backends/torch/<op>.py` the reference
(function `reference`), `backends/torch_npu/<op>.py` the call adapter (`ADAPTER`) and `backends/aclnn/<op>.py`
the argument table (`BINDING`). Private helpers of a backend start with `_`, so they never read as an op.
A backend without a module for an op declines it with `not_implemented(backend, op)`.
"""
from __future__ import annotations

import importlib
import pkgutil


def module_names(package: str) -> list[str]:
    """The operators `backends/<package>/` has a module for (files not starting with `_`), sorted."""
    pkg = importlib.import_module(f"backends.{package}")
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and not m.ispkg)


def op_module(package: str, op: str):
    """Import `backends.<package>.<op>`; None when the op has no implementation there."""
    try:
        return importlib.import_module(f"backends.{package}.{op}")
    except ModuleNotFoundError as exc:
        if exc.name == f"backends.{package}.{op}":
            return None
        raise


def op_entry(package: str, op: str, name: str):
    """The object `name` (ADAPTER, BINDING) of `backends/<package>/<op>.py`; None when the op has no module there."""
    module = op_module(package, op)
    return None if module is None else getattr(module, name)


def registered_entries(package: str, name: str) -> dict:
    """Registered operator -> `op_entry(package, op, name)`, for every registered operator with a module there."""
    from harness import registry

    found = {op: op_entry(package, op, name) for op in registry.op_names()}
    return {op: entry for op, entry in found.items() if entry is not None}


def not_implemented(package: str, op: str) -> str:
    """The decline reason of a backend that has no module for an op."""
    return f"not implemented for {op} (backends/{package}/{op}.py missing)"

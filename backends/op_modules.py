"""Per-op module lookup: every backend is a package with one module per operator.

`backends/numpy/<op>.py` holds the golden (function `golden`), `backends/torch/<op>.py` the reference
(function `reference`), `backends/torch_npu/<op>.py` the call adapter (`ADAPTER`) and `backends/aclnn/<op>.py`
the argument table (`BINDING`). Private helpers of a backend start with `_`, so they never read as an op.
A backend without a module for an op declines it with `not_implemented(backend, op)`.
"""
from __future__ import annotations

import importlib


def op_module(package: str, op: str):
    """Import `backends.<package>.<op>`; None when the op has no implementation there."""
    try:
        return importlib.import_module(f"backends.{package}.{op}")
    except ModuleNotFoundError as exc:
        if exc.name == f"backends.{package}.{op}":
            return None
        raise


def not_implemented(package: str, op: str) -> str:
    """The decline reason of a backend that has no module for an op."""
    return f"not implemented for {op} (backends/{package}/{op}.py missing)"

"""Shared plumbing of the two reference backends: per-op implementation lookup.

Each operator's numpy golden lives in `backends/golden/<op>.py` (function `golden`), its torch
reference in `backends/torch_ref/<op>.py` (function `reference`), so adding an operator never
touches the backends themselves.
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

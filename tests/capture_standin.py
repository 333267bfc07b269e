"""A stand-in `torch_npu` module for the capture tests: the real schemas from the wheel (tests/npu_schemas.py)
as module attributes, plus `get_npu_format`, so harness.capture wraps it exactly as it wraps torch_npu."""
from __future__ import annotations

import types
from types import SimpleNamespace

from tests.npu_schemas import SchemaNamespace, wheel_dir

ACL_FORMAT_ND, ACL_FORMAT_FRACTAL_NZ = 2, 29


def module(ns: SchemaNamespace | None = None, name: str = "torch_npu"):
    """(module, namespace): the module holds the namespace's functions under their torch_npu names."""
    ns = ns or SchemaNamespace(wheel_dir())
    mod = types.ModuleType(name)
    for path in ns.schemas:
        if not path.startswith("atb."):
            setattr(mod, path, getattr(ns.api, path))
    mod.atb = SimpleNamespace(npu_paged_cache_load=ns.api.atb.npu_paged_cache_load)
    # the card the case is written for, as torch_npu.npu.get_device_name names it (product limits differ)
    mod.npu = SimpleNamespace(synchronize=ns.api.npu.synchronize, get_device_name=lambda *index: (
        "Ascend310P3" if (ns.params or {}).get("product") == "310P" else "Ascend910B3"))
    mod.get_npu_format = lambda t: ACL_FORMAT_FRACTAL_NZ if ns.is_nz(t) else ACL_FORMAT_ND
    mod.__version__ = "stand-in"
    return mod, ns

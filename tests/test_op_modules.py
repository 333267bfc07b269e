"""The device backends find an operator's module by its name, and decline an operator they have none for.

Adding an operator takes cases/<op>.py, backends/numpy/<op>.py and backends/torch/<op>.py; a
backends/torch_npu/<op>.py or backends/aclnn/<op>.py is optional, and without one the device backends
decline the op as "not implemented for <op>" (backends/op_modules.py), before looking for a device.
The operator here is a registered spec under a name no backend has a module for; nothing is added to cases/.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from backends.aclnn import AclnnBackend
from backends.aclnn._binding import binding_of, bindings
from backends.op_modules import module_names, op_module
from backends.torch_npu import TorchNpuBackend
from backends.torch_npu._adapters import adapter, adapters
from backends.torch_npu._graph import TorchNpuGraphBackend
from harness import registry
from harness.errors import Declined

UNBOUND = "op_without_device_modules"


@pytest.fixture(scope="module")
def unbound():
    """A spec like nsa_compress_with_cache, under a name that has no module in any backend."""
    spec = dataclasses.replace(registry.op("nsa_compress_with_cache"), name=UNBOUND)
    case = next(c for c in spec.cases("smoke") if not c.negative)
    return spec, case, spec.make_inputs(case, 0)


def _backends():
    # injected APIs: nothing of torch_npu or CANN is needed to decline
    return {"torch_npu": TorchNpuBackend(api=SimpleNamespace()),
            "torch_npu:graph": TorchNpuGraphBackend(api=SimpleNamespace()),
            "aclnn": AclnnBackend()}


@pytest.mark.parametrize("name", ["torch_npu", "torch_npu:graph", "aclnn"])
def test_a_backend_without_a_module_declines_the_op(name, unbound):
    spec, case, inputs = unbound
    backend = _backends()[name]
    package = name.split(":")[0]
    assert op_module(package, UNBOUND) is None
    reason = backend.supports(spec, case)
    assert reason == f"not implemented for {UNBOUND} (backends/{package}/{UNBOUND}.py missing)"
    with pytest.raises(Declined, match=f"^not implemented for {UNBOUND} "):
        backend.prepare(spec, case, inputs)


def test_lookups_are_none_without_a_module_and_the_modules_object_with_one():
    assert adapter(UNBOUND) is None and binding_of(UNBOUND) is None
    assert adapter("paged_cache_load") is op_module("torch_npu", "paged_cache_load").ADAPTER
    assert binding_of("paged_cache_load") is op_module("aclnn", "paged_cache_load").BINDING


@pytest.mark.parametrize("package, found", [("torch_npu", adapters), ("aclnn", bindings)])
def test_every_device_module_is_for_a_registered_op_and_names_it(package, found):
    """A module whose name is no registered op would never run; discovery lists exactly the others."""
    modules = module_names(package)
    assert modules and set(modules) <= set(registry.op_names())
    assert sorted(found()) == modules
    assert all(entry.op == op for op, entry in found().items())


def test_private_modules_are_not_ops():
    assert "_adapters" not in module_names("torch_npu") and "_graph" not in module_names("torch_npu")
    assert "_binding" not in module_names("aclnn") and "_lib" not in module_names("aclnn")

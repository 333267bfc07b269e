"""Backend registry: built-ins, third-party entry points (group opdiff.backends), options."""
from __future__ import annotations

import sys

import pytest

from harness import registry
from harness.errors import UnknownNameError, UsageError


def test_builtin_backends_are_listed_and_lazy():
    names = registry.backend_names()
    assert {"numpy", "torch", "torch_npu", "aclnn"} <= set(names) or {"numpy", "torch"} <= set(names)
    assert registry.backend("numpy") is registry.backend("numpy")
    assert registry.backend("torch:cpu").device == "cpu"


def test_unknown_backend_lists_known_ones():
    with pytest.raises(UnknownNameError, match="known backends: .*numpy"):
        registry.backend("nope")
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        registry.parse_names("numpy,nope", "backend", registry.backend_names(), allow_options=True)
    assert registry.parse_names("all", "op", ["a", "b"]) == ["a", "b"]


def test_entry_point_backend_is_discovered(tmp_path, monkeypatch):
    dist = tmp_path / "opdiff_fake_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opdiff-fake-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[opdiff.backends]\nfakeplug = opdiff_fake_plugin:FakeBackend\n")
    (tmp_path / "opdiff_fake_plugin.py").write_text(
        "from backends.numpy import NumpyBackend\n"
        "class FakeBackend(NumpyBackend):\n    name = 'fakeplug'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.backend.cache_clear()
    try:
        assert "fakeplug" in registry.backend_names()
        b = registry.backend("fakeplug")
        spec = registry.op("paged_cache_load")
        case = spec.cases("smoke")[0]
        out = b.run(spec, case, spec.make_inputs(case))
        assert set(out) == {"key", "value"}
    finally:
        registry.backend.cache_clear()
        sys.modules.pop("opdiff_fake_plugin", None)

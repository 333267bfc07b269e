"""Registry of operators (every `cases/<op>.py` exposing `SPEC`) and backends.

Built-in backends are listed below; third-party ones register through the entry-point group
`opdiff.backends` (the entry point loads a Backend subclass or a factory). A backend name may
carry an option after a colon, e.g. `torch:cuda`.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import pkgutil

from .errors import UnknownNameError, UsageError
from .spec import OpSpec

ENTRY_POINT_GROUP = "opdiff.backends"

# name -> "module:Class"; imported only when the backend is selected.
BUILTIN_BACKENDS = {
    "numpy": "backends.numpy:NumpyBackend",
    "torch": "backends.torch:TorchBackend",
    "torch_npu": "backends.torch_npu._graph:torch_npu_backend",   # eager, or graph mode for torch_npu:graph
    "aclnn": "backends.aclnn:AclnnBackend",
}


@functools.lru_cache(maxsize=None)
def _specs() -> dict[str, OpSpec]:
    import cases

    specs = {}
    for info in sorted(pkgutil.iter_modules(cases.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        mod = importlib.import_module(f"cases.{info.name}")
        spec = getattr(mod, "SPEC", None)
        if isinstance(spec, OpSpec):
            specs[spec.name] = spec
    return specs


def op_names() -> list[str]:
    return list(_specs())


def ops() -> list[OpSpec]:
    return list(_specs().values())


def op(name: str) -> OpSpec:
    """The OpSpec called `name`; an unknown name raises UnknownNameError listing the known ones."""
    try:
        return _specs()[name]
    except KeyError:
        raise UnknownNameError("op", name, op_names()) from None


_REGISTERED: dict = {}


def register_backend(name: str, factory) -> None:
    """Register a backend factory programmatically (plugins loaded by hand, tests)."""
    _REGISTERED[name] = factory
    backend.cache_clear()


def unregister_backend(name: str) -> None:
    _REGISTERED.pop(name, None)
    backend.cache_clear()


def _entry_points() -> dict:
    try:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken distribution must not break the registry
        return {}


def _builtin_available(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def backend_names() -> list[str]:
    names = [n for n, t in BUILTIN_BACKENDS.items() if _builtin_available(t)]
    names += [n for n in _entry_points() if n not in names]
    return names + [n for n in _REGISTERED if n not in names]


@functools.lru_cache(maxsize=None)
def backend(name: str):
    """A backend instance by name (`numpy`, `torch`, `torch:cuda`, an entry point, ...)."""
    base, _, option = name.partition(":")
    if base in _REGISTERED:
        factory = _REGISTERED[base]
    elif base in BUILTIN_BACKENDS and _builtin_available(BUILTIN_BACKENDS[base]):
        module, cls = BUILTIN_BACKENDS[base].split(":")
        factory = getattr(importlib.import_module(module), cls)
    elif base in _entry_points():
        factory = _entry_points()[base].load()
    else:
        raise UnknownNameError("backend", name, backend_names())
    try:
        return factory(option) if option else factory()
    except TypeError as exc:
        raise UsageError(f"backend {base!r} takes no option {option!r}: {exc}") from None


def parse_names(text: str, kind: str, known: list[str], allow_options: bool = False) -> list[str]:
    """Split a comma list, expand `all`, and reject unknown names with the valid choices."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError(f"no {kind} given; valid {kind}s: {', '.join(known)}, or all")
    if names == ["all"]:
        return list(known)
    for n in names:
        base = n.partition(":")[0] if allow_options else n
        if base not in known:
            raise UnknownNameError(kind, n, known + ["all"])
    return names

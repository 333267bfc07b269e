"""torch_npu:graph: the torch_npu entry points run inside `torch.compile` with torchair's NPU backend.

This is the seed's second way of calling the op (004_9b455b0cf40d8ded.txt, 调用示例, 图模式调用):

    npu_backend = torchair.get_npu_backend(compiler_config=CompilerConfig())
    model = torch.compile(model, backend=npu_backend, dynamic=False, fullgraph=True)

Everything else is the eager backend's (backends/torch_npu/__init__.py, the adapters in <op>.py; device
copies, refusals, timing): only the bound call is wrapped, so the two front ends differ in nothing but graph
mode, and the runner pairs them bitwise (same `kernel_key`, harness.devcheck) as well as judging the graph
outputs against the golden. `--backends torch_npu:graph`, `torch_npu:1+graph` for logical NPU 1.

What graph mode needs, checked in this order so that the reason names the first missing piece:
  - torchair: it ships inside the torch-npu wheel (`torch_npu/dynamo/torchair`); a wheel built without it
    registers the eager implementation instead (torch_npu/dynamo/__init__.py `_get_default_backend`);
  - the torch the wheel was built for: torch_npu X.Y.Z (and its torchair) needs torch X.Y.Z;
  - an importable torch_npu with an NPU (backends/torch_npu/_env.py), then `import torchair` itself
    (torch_npu installs it lazily in sys.modules and replays the import error on first use).
  - per op, a Meta kernel: dynamo traces the call on fake tensors, so an op without one cannot enter the
    graph. torch_npu 2.13.0 registers them for npu_incre_flash_attention and npu_(dequant_)rope_quant_kvcache
    (op_plugin/meta/_meta_registrations.py:258-268, 5972-5987), none for npu_nsa_compress_infer,
    npu_nsa_select_attention_grad or atb.npu_paged_cache_load (op_plugin/atb/_atb_meta_registrations.py);
    the dispatcher is asked, so a newer wheel that adds one is picked up.

Each prepared case gets a fresh dynamo cache (`torch._dynamo.reset()`): past the recompile limit (8 per code
object) dynamo would quietly run the function eagerly, and the pair with eager would prove nothing. The
compile backend is wrapped to record the captured graph, and a launch whose graph holds no call of the op
is an error. With an injected API (the schema stand-ins, tests/npu_schemas.py) the compile backend is
torch's `eager` one (`gm.forward`, torch/_dynamo/backends/debugging.py), as there is no GE on a CPU.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path

from backends.base import Availability
from . import TorchNpuBackend
from ._adapters import adapter

GRAPH = "graph"


def split_option(option: str | None) -> tuple[bool, str | None]:
    """('1+graph') -> (True, '1'): whether graph mode is asked, and the eager backend's option without it."""
    parts = [p for p in (option or "").strip().split("+") if p]
    rest = [p for p in parts if p != GRAPH]
    return len(rest) != len(parts), ("+".join(rest) or None)


def torch_npu_backend(option: str | None = None, **kw):
    """The registry's factory for `torch_npu[:OPTION]`: graph mode when the option holds `graph`."""
    graph, _ = split_option(option)
    return TorchNpuGraphBackend(option, **kw) if graph else TorchNpuBackend(option, **kw)


def _release(version: str) -> tuple[int, ...]:
    from harness.envinfo import release

    return release(version)


def torchair_missing(find_spec=importlib.util.find_spec, dist_version=None) -> str | None:
    """Why graph mode cannot work with the installed wheels, without importing torch_npu (None: it may)."""
    from harness.envinfo import dist_version as _dist

    dist_version = dist_version or _dist
    try:
        spec = find_spec("torch_npu")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return "torch_npu is not installed (graph mode uses the torchair inside its wheel)"
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "dynamo" / "torchair" / "__init__.py").is_file():
        return (f"the installed torch_npu has no torchair ({root / 'dynamo' / 'torchair'} missing: a build without "
                f"it registers only the eager implementation for torch.compile)")
    torch_v, npu_v = dist_version("torch"), dist_version("torch-npu") or dist_version("torch_npu")
    if torch_v and npu_v and _release(torch_v) != _release(npu_v):
        return (f"torchair inside torch_npu {npu_v} needs torch {'.'.join(map(str, _release(npu_v)))}, "
                f"but torch {torch_v} is installed")
    return None


@functools.lru_cache(maxsize=None)
def _torchair_import() -> str | None:
    """Import torchair as the seed does (after torch_npu); the failure's text, or None."""
    try:
        import torch_npu  # noqa: F401  (installs the lazy `torchair` module)
        import torchair
        from torchair.configs.compiler_config import CompilerConfig  # noqa: F401

        torchair.get_npu_backend  # noqa: B018  (the lazy module raises the real import error here)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return f"torchair cannot be imported ({type(exc).__name__}: {text})"
    return None


def meta_missing(fn, api_path: str) -> str | None:
    """None when the op has a Meta kernel (dynamo can trace it), else the reason."""
    import torch

    packet = fn
    if not hasattr(fn, "overloads"):   # the real torch_npu.npu_* functions are bindings of torch.ops.npu / .atb
        ns, _, base = api_path.rpartition(".")
        try:
            packet = getattr(getattr(torch.ops, ns or "npu"), base)
        except (AttributeError, RuntimeError) as exc:
            return f"{ns or 'npu'}::{base} is not a registered operator ({exc})"
    qual = packet._qualified_op_name
    names = [qual if o == "default" else f"{qual}.{o}" for o in packet.overloads()]
    has = any(torch._C._dispatch_has_kernel_for_dispatch_key(n, "Meta") for n in names)
    if not has:
        return (f"{qual} ({', '.join(names)}) has no Meta kernel, so torch.compile cannot trace it on fake tensors "
                f"(torch_npu registers them in op_plugin/meta/_meta_registrations.py; not for this op)")
    return None


class TorchNpuGraphBackend(TorchNpuBackend):
    """The eager torch_npu backend with each bound call compiled by torch.compile (see the module docstring)."""

    def __init__(self, option: str | None = None, *, api=None, device: str | None = None, compile_backend=None):
        """`compile_backend`: the torch.compile backend (default: torchair's NPU backend; with an injected API,
        torch's eager backend)."""
        _, rest = split_option(option)
        super().__init__(rest, api=api, device=device)
        self.option = option or GRAPH  # harness.isolate rebuilds the backend from it
        prefix = "torch_npu[injected]" if api is not None else "torch_npu"
        self.name = f"{prefix}:{self.option}"
        self._compile_backend = compile_backend
        self._availability: Availability | None = None
        self.last_graph = None  # the FX graph of the last compiled call (tests look at it)

    def available(self) -> Availability:
        if self._api is not None:
            return Availability(True)
        if self._availability is None:
            why = torchair_missing()
            if why is None:
                eager = super().available()
                why = None if eager else f"graph mode needs torch_npu: {eager.reason}"
            if why is None:
                why = _torchair_import()
            self._availability = Availability(why is None, why or "")
        return self._availability

    def supports(self, spec, case):
        why = super().supports(spec, case)
        if why:
            return why
        ad = adapter(spec.name)   # super().supports declined an op without one
        try:
            fn = ad.resolve(self.api)
        except AttributeError as exc:
            return f"no {ad.api} in the torch_npu API ({exc})"
        why = meta_missing(fn, ad.api)
        return f"graph mode: {why}" if why else None

    def prepare(self, spec, case, inputs):
        prepared = super().prepare(spec, case, inputs)
        call = prepared["call"]
        prepared["call"] = dataclasses.replace(call, fn=self._compile(call), name=f"{call.name} (torch.compile)")
        return prepared

    def _graph_backend(self):
        if self._compile_backend is not None:
            return self._compile_backend
        if self._api is not None:
            return lambda gm, example_inputs: gm.forward   # torch's "eager" backend (debugging.py)
        import torchair
        from torchair.configs.compiler_config import CompilerConfig

        return torchair.get_npu_backend(compiler_config=CompilerConfig())

    def _compile(self, call):
        import torch
        import torch._dynamo

        fn, base = call.fn, call.name.split(".")[-1]
        inner = self._graph_backend()
        captured = []

        def backend(gm, example_inputs):
            captured.append(gm)
            self.last_graph = gm
            return inner(gm, example_inputs)

        def model(*args, **kwargs):   # the seed's Model.forward: the op alone
            return fn(*args, **kwargs)

        torch._dynamo.reset()
        compiled = torch.compile(model, backend=backend, dynamic=False, fullgraph=True)

        def run(*args, **kwargs):
            with torch.no_grad():
                out = compiled(*args, **kwargs)
            if not captured:
                raise RuntimeError(f"torch.compile captured no graph for {call.name}: the call ran eagerly")
            ops = [n for n in captured[-1].graph.nodes if n.op == "call_function" and base in str(n.target)]
            if not ops:
                raise RuntimeError(f"the captured graph holds no {base} call: {captured[-1].graph}")
            return out

        return run

"""The real torch_npu schemas on CPU, without importing torch_npu.

The schema strings come from the installed torch-npu wheel (extra `npu-schemas`):
  - `csrc/aten/npu_native_functions_by_codegen.yaml` (`func:` lines) for the torch_npu.npu_* ops;
  - `op_plugin/atb/_atb_api_docs.py` (argument names, keyword-only marker and defaults of
    `torch_npu.atb.npu_paged_cache_load`) together with the C++ declaration in
    `include/third_party/op-plugin/op_plugin/include/AtbOpsInterface.h` (argument types; the
    registered schema string itself is not recoverable from the shared library).

`SchemaNamespace` defines them in a private `torch.library` namespace and implements them on CPU
with the torch references (`backends/torch/<op>.py`), so `torch.ops.<ns>.<name>(...)` binds every
positional argument, keyword, type and default exactly as the real operator would: a call that
does not fit raises. Around the reference it models what the real stack does (tests/npu_fake_runtime.py):
the wrappers' output allocation and hard-coded attributes, ATB's checks, the kernels' parameter checks and
the task queue, which defers a refusal to `api.npu.synchronize()` unless TASK_QUEUE_ENABLE=0.
It quacks like the torch_npu module for `backends.torch_npu.TorchNpuBackend(api=...)`.
"""
from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import weakref
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")  # torch-npu installed without CANN

import torch  # noqa: E402

from backends.op_modules import op_module  # noqa: E402
from backends.torch import to_numpy  # noqa: E402
from backends.torch_npu._adapters import ACL_FORMAT_FRACTAL_NZ, adapter, adapters, api_functions  # noqa: E402
from harness import registry  # noqa: E402
from harness.errors import ConstraintViolation  # noqa: E402
from tests import npu_fake_runtime as runtime  # noqa: E402

YAML = "csrc/aten/npu_native_functions_by_codegen.yaml"
ATB_DOC = "op_plugin/atb/_atb_api_docs.py"
ATB_HEADER = "include/third_party/op-plugin/op_plugin/include/AtbOpsInterface.h"

_CPP_TYPES = {"const at::Tensor&": "Tensor", "const c10::optional<at::Tensor>&": "Tensor?", "bool": "bool",
              "int64_t": "int", "double": "float", "c10::SymIntArrayRef": "SymInt[]", "at::IntArrayRef": "int[]"}


def wheel_dir() -> Path | None:
    """The installed torch_npu package directory, found without importing it."""
    spec = importlib.util.find_spec("torch_npu")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def yaml_schemas(root: Path) -> dict[str, list[str]]:
    """Base name -> distinct schema strings (one per overload) of every `func:` line."""
    out: dict[str, list[str]] = {}
    for line in (root / YAML).read_text().splitlines():
        m = re.match(r"\s*-?\s*func:\s*(\S.*?)\s*$", line)
        if m:
            schema = m.group(1)
            base = schema.split("(", 1)[0].split(".", 1)[0]
            if schema not in out.setdefault(base, []):
                out[base].append(schema)
    return out


def _split_args(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "<([" and 1 or 0
        depth -= ch in ">)]" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _cpp_args(header: str, fn: str) -> list[tuple[str, str]]:
    m = re.search(rf"\b{fn}\(([^;]*)\);", header)
    if not m:
        raise LookupError(f"{fn} not declared in {ATB_HEADER}")
    args = []
    for a in _split_args(m.group(1)):
        cpp_type, name = re.match(r"(.*?[&\s*])\s*(\w+)$", a).groups()
        args.append((re.sub(r"\s+", " ", cpp_type).strip().replace(" &", "&"), name))
    return args


def atb_paged_cache_load_schemas(root: Path) -> list[str]:
    """Functional and `.out` schemas of atb::npu_paged_cache_load, from the doc line and the C++ header."""
    doc = (root / ATB_DOC).read_text()
    m = re.search(r"torch_npu\.atb\.npu_paged_cache_load\((.*?)\)\s*->", doc)
    if not m:
        raise LookupError(f"npu_paged_cache_load signature not found in {ATB_DOC}")
    kw_only, defaults, order = False, {}, []
    for a in _split_args(m.group(1)):
        if a == "*":
            kw_only = True
            continue
        name, _, default = a.partition("=")
        order.append((name.strip(), kw_only))
        if default:
            defaults[name.strip()] = default.strip()
    header = (root / ATB_HEADER).read_text()
    schemas = []
    for fn, overload in (("npu_paged_cache_load", ""), ("npu_paged_cache_load_out", ".out")):
        cpp = _cpp_args(header, fn)
        doc_names = [n for n, _ in order][: len(cpp)]
        if [n for _, n in cpp] != doc_names:
            raise LookupError(f"{fn}: header arguments {[n for _, n in cpp]} differ from the doc's {doc_names}")
        letters = iter("ab")
        parts, star = [], False
        for (cpp_type, name), (_, kw) in zip(cpp, order):
            if kw and not star:
                parts.append("*")
                star = True
            if cpp_type == "at::Tensor&":  # a non-const reference in an _out function: an out argument
                parts.append(f"Tensor({next(letters)}!) {name}")
                continue
            t = _CPP_TYPES[cpp_type]
            default = defaults.get(name)
            parts.append(f"{t} {name}" + (f"={default}" if default is not None and t != "Tensor" else ""))
        rets = "(Tensor(a!), Tensor(b!))" if overload else "(Tensor, Tensor)"
        schemas.append(f"npu_paged_cache_load{overload}({', '.join(parts)}) -> {rets}")
    return schemas


def real_schemas(root: Path) -> dict[str, list[str]]:
    """torch_npu function path (as in api_functions()) -> its schema strings."""
    ys = yaml_schemas(root)
    out = {}
    for path in api_functions():
        base = path.split(".")[-1]
        if path.startswith("atb."):
            out[path] = atb_paged_cache_load_schemas(root)
        else:
            if base not in ys:
                raise LookupError(f"{base} not in {YAML}")
            # npu_format_cast also has .Tensor / _ variants; the backend uses the (Tensor, int) overload only
            out[path] = [s for s in ys[base] if base != "npu_format_cast" or s.startswith("npu_format_cast(")]
    return out


_counter = itertools.count()


class SchemaNamespace:
    """A `torch.library` namespace holding the real schemas, implemented by the torch references."""

    def __init__(self, root: Path, schemas: dict[str, list[str]] | None = None, task_queue: bool | None = None):
        """`task_queue`: None reads TASK_QUEUE_ENABLE like torch_npu (on unless "0")."""
        self.queue = runtime.TaskQueue(task_queue)
        self.atb_statuses: list[tuple[int, str]] = []  # ATB refusals (status, log text), for the tests
        self.ns = f"opdiff_npu_{os.getpid()}_{next(_counter)}"
        self.lib = torch.library.Library(self.ns, "DEF")
        self.schemas = schemas if schemas is not None else real_schemas(root)
        self.params: dict | None = None
        self.calls: list[tuple[str, dict]] = []       # (function path, bound arguments) of every call
        self._nz: list = []                            # weakrefs of tensors npu_format_cast tagged FRACTAL_NZ
        api_to_op = {ad.api: ad.op for ad in adapters().values()}
        api_to_op["npu_rope_quant_kvcache"] = api_to_op.get("npu_dequant_rope_quant_kvcache")
        for path, strings in self.schemas.items():
            for s in strings:
                self.lib.define(s)
                parsed = torch._C.parse_schema(s)
                qual = parsed.name + (f".{parsed.overload_name}" if parsed.overload_name else "")
                self.lib.impl(qual, self._impl(path, parsed, api_to_op.get(path)), "CompositeExplicitAutograd")
        ops = getattr(torch.ops, self.ns)
        self.api = SimpleNamespace(atb=SimpleNamespace(), npu=SimpleNamespace(synchronize=self.queue.synchronize))
        for path in self.schemas:
            base = path.split(".")[-1]
            target = self.api.atb if path.startswith("atb.") else self.api
            setattr(target, base, getattr(ops, base))

    @contextlib.contextmanager
    def case(self, params: dict):
        """The torch references read case params (e.g. block_size) the schema does not carry."""
        self.params = params
        try:
            yield self
        finally:
            self.params = None

    def is_nz(self, t) -> bool:
        self._nz = [r for r in self._nz if r() is not None]
        return any(r() is t for r in self._nz)

    def _impl(self, path, parsed, op):
        names = [a.name for a in parsed.arguments]
        defaults = {a.name: a.default_value for a in parsed.arguments if a.has_default_value()}
        aliased = [r.alias_info is not None for r in parsed.returns]

        def impl(*args, **kwargs):
            bound = dict(defaults)
            bound.update(zip(names, args))
            bound.update(kwargs)
            self.calls.append((path, bound))
            if path == "npu_format_cast":
                y = bound["self"].clone()  # NZ of a [.., bs, C0] tensor keeps the memory (ops.md section 4)
                if bound["acl_format"] == ACL_FORMAT_FRACTAL_NZ:
                    self._nz.append(weakref.ref(y))
                return y
            return self._run_reference(path, parsed, op, bound, aliased)

        return impl

    def _run_reference(self, path, parsed, op, bound, aliased):
        mod = op_module("torch", op) if op else None
        if mod is None:
            raise NotImplementedError(f"no torch reference for {path} (operator {op!r} not registered yet)")
        inputs = dict(bound)
        sym = runtime.symbol(op)
        allocated = None   # PagedCacheLoad: the key/value tensors ATB writes
        if path.startswith("atb.npu_paged_cache_load"):
            # the real wrapper picks kvCacheCfg from key_cache's storage format (ops.md section 4)
            nz = self.is_nz(bound["key_cache"])
            inputs["kv_cache_cfg"] = 0 if nz else 1
            inputs.pop("key", None), inputs.pop("value", None)
            if parsed.overload_name == "out":
                allocated = (bound["key"], bound["value"])
            else:
                allocated = runtime.functional_paged_cache_load_outputs(bound["key_cache"], bound["value_cache"],
                                                                        bound["context_lens"], bound["cumsum"])
            refused = runtime.atb_paged_cache_load_status(bound["key_cache"], bound["value_cache"], *allocated,
                                                          bound.get("seq_starts") is not None, bound["cumsum"], nz)
            if refused:
                self.atb_statuses.append(refused)
                return self._refuse(sym, "", parsed, op, bound, allocated)
        if path == "npu_rope_quant_kvcache":
            inputs.update(weight_scale=None, activation_scale=None, bias=None)
        if op == "nsa_compress_with_cache" and inputs.get("actual_seq_len") is None:
            inputs["actual_seq_len"] = []   # an empty aclIntArray, not NULL (OP yaml:7330, 7406-7407)
        params = {**(self.params or {}), **runtime.HARD_CODED.get(op, {})}
        if op == "dequant_rope_quant_kvcache" and bound.get("quant_mode") not in (0, 1):
            params["quant_mode"] = 0   # any other value becomes "static" (OP DequantRopeQuantKVCacheKernelNpuOpApi.cpp)
        try:   # the kernel's GetWorkspaceSize, modelled by the documented constraints
            registry.op(op).validate(params, {k: to_numpy(v) if torch.is_tensor(v) else v for k, v in inputs.items()})
        except ConstraintViolation as exc:
            return self._refuse(sym, f"EZ1001: {exc}", parsed, op, bound, allocated)
        out = dict(mod.reference(params, inputs, "cpu"))
        if op == "incre_flash_attention" and bound["query"].dtype == torch.int8 and bound.get("quant_scale2") is None:
            # torch allocates a float16 output for an int8 query (OP FlashAttentionKernelNpuOpApi.cpp:1690-1691)
            out["attention_out"] = out["attention_out"].to(torch.float16)
        if op == "dequant_rope_quant_kvcache" and not bound["kv_output"]:
            # kOut/vOut are {0}-shaped (OP DequantRopeQuantKVCacheKernelNpuOpApi.cpp:78-81)
            out["k_out"] = out["v_out"] = torch.empty(0, dtype=bound["cos"].dtype)
        ad = adapter(op)
        results = []
        for i, name in enumerate(ad.returns[: len(parsed.returns)]):
            value = out[name]
            target = bound.get(name) if name in ad.in_place else None
            if allocated is not None:
                target = allocated[i]  # the wrapper's allocation, or the .out overload's key / value
            if torch.is_tensor(target):
                target.copy_(value)   # the kernel writes the output / updates the cache in place
                value = target if (aliased[i] or allocated is not None) else value.clone()
            results.append(value)
        return results[0] if len(results) == 1 else tuple(results)

    def _refuse(self, sym, detail, parsed, op, bound, allocated):
        """A refused call: raises now (task queue off) or returns what the wrapper allocated, unwritten, and
        leaves the error to the next synchronize (task queue on)."""
        self.queue.refuse(sym, detail)
        if allocated is not None:
            return tuple(allocated)
        ad = adapter(op)
        results = []
        for name in ad.returns[: len(parsed.returns)]:
            t = bound.get(name) if name in ad.in_place else None
            results.append(t if torch.is_tensor(t) else torch.empty(0))
        return results[0] if len(results) == 1 else tuple(results)

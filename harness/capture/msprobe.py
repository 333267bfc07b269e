"""msprobe PyTorch dumps -> records (`python -m harness import-msprobe DUMP_DIR OUT_DIR`).

The format, as the mindstudio-probe package writes it (msprobe/core/dump/service.py,
data_dump/json_writer.py, data_dump/data_processor/{base,pytorch_processor}.py):
  <dump_path>/step<N>/rank<R>/dump.json, with the tensors in the sibling dump_tensor_data/;
  dump.json = {"task", "level", "framework": "pytorch", "dump_data_dir", "data": {KEY: ENTRY}};
  KEY = "<prefix>.<api>.<count>.<forward|backward>", the prefix "NPU" for torch_npu functions and <api> the
  last component of the attribute path (atb.npu_paged_cache_load -> npu_paged_cache_load);
  ENTRY = {"input_args": [...], "input_kwargs": {...}, "output": [...]};
  a tensor = {"type": "torch.Tensor", "dtype": "torch.bfloat16", "shape": [...], statistics,
  "requires_grad", "data_name": "<KEY>.<input|kwargs|output>.<index or name>.pt"} (data_name only when
  the task saved tensors); a scalar = {"type": "int" | "float" | "bool" | "str", "value": v}; None as null;
  lists and dicts nest; stack.json maps an index to [[KEY, ...], [stack lines]].
Tensor files are read without unpickling code: `.pt` with torch.load(weights_only=True), `.npy` with
np.load(allow_pickle=False). Every forward call of the five entry points becomes a record; every other
entry is counted; a call that cannot be converted (statistics-only dump, an NZ tensor msprobe does not
save, a file that disagrees with dump.json) is reported with the file and the reason.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..dtypes import name_of
from . import hostcopy, record
from .entry_points import ENTRY_POINTS, bind

log = logging.getLogger(__name__)

KEY = re.compile(r"^(?P<prefix>[^.]+)\.(?P<api>.+)\.(?P<count>\d+)\.(?P<direction>forward|backward)$")
BY_BASE = {api.rpartition(".")[2]: e for api, e in ENTRY_POINTS.items()}
TENSOR_TYPES = ("torch.Tensor", "torch.nn.parameter.Parameter", "numpy.ndarray")
SCALARS = ("int", "float", "bool", "str")


class DumpError(ValueError):
    """A value of the dump that cannot be converted; the message names the file."""


def _tensor(meta: dict, tensor_dir: Path, where: str) -> np.ndarray:
    name = meta.get("data_name")
    if not name:
        raise DumpError(f"{where}: no tensor file (dump.json has statistics only: dump with task 'tensor'; msprobe "
                        "also saves no FRACTAL_NZ tensor)")
    path = tensor_dir / name
    if not path.is_file():
        raise DumpError(f"{path}: tensor file named in dump.json ({where}) is missing")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".pt":
            import torch

            t = torch.load(path, map_location="cpu", weights_only=True)
            if not torch.is_tensor(t):
                raise DumpError(f"{path}: holds a {type(t).__name__}, not a tensor")
            arr = hostcopy.to_host(t)
        else:
            raise DumpError(f"{path}: unknown tensor file type {path.suffix!r} (msprobe writes .pt and .npy)")
    except DumpError:
        raise
    except Exception as exc:
        raise DumpError(f"{path}: cannot be read: {type(exc).__name__}: {exc}") from None
    want_dtype = str(meta.get("dtype", "")).replace("torch.", "")
    want_shape = [int(s) for s in meta.get("shape", [])]
    if name_of(arr) != want_dtype or list(arr.shape) != want_shape:
        raise DumpError(f"{path}: holds {name_of(arr)}{list(arr.shape)}, dump.json says {want_dtype}{want_shape}")
    return arr


def _value(item, tensor_dir: Path, where: str):
    if item is None:
        return None
    if isinstance(item, list):
        return [_value(x, tensor_dir, f"{where}[{i}]") for i, x in enumerate(item)]
    if not isinstance(item, dict):
        raise DumpError(f"{where}: unexpected {type(item).__name__} in dump.json")
    kind = item.get("type")
    if kind in TENSOR_TYPES:
        return _tensor(item, tensor_dir, where)
    if kind in SCALARS:
        return item.get("value")
    if kind == "torch.Size":
        return [int(x) for x in item.get("value", [])]
    if kind == "torch.dtype":
        return str(item.get("value"))
    raise DumpError(f"{where}: argument of type {kind!r} is not an argument of these operators")


def _stacks(dump_json: Path) -> dict:
    """KEY -> stack lines, from stack.json next to dump.json (both of msprobe's layouts)."""
    path = dump_json.with_name("stack.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for k, v in data.items() if isinstance(data, dict) else ():
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], list):   # {"0": [[KEY, ...], [lines]]}
            for key in v[0]:
                out[str(key)] = [str(x) for x in v[1]]
        elif isinstance(v, list):                                              # {KEY: [lines]}
            out[k] = [str(x) for x in v]
    return out


def convert(dump_dir, out_dir) -> dict:
    """Convert every dump.json under `dump_dir`; returns the report (also written to OUT_DIR/import-msprobe.json)."""
    dump_dir, out_dir = Path(dump_dir), Path(out_dir)
    files = [dump_dir] if dump_dir.is_file() else sorted(dump_dir.rglob("dump.json"))
    if not files:
        from ..errors import UsageError

        raise UsageError(f"{dump_dir}: no dump.json found (an msprobe PyTorch dump: <dump_path>/step*/rank*/dump.json)")
    report = {"dump_dir": str(dump_dir), "out_dir": str(out_dir), "dump_files": len(files), "entries": 0,
              "converted": 0, "records": [], "other_apis": Counter(), "backward_skipped": 0, "unusable": []}
    for f in files:
        _convert_file(f, out_dir, report)
    report["other_apis"] = dict(report["other_apis"].most_common())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "import-msprobe.json").write_text(json.dumps(report, indent=1))
    return report


def _convert_file(path: Path, out_dir: Path, report: dict) -> None:
    try:
        dump = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        report["unusable"].append({"file": str(path), "key": None, "reason": f"{path}: not readable JSON: {exc}"})
        return
    if not isinstance(dump, dict) or not isinstance(dump.get("data"), dict):
        report["unusable"].append({"file": str(path), "key": None, "reason": f"{path}: no 'data' object"})
        return
    if dump.get("framework", "pytorch") != "pytorch":
        report["unusable"].append({"file": str(path), "key": None,
                                   "reason": f"{path}: framework {dump.get('framework')!r}, only pytorch dumps hold "
                                             "torch_npu calls"})
        return
    tensor_dir = path.with_name("dump_tensor_data")
    if not tensor_dir.is_dir() and dump.get("dump_data_dir"):
        tensor_dir = Path(dump["dump_data_dir"])
    stacks = _stacks(path)
    tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]
    for key, entry in dump["data"].items():
        report["entries"] += 1
        m = KEY.match(key)
        ep = BY_BASE.get(m.group("api").rpartition(".")[2]) if m else None
        if ep is None:
            report["other_apis"][m.group("api") if m else key] += 1
            continue
        if m.group("direction") == "backward":
            report["backward_skipped"] += 1   # gradients of the call, not a call of the op
            continue
        try:
            rid = _convert_entry(key, m, ep, entry, tensor_dir, path, dump, stacks, out_dir, tag)
        except (DumpError, record.RecordError, TypeError) as exc:
            report["unusable"].append({"file": str(path), "key": key, "reason": str(exc)})
            continue
        report["converted"] += 1
        report["records"].append(rid)


def _convert_entry(key, m, ep, entry, tensor_dir, path, dump, stacks, out_dir, tag) -> str:
    if not isinstance(entry, dict) or "input_args" not in entry:
        raise DumpError(f"{path}: {key} has no input_args (dumped with data_mode output only?)")
    args = [_value(x, tensor_dir, f"{key} input_args[{i}]") for i, x in enumerate(entry.get("input_args") or [])]
    kwargs = {k: _value(v, tensor_dir, f"{key} input_kwargs[{k!r}]") for k, v in (entry.get("input_kwargs") or {}).items()}
    bound = bind(ep, tuple(args), kwargs)
    unknown = sorted(set(bound) - set(ep.arguments))
    if unknown:
        raise DumpError(f"{path}: {key} has arguments {unknown} that {ep.api} does not take")
    tensors = {k: v for k, v in bound.items() if isinstance(v, np.ndarray) and k not in ep.outputs_only}
    attrs = {k: v for k, v in bound.items() if k not in tensors and k not in ep.outputs_only}
    sig = hostcopy.signature(ep.api, {k: (name_of(v), list(v.shape)) for k, v in tensors.items()}, attrs, {})
    rid = f"{ep.op}-ms{tag}-{int(m.group('count')):05d}"
    stack = stacks.get(key, [])
    manifest = {
        "id": rid, "op": ep.op, "api": ep.api, "source": "msprobe",
        "arguments": [n for n in bound if n not in ep.outputs_only],
        "attributes": {k: record.json_value(v, f"{path}: {key} argument {k!r}") for k, v in attrs.items()},
        "omitted": {k: "preallocated output buffer of the .out overload" for k in ep.outputs_only if k in bound},
        "signature": sig, "call_index": int(m.group("count")), "outcome": "returned",
        "call_site": {"stack": stack[0]} if stack else {}, "stack": stack,
        "versions": {"msprobe_dump": {k: dump.get(k) for k in ("task", "level", "framework")}},
        "msprobe": {"dump_json": str(path), "key": key},
    }
    record.write(out_dir / rid, manifest, tensors)
    return rid

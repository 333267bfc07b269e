"""One captured call on disk: `<id>/manifest.json` plus `<id>/tensors.safetensors`.

The manifest is self-describing: the operator and the torch_npu entry point, every argument by its
schema name in call order, each tensor's dtype, shape and storage format, each attribute's value
(ints, floats, strings, bools, int lists, None), the call site, the library versions and where the
record came from (a capture, an msprobe dump). Tensors live in the safetensors file under their
argument names; `read` checks each against the manifest, so a manifest that lies about a shape or a
truncated tensor file is a RecordError naming the file and the problem.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dtypes import name_of
from . import tensorfile

FORMAT = "opdiff-record/1"
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
FORMAT_NZ = "FRACTAL_NZ"


class RecordError(ValueError):
    """A record that cannot be used; the message names the file and the problem."""


@dataclass
class Record:
    manifest: dict
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def op(self) -> str:
        return self.manifest["op"]

    def arguments(self) -> dict:
        """Argument name -> numpy array (tensors) or value (attributes), in call order."""
        attrs = self.manifest.get("attributes", {})
        out = {}
        for name in self.manifest["arguments"]:
            out[name] = self.tensors[name] if name in self.tensors else attrs.get(name)
        return out

    def tensor_format(self, name: str) -> str:
        return self.manifest["tensors"].get(name, {}).get("format", "ND")


def json_value(value, where: str):
    """An attribute as JSON: scalars, strings, None, (nested) lists of them; anything else is an error."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"float": repr(value)}   # JSON has no inf/nan: kept exactly, as text
        return value
    if isinstance(value, np.generic):
        return json_value(value.item(), where)
    if isinstance(value, (list, tuple)):
        return [json_value(v, where) for v in value]
    raise RecordError(f"{where}: attribute of type {type(value).__name__} cannot be recorded")


def _attr_value(value):
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"])
    if isinstance(value, list):
        return [_attr_value(v) for v in value]
    return value


def write(directory: Path, manifest: dict, tensors: dict[str, np.ndarray], meta: dict[str, dict] | None = None) -> int:
    """Write a record (manifest fields + tensors) into `directory`; returns the bytes written. `meta`: per
    tensor, what the host copy no longer shows: {"format": storage format, "contiguous": bool} as the op saw it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    manifest = dict(manifest, format=FORMAT, tensor_file=TENSORS)
    manifest["tensors"] = {k: {"dtype": name_of(v), "shape": [int(s) for s in v.shape], "format": "ND",
                               **meta.get(k, {})} for k, v in tensors.items()}
    n = tensorfile.write(directory / TENSORS, tensors, {"record": manifest["id"], "op": manifest["op"]})
    text = json.dumps(manifest, indent=1, sort_keys=False)
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(text)
    tmp.replace(directory / MANIFEST)   # the manifest last: a record without one is incomplete, not wrong
    return n + len(text)


REQUIRED = ("id", "op", "api", "arguments", "tensors", "attributes")


def read(directory: Path, load_tensors: bool = True) -> Record:
    """Read and check a record; any problem is a RecordError naming the file."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except OSError as exc:
        raise RecordError(f"{mpath}: cannot read: {exc}") from None
    except ValueError as exc:
        raise RecordError(f"{mpath}: not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise RecordError(f"{mpath}: format {got!r}, expected {FORMAT!r}")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise RecordError(f"{mpath}: missing fields {missing}")
    names = set(manifest["arguments"])
    stray = sorted(set(manifest["tensors"]) - names) + sorted(set(manifest["attributes"]) - names)
    if stray:
        raise RecordError(f"{mpath}: tensors/attributes {stray} are not among the arguments")
    manifest["attributes"] = {k: _attr_value(v) for k, v in manifest["attributes"].items()}
    rec = Record(manifest, {}, directory)
    if not load_tensors:
        return rec
    tpath = directory / manifest.get("tensor_file", TENSORS)
    try:
        tensors, _ = tensorfile.read(tpath)
    except tensorfile.TensorFileError as exc:
        raise RecordError(str(exc)) from None
    for name, want in manifest["tensors"].items():
        if name not in tensors:
            raise RecordError(f"{tpath}: tensor {name!r} listed in {MANIFEST} is missing from the file")
        got = tensors[name]
        if name_of(got) != want.get("dtype") or list(got.shape) != list(want.get("shape", [])):
            raise RecordError(f"{mpath}: tensor {name!r} is {name_of(got)}{list(got.shape)} in {tpath.name}, the "
                              f"manifest says {want.get('dtype')}{want.get('shape')}")
    extra = sorted(set(tensors) - set(manifest["tensors"]))
    if extra:
        raise RecordError(f"{tpath}: tensors {extra} are not in {MANIFEST}")
    rec.tensors = tensors
    return rec


def find(root: Path) -> list[Path]:
    """Every record directory under `root` (those holding a manifest.json), sorted."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(MANIFEST))

"""Case inputs kept in the golden store next to the references computed from them.

Drawing a case's inputs is deterministic in (op, params, seed, the input builder's code, numpy's
version: the generator's stream), and on the largest nightly cases it costs more than reading them
back (a 380 MiB paged cache: ~1 s to draw, ~0.2 s to read and verify). Ascend's own ST flow ships
input data with its golden data for the same reason. So a run with a store (`run --golden-store`,
`golden build`) reads a case's inputs from it, or draws them and writes them there.

An inputs entry is an ordinary store entry (harness.golden_store: checksummed, no pickle, a bad one
is reported, counted and drawn again): the arrays under their argument names, and the other values
(None, bool, int, float, str, lists of them) as JSON in one uint8 member, VALUES. A broadcast view
(zero strides: a negative case's tensor of 2M rows that costs no memory) is stored as the array it
broadcasts from and read back through np.broadcast_to: the same values, shape and strides, read-only
as it was. Another array that is not C-contiguous (a negative case's cache sliced out of a larger one on
purpose: a stored copy would be contiguous, another input) is stored as the bytes its elements span in
the array that owns them, and read back as a view of them with its strides, offset and writeable flag.
An input of any other type, or a view of memory no ndarray owns, makes the case's inputs unstorable:
drawn every time, counted as unstorable.

    inputs_key(spec, case, seed) -> Key
    make_inputs(spec, case, seed, store) -> dict      (store None: spec.make_inputs)
    LazyInputs(build)                                 the same, built on first access
    through(spec, case, seed, store) -> (dict, "store" | "computed")
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np
import orjson

from . import golden_store

log = logging.getLogger(__name__)

#: the member that holds the non-array inputs, as JSON bytes
VALUES = "__values__"
_SCALARS = (type(None), bool, int, float, str)


def inputs_key(spec, case, seed: int) -> golden_store.Key:
    """Everything a case's drawn inputs depend on: the input builder's code (cases/<op>.py and what it
    imports, harness.inputs among it) and the versions of numpy (its generator) and ml_dtypes."""
    code = golden_store.code_hash(golden_store.spec_module(spec))
    return golden_store.case_key("inputs", spec, case, seed, code, golden_store.versions(False))


def _plain(value) -> bool:
    if isinstance(value, _SCALARS):
        return not isinstance(value, float) or np.isfinite(value)   # JSON has no NaN or inf
    return isinstance(value, list) and all(isinstance(x, _SCALARS) and _plain(x) for x in value)


def encode(inputs: dict) -> dict | None:
    """The arrays of `inputs` plus VALUES, or None when some input is neither an array nor plain."""
    arrays, values, broadcast, strided = {}, {}, {}, {}
    for name, v in inputs.items():
        if name == VALUES:
            return None
        if isinstance(v, np.ndarray):
            if v.flags.c_contiguous:
                arrays[name] = v
                continue
            base = _broadcast_base(v)
            if base is not None:
                arrays[name] = base
                broadcast[name] = list(v.shape)
                continue
            span = _strided_span(v)
            if span is None:                 # no ndarray holds its memory: a copy would be another input
                return None
            arrays[name], strided[name] = span
        elif _plain(v):
            values[name] = v
        else:
            return None
    order = list(inputs)        # the argument order of the dict, kept for the backends that print it
    blob = json.dumps({"values": values, "order": order, "broadcast": broadcast, "strided": strided}).encode()
    arrays[VALUES] = np.frombuffer(blob, np.uint8)
    return arrays


def decode(stored: dict) -> dict:
    """The inputs dict an entry stands for (ValueError for one that is not an inputs entry)."""
    if VALUES not in stored:
        raise ValueError(f"not an inputs entry (no {VALUES!r} member)")
    meta = orjson.loads(np.asarray(stored[VALUES]).tobytes())     # json.JSONDecodeError where it is bad
    values, broadcast, strided = meta["values"], meta.get("broadcast", {}), meta.get("strided", {})
    out = {}
    for name in meta["order"]:
        if name in values:
            out[name] = values[name]
        elif name in broadcast:
            out[name] = np.broadcast_to(stored[name], tuple(broadcast[name]))
        elif name in strided:
            out[name] = _strided_view(stored[name], strided[name])
        else:
            out[name] = stored[name]
    return out


def _broadcast_base(v: np.ndarray) -> np.ndarray | None:
    """The C-contiguous array that np.broadcast_to turns into v (same shape and strides), for a v whose
    only non-contiguity is zero strides; None for any other layout."""
    if 0 not in v.strides:
        return None
    base = v[tuple(slice(0, 1) if st == 0 else slice(None) for st in v.strides)]
    if not base.flags.c_contiguous or np.broadcast_to(base, v.shape).strides != v.strides:
        return None
    return base


def _strided_span(v: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """(the bytes v's elements lie in, how v lies in them) for a view into memory an ndarray owns (a
    negative case's cache sliced out of a larger one on purpose: its strides are the input); None
    where no ndarray owns it. Only the bytes from v's first to its last element are kept."""
    owner = v
    while owner.base is not None:
        up = owner.base
        if not isinstance(up, np.ndarray):   # as_strided's holder of an array interface (sliding windows)
            up = getattr(up, "base", None) if hasattr(up, "__array_interface__") else None
        if not isinstance(up, np.ndarray):
            break
        owner = up
    if owner.base is not None or not owner.flags.c_contiguous:
        return None
    lo = hi = v.ctypes.data - owner.ctypes.data           # byte offsets of v's extreme elements
    for n, st in zip(v.shape, v.strides):
        if n == 0:
            return None                                    # an empty view: nothing to keep but its shape
        lo, hi = (lo + (n - 1) * st, hi) if st < 0 else (lo, hi + (n - 1) * st)
    hi += v.dtype.itemsize
    if lo < 0 or hi > owner.nbytes:
        return None
    raw = owner.reshape(-1).view(np.uint8)[lo:hi]
    return raw, {"dtype": golden_store.dtype_tag(v.dtype), "shape": list(v.shape), "strides": list(v.strides),
                 "offset": v.ctypes.data - owner.ctypes.data - lo, "writeable": bool(v.flags.writeable)}


def _strided_view(raw: np.ndarray, how: dict) -> np.ndarray:
    """The view _strided_span kept, over the stored bytes (a bad geometry raises ValueError: the entry
    is corrupt)."""
    try:
        v = np.ndarray(tuple(how["shape"]), golden_store.tag_dtype(how["dtype"]), buffer=np.asarray(raw, np.uint8),
                       offset=int(how["offset"]), strides=tuple(how["strides"]))
    except (TypeError, ValueError) as exc:   # numpy: "buffer is too small", "strides is incompatible"
        raise ValueError(f"strided input does not fit its stored bytes: {exc}") from None
    if not how["writeable"]:
        v.flags.writeable = False
    return v


class LazyInputs(Mapping):
    """A case's inputs, built on first use: a negative case that every backend rejects on its params
    (harness.runner) never reads or draws its tensors. Any access builds them, so a backend that looks
    at them gets them; `loaded` says whether one did."""

    def __init__(self, build):
        self._build, self._inputs = build, None

    @property
    def loaded(self) -> bool:
        return self._inputs is not None

    def _get(self) -> dict:
        if self._inputs is None:
            self._inputs = self._build()
        return self._inputs

    def __getitem__(self, name):
        return self._get()[name]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def make_inputs(spec, case, seed: int, store: golden_store.GoldenStore | None) -> dict:
    """The case's inputs: from `store` when it holds them, else drawn (and written to `store`)."""
    return through(spec, case, seed, store)[0]


def through(spec, case, seed: int, store: golden_store.GoldenStore | None) -> tuple[dict, str]:
    """(inputs, source): "store" when read from `store`, else "computed" (drawn, and written there)."""
    if store is None or "replay_record" in case.params:    # a replayed call reads its own tensor files
        return spec.make_inputs(case, seed), "computed"
    key = inputs_key(spec, case, seed)
    stored = store.get(key)
    if stored is not None:
        try:
            return decode(stored), "store"
        except (ValueError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            store.unusable()
            log.warning("golden store: %s: bad inputs entry (%s); drawing them again", store.path(key), exc)
    inputs = spec.make_inputs(case, seed)
    encoded = encode(inputs)
    if encoded is None:
        store.count("unstorable")
        log.info("golden store: inputs of %s/%s not stored: an input is neither an array nor a plain value",
                 spec.name, case.id)
    else:
        store.put(key, encoded)
    return inputs, "computed"

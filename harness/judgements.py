"""A backend's judgements, kept in the golden store next to the references they were made against.

A comparison is a pure function of the backend's output bits, the golden and baseline it is judged
against, the rule and the comparison's code. On a nightly node whose kernels did not change, the
outputs are the same bits as last night, and folding hundreds of thousands of elements again gives
the same rows. So a run with a store (`run --golden-store`) keys the judgements of one backend on one
case by all of that, and a second run reads them instead of folding (NSA grad's smoke cases: 2 to 3 ms
of comparison each, against 0.1 ms to read its judgements back).

The key names (harness.golden_store.Key, kind "judgement"):
  golden    the golden's key digest: op, params, seed, the golden's and input builder's code, numpy's
            version (the regions, their masks and rules are the spec's: its code is in it);
  baseline  the baseline's key digest, or "" where no region of the backend is judged against one;
  outputs   XXH3-128 over every output's name, dtype, shape and bytes;
  code      harness.compare and harness.runner and everything they import (the policy, the fold loop);
  cpu       the CPU numba compiles the fold for, and numba's version: a sum's last bits follow the
            vector width.
An entry holds, per region row, its label, verdict, reason and metrics (JSON, NaN and inf as JSON
writes them). A bad one is counted, reported and judged again, like any store entry.

    Judgements.of(store, spec, outputs, labels, golden_digest, baseline_digest) -> Judgements | None
    j.read() -> the stored rows, or None;  j.keep(rows)
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import orjson
import xxhash

from . import golden_store

log = logging.getLogger(__name__)

#: a backend's outputs are judged afresh where their elements, plus REGION_ELEMENTS per region, are
#: fewer than this: reading an entry back (31-50 us, and hashing the outputs) costs more than judging
#: them (a fold is ~2.5 ns an element; a region's rule costs tens of microseconds of Python besides).
#: 16K per region keeps DequantRope's judgements (7 small regions a backend) and none of IFA's (2 or
#: 3): measured case by case in one process, 0.57 against 0.62 ms of harness per smoke case with 8K
MIN_ELEMENTS = 1 << 16
REGION_ELEMENTS = 1 << 14

#: the member of an entry that holds the rows, as JSON bytes
ROWS = "__judgements__"

_cpu: str | None = None


def cpu() -> str:
    """The CPU the fold loops are compiled for (numba: NUMBA_CPU_NAME, else the host's) and numba's version."""
    global _cpu
    if _cpu is None:
        import numba
        from llvmlite import binding

        _cpu = f"{os.environ.get('NUMBA_CPU_NAME') or binding.get_host_cpu_name()} numba {numba.__version__}"
    return _cpu


def code() -> str:
    """The comparison's code: harness.compare and harness.runner and what they import, transitively."""
    return golden_store.code_hash("harness.compare", "harness.runner")


def outputs_digest(outputs: dict, names) -> str:
    """XXH3-128 over each output's name, dtype, shape and bytes, in `names` order."""
    h = xxhash.xxh3_128()
    for name in names:
        a = np.ascontiguousarray(outputs[name])
        h.update(f"{name}\0{golden_store.dtype_tag(a.dtype)}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _loads(blob: bytes):
    """JSON as keep() wrote it: orjson (5 against 40 us for a DequantRope case's 14 rows), else json, which
    reads the NaN and Infinity that a row's ratios may hold and orjson refuses."""
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        return json.loads(blob)


def worth_keeping(outputs: dict, names, n_regions: int) -> bool:
    """Whether judging these outputs costs more than reading their judgements back (MIN_ELEMENTS)."""
    return sum(np.size(outputs[n]) for n in names) + REGION_ELEMENTS * n_regions >= MIN_ELEMENTS


class Judgements:
    """The judgement entry of one backend's outputs on one case (see the module doc)."""

    def __init__(self, store, key: golden_store.Key, labels: list[str]):
        self.store, self.key, self.labels = store, key, labels

    @classmethod
    def of(cls, store, spec, outputs: dict, labels: list[str], golden_digest: str | None,
           baseline_digest: str) -> "Judgements | None":
        """The entry for these outputs, or None where none is kept: no store, no golden key, outputs too
        small to be worth a read (MIN_ELEMENTS). `labels`: the rows' region labels, in order."""
        if store is None or golden_digest is None or not worth_keeping(outputs, spec.outputs, len(labels)):
            return None
        fields = {"layout": golden_store.LAYOUT, "kind": "judgement", "op": spec.name, "golden": golden_digest,
                  "baseline": baseline_digest, "outputs": outputs_digest(outputs, spec.outputs),
                  "code": code(), "cpu": cpu()}
        return cls(store, golden_store.Key(tuple(fields.items())), labels)

    def read(self) -> list[dict] | None:
        """The stored rows (label, verdict, reason, metrics, baseline), one per region in order; None on a
        miss or a bad entry (counted and reported)."""
        stored = self.store.get(self.key)
        if stored is None:
            return None
        try:
            rows = _loads(np.asarray(stored[ROWS]).tobytes())
            if [r["label"] for r in rows] != self.labels:
                raise ValueError(f"its rows are {[r['label'] for r in rows]}, the regions {self.labels}")
            for r in rows:
                if not (isinstance(r["verdict"], str) and isinstance(r["reason"], str) and isinstance(r["metrics"], dict)
                        and isinstance(r["baseline"], bool)):
                    raise ValueError("a row without a verdict, reason, metrics or baseline flag")
            return rows
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:   # JSONDecodeError is a ValueError
            self.store.unusable()
            log.warning("golden store: %s: bad judgement entry (%s); judging again", self.store.path(self.key), exc)
            return None

    def keep(self, rows: list[dict]) -> None:
        """Store the rows just judged (what read() returns); values JSON cannot hold are not stored."""
        try:
            blob = json.dumps(rows).encode()
        except (TypeError, ValueError) as exc:
            self.store.count("unstorable")
            log.info("golden store: judgements of %s not stored: %s", self.key.as_dict()["op"], exc)
            return
        self.store.put(self.key, {ROWS: np.frombuffer(blob, np.uint8)})

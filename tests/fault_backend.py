"""A test-only backend that misbehaves on chosen cases (never in the default backend list).

It computes like the numpy backend, except on cases whose id matches a glob in OPDIFF_FAULTS:

    OPDIFF_FAULTS="segfault=base-*;hang=edge-cache_dtype-0-*;raise=pw00-*;garbage=pw01-*;slow=0.05"

  segfault  kills its own process with SIGSEGV      abort   os.abort() (SIGABRT)
  hang      sleeps for an hour                       raise   raises RuntimeError
  garbage   returns outputs full of wrong values     slow=S  sleeps S seconds on every case
  flaky     on every second launch of a matching case (2nd, 4th, ...; counted per process), flips the lowest
            bit of the first K elements of every output (K from `flaky_n=K`, default 1): a kernel whose
            accumulation order changes between launches differs in the last bit of a few elements, the
            difference `run --determinism` must catch (harness.devcheck)

The environment is read at every call, so a worker process started later sees the same faults.
Register it with `register()`; `python -m tests.fault_backend ARGS` is `python -m harness ARGS`
with the backend registered (for tests that run the CLI as a separate process).
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys
import time

import numpy as np

from backends.base import Backend
from harness.dtypes import cast

ENV = "OPDIFF_FAULTS"
KINDS = ("segfault", "abort", "hang", "raise", "garbage", "flaky")
_LAUNCHES: dict = {}   # case id -> launches in this process (the flaky kind acts on every second one)


def faults() -> dict:
    out = {}
    for part in os.environ.get(ENV, "").split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def fault_for(case_id: str) -> str | None:
    f = faults()
    for kind in KINDS:
        if any(fnmatch.fnmatchcase(case_id, pat) for pat in f.get(kind, [])):
            return kind
    return None


class FaultBackend(Backend):
    """`fault` computes like numpy; `fault:<label>` is the same and names one front end of a shared kernel
    (kernel_key "fault-kernel"), so two labels form a front-end pair (harness.devcheck)."""

    name = "fault"
    may_crash = True

    def __init__(self, option: str | None = None):
        self.option = option or None   # harness.isolate rebuilds the backend in a worker from it
        if option:
            self.name = f"fault:{option}"
        self.kernel_key = "fault-kernel" if option else None

    def prepare(self, spec, case, inputs):
        return {"spec": spec, "case": case, "inputs": inputs, "out": None}

    def launch(self, prepared):
        from harness import registry

        case = prepared["case"]
        slow = faults().get("slow")
        if slow:
            time.sleep(float(slow[-1]))
        kind = fault_for(case.id)
        if kind == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif kind == "abort":
            os.abort()
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "raise":
            raise RuntimeError(f"injected fault on {case.id}")
        prepared["out"] = registry.backend("numpy").golden(prepared["spec"], case, prepared["inputs"])
        prepared["garbage"] = kind == "garbage"
        _LAUNCHES[case.id] = n = _LAUNCHES.get(case.id, 0) + 1
        prepared["flip"] = int((faults().get("flaky_n") or ["1"])[-1]) if kind == "flaky" and n % 2 == 0 else 0

    def fetch(self, prepared):
        spec, case = prepared["spec"], prepared["case"]
        dtypes = spec.output_dtypes(case.params)
        out = {}
        for k, v in prepared["out"].items():
            if k not in dtypes:
                continue
            v = np.asarray(v)
            if prepared["garbage"]:
                v = np.full(v.shape, 77, dtype=np.float64)  # far from any golden value of the paged caches
            out[k] = cast(v, dtypes[k])
            if prepared.get("flip"):
                out[k] = flip_low_bits(out[k], prepared["flip"])
        return out


def flip_low_bits(a: np.ndarray, k: int) -> np.ndarray:
    """A copy of `a` with the lowest bit of its first k elements (C order) flipped."""
    a = np.array(a, copy=True)
    bits = a.reshape(-1).view(np.dtype(f"u{a.dtype.itemsize}"))
    bits[:k] ^= 1
    return a


def register() -> None:
    from harness import registry

    registry.register_backend("fault", FaultBackend)


if __name__ == "__main__":
    register()
    from harness.cli import main

    sys.exit(main(sys.argv[1:]))

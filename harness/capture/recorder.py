"""`capture(DIR, ...)`: record the calls a program makes to the five torch_npu entry points.

    with harness.capture("captures/run1", ops=["paged_cache_load"], max_calls=200, sample=10):
        model.generate(...)

Each wrapped function copies its tensor arguments to the host *before* calling the original (the
ops update caches in place, and a record must hold what the op read), then calls it with the very
same arguments and returns its result untouched. A failure to record is counted and logged, never
raised into the program. Per entry point, call k is looked at when k % sample == 0; a call whose
signature (dtypes, shapes, formats and attribute values) was already recorded `per_signature` times is
a duplicate; past `max_calls` records or `max_bytes` on disk, calls are counted and not written.
Every call is accounted for in DIR/capture-<pid>.json (seen, recorded, and each reason for not
recording), so nothing is dropped silently. Only attribute lookups through the torch_npu module are
seen: a function bound earlier (`from torch_npu import npu_...` before the capture started) or called
as torch.ops.npu.* is not.
"""
from __future__ import annotations

import datetime
import importlib
import json
import linecache
import logging
import os
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

from . import hostcopy, record
from .entry_points import EntryPoint, bind, for_ops

log = logging.getLogger(__name__)

DEFAULT_MAX_CALLS = 1000
DEFAULT_MAX_BYTES = 2 << 30
MANIFEST_OVERHEAD = 8192          # bytes a record's manifest and header add to its tensors, for the budget
REASONS = ("sampled_out", "duplicate", "over_max_calls", "over_disk_budget", "failed")
_HERE = str(Path(__file__).resolve().parent)
_BACKENDS = str(Path(__file__).resolve().parents[2] / "backends") + os.sep   # opdiff's backends: call sites


def _versions(module) -> dict:
    from ..envinfo import cann_version, fingerprint

    fp = fingerprint()
    return {"python": fp["python"], "numpy": fp["numpy"], "torch": fp["torch"],
            "torch_npu": getattr(module, "__version__", None) or fp["torch_npu"], "cann": cann_version(),
            "opdiff_commit": fp["opdiff_commit"], "host": fp["host"]}


def _in_library(filename: str) -> bool:
    """A frame of torch or torch_npu themselves; opdiff's own backends/torch*/ folders are call sites."""
    if filename.startswith(_BACKENDS):
        return False
    return f"{os.sep}torch_npu{os.sep}" in filename or f"{os.sep}torch{os.sep}" in filename


def _call_site() -> tuple[dict, list[str]]:
    """The first frame outside opdiff's capture, torch and torch_npu, and a short stack above it."""
    frames = []
    f = sys._getframe(2)
    while f is not None and len(frames) < 12:
        name = f.f_code.co_filename
        if not (name.startswith(_HERE) or _in_library(name)):
            frames.append((name, f.f_lineno, f.f_code.co_name))
        f = f.f_back
    if not frames:
        return {}, []
    file, line, func = frames[0]
    site = {"file": file, "line": line, "function": func, "code": linecache.getline(file, line).strip()}
    return site, [f"{a}:{b} in {c}" for a, b, c in frames]


class Capture:
    """The capture session; use `capture(...)` (a context manager) or start()/stop()."""

    def __init__(self, directory, ops=None, max_calls: int = DEFAULT_MAX_CALLS, sample: int = 1,
                 per_signature: int = 1, max_bytes: int = DEFAULT_MAX_BYTES, module=None):
        if sample < 1 or max_calls < 0 or per_signature < 1 or max_bytes < 0:
            from ..errors import UsageError

            raise UsageError(f"capture: sample ({sample}) and per_signature ({per_signature}) must be >= 1, "
                             f"max_calls ({max_calls}) and max_bytes ({max_bytes}) >= 0")
        self.dir = Path(directory)
        self.entries = for_ops(ops)
        self.max_calls, self.sample, self.per_signature, self.max_bytes = max_calls, sample, per_signature, max_bytes
        self.module = module
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[dict] = []
        self.missing: dict[str, str] = {}
        self.signatures: Counter = Counter()
        self.recorded = self.bytes = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._originals: list[tuple[object, str, object]] = []
        self._versions: dict | None = None
        self.started = None

    # ---- install / remove ------------------------------------------------------------------------------------
    def start(self, module=None) -> "Capture":
        module = module or self.module or importlib.import_module("torch_npu")
        self.module = module
        self.dir.mkdir(parents=True, exist_ok=True)
        self._versions = _versions(module)   # now, not inside the first recorded call (it runs git)
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        for entry in self.entries:
            owner, _, attr = entry.api.rpartition(".")
            parent = module
            try:
                for part in filter(None, owner.split(".")):
                    parent = getattr(parent, part)
                original = getattr(parent, attr)
            except AttributeError as exc:
                self.missing[entry.api] = f"not found on {getattr(module, '__name__', module)!r}: {exc}"
                log.warning("capture: torch_npu.%s not found, its calls are not recorded", entry.api)
                continue
            self._originals.append((parent, attr, original))
            setattr(parent, attr, self._wrap(entry, original))
        return self

    def stop(self) -> dict:
        while self._originals:
            parent, attr, original = self._originals.pop()
            setattr(parent, attr, original)
        summary = self.summary()
        if self.started is not None:
            path = _fresh(self.dir / f"capture-{os.getpid()}.json")   # a second session of this process keeps both
            path.write_text(json.dumps(summary, indent=1))
            seen = sum(c["seen"] for c in summary["counts"].values())
            log.warning("capture: %d call(s) seen, %d recorded in %s (%s)", seen, self.recorded, self.dir,
                        ", ".join(f"{r} {n}" for r, n in summary["not_recorded"].items() if n) or "none skipped")
        return summary

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def summary(self) -> dict:
        return {"format": "opdiff-capture/1", "pid": os.getpid(), "started": self.started, "dir": str(self.dir),
                "settings": {"ops": sorted({e.op for e in self.entries}), "max_calls": self.max_calls,
                             "sample": self.sample, "per_signature": self.per_signature, "max_bytes": self.max_bytes},
                "counts": {api: dict(c) for api, c in sorted(self.counts.items())},
                "not_recorded": {r: sum(c.get(r, 0) for c in self.counts.values()) for r in REASONS},
                "recorded": self.recorded, "bytes": self.bytes, "failures": self.failures[:100],
                "missing_entry_points": self.missing}

    # ---- the wrapper -----------------------------------------------------------------------------------------
    def _wrap(self, entry: EntryPoint, original):
        def wrapper(*args, **kwargs):
            pending = None
            try:
                pending = self._observe(entry, args, kwargs)
            except Exception as exc:   # recording must never break the program
                self._fail(entry, exc)
            outcome = "returned"
            try:
                return original(*args, **kwargs)
            except BaseException as exc:
                outcome = f"raised {type(exc).__name__}: {exc}"[:500]
                raise
            finally:
                if pending is not None:
                    try:
                        self._write(entry, pending, outcome)
                    except Exception as exc:
                        self._release(pending["key"], pending["reserved"])
                        self._fail(entry, exc)

        wrapper.__wrapped__ = original
        wrapper.__name__ = entry.api.rpartition(".")[2]
        wrapper.__doc__ = getattr(original, "__doc__", None)
        return wrapper

    def _fail(self, entry, exc) -> None:
        with self._lock:
            self.counts[entry.api]["failed"] += 1
            self.failures.append({"api": entry.api, "reason": f"{type(exc).__name__}: {exc}"[:500]})
        log.warning("capture: recording a call of %s failed: %s", entry.api, exc)

    def _observe(self, entry: EntryPoint, args, kwargs):
        """Decide whether to record this call; if so, copy its tensors to the host now (before the op runs).
        The paths that record nothing are the hot ones (every decode step): a counter, or a tuple lookup."""
        with self._lock:
            c = self.counts[entry.api]
            index = c["seen"]
            c["seen"] += 1
            if index % self.sample:
                c["sampled_out"] += 1
                return None
        bound = bind(entry, args, kwargs)
        tensors, attrs = hostcopy.describe(bound, entry.outputs_only)
        getter = hostcopy.format_getter(self.module)
        formats = {k: hostcopy.storage_format(getter, bound[k]) for k in tensors}
        key = hostcopy.signature_key(entry.api, tensors, attrs, formats)
        with self._lock:
            if self.signatures[key] >= self.per_signature:
                c["duplicate"] += 1
                return None
        size = sum(hostcopy.nbytes(bound[k]) for k in tensors) + MANIFEST_OVERHEAD
        with self._lock:
            if self.signatures[key] >= self.per_signature:
                reason = "duplicate"
            elif self.recorded >= self.max_calls:
                reason = "over_max_calls"
            elif self.bytes + size > self.max_bytes:
                reason = "over_disk_budget"
            else:
                reason = None
                self.signatures[key] += 1
                self.recorded += 1
                self.bytes += size      # reserved now, so concurrent calls cannot overshoot the budget
                self._seq += 1
                seq = self._seq
        if reason:
            return self._skip(entry, reason)
        try:
            return self._snapshot(entry, bound, tensors, attrs, formats, key, seq, index, size)
        except BaseException:
            self._release(key, size)
            raise

    def _release(self, key, size) -> None:
        """Give back what a record that was not written had reserved (its slot, its bytes, its signature)."""
        with self._lock:
            self.signatures[key] -= 1
            self.recorded -= 1
            self.bytes -= size

    def _snapshot(self, entry, bound, tensors, attrs, formats, key, seq, index, size) -> dict:
        host = {k: hostcopy.to_host(bound[k]) for k in tensors}
        site, stack = _call_site()
        omitted = {k: "preallocated output buffer of the .out overload, not an input of the op"
                   for k in entry.outputs_only if bound.get(k) is not None}
        sig = hostcopy.signature(entry.api, tensors, attrs, formats)
        meta = {k: {"format": formats[k], "contiguous": bool(bound[k].is_contiguous())} for k in tensors}
        device_name = self._device_name(bound, tensors)
        return {"seq": seq, "index": index, "sig": sig, "key": key, "host": host, "attrs": attrs, "meta": meta,
                "names": list(bound), "site": site, "stack": stack, "omitted": omitted, "reserved": size,
                "devices": sorted({str(bound[k].device) for k in tensors}), "device_name": device_name}

    def _device_name(self, bound, tensors):
        """The NPU's name (torch_npu.npu.get_device_name): product limits differ per card (e.g. Ascend310P)."""
        getter = getattr(getattr(self.module, "npu", None), "get_device_name", None)
        if getter is None:
            return None
        index = next((bound[k].device.index for k in tensors if bound[k].device.type == "npu"), None)
        try:
            return str(getter(index) if index is not None else getter())
        except Exception:   # informative only
            return None

    def _skip(self, entry, reason):
        with self._lock:
            self.counts[entry.api][reason] += 1
        return None

    def _write(self, entry: EntryPoint, p: dict, outcome: str) -> None:
        rid = _fresh(self.dir / f"{entry.op}-p{os.getpid()}-{p['seq']:05d}-{p['sig'][:8]}").name
        manifest = {
            "id": rid, "op": entry.op, "api": entry.api, "source": "capture",
            "arguments": [n for n in p["names"] if n not in entry.outputs_only],
            "attributes": {k: record.json_value(v, f"{entry.api} argument {k!r}") for k, v in p["attrs"].items()},
            "omitted": p["omitted"], "signature": p["sig"], "call_index": p["index"], "outcome": outcome,
            "call_site": p["site"], "stack": p["stack"], "devices": p["devices"], "device_name": p["device_name"],
            "versions": self._versions,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        written = record.write(self.dir / rid, manifest, p["host"], p["meta"])
        with self._lock:
            self.bytes += written - p["reserved"]
            self.counts[entry.api]["recorded"] += 1


_fresh_lock = threading.Lock()


def _fresh(path: Path) -> Path:
    """`path`, or `path` with -2, -3, ... before the suffix when it exists (an earlier session in the same
    directory): a record or summary is never overwritten. The name is claimed by creating it."""
    with _fresh_lock:
        n, candidate = 1, path
        while candidate.exists():
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.suffix:
            candidate.mkdir(parents=True)
        return candidate


def capture(directory, ops=None, max_calls: int = DEFAULT_MAX_CALLS, sample: int = 1, per_signature: int = 1,
            max_bytes: int = DEFAULT_MAX_BYTES, module=None) -> Capture:
    """A context manager recording torch_npu calls into `directory` (see the module docstring).

    ops: opdiff operator names (or torch_npu attribute paths); None = all five. module: the object the
    entry points live on (default: `import torch_npu`)."""
    return Capture(directory, ops, max_calls, sample, per_signature, max_bytes, module)

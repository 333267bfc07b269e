"""A content-addressed store of reference outputs: the float64 golden and the same-precision baseline.

A golden on the host takes milliseconds to minutes while the kernel it judges takes microseconds,
and it only changes when its inputs or its code do. The store keeps each one under a key that
names everything it depends on:

    kind           "golden" (backends/numpy, float64) or "baseline" (backends/torch, cpu)
    op, params     the case (its params_json, which carries a replayed record's digest)
    seed           the input data seed
    code           sha256 over the source of the implementing module, the op's input builder
                   (cases/<op>.py) and every project module they import, transitively
    versions       numpy and ml_dtypes (the baseline adds torch and its CPU thread count,
                   which changes the summation order)

One entry is one file, DIR/v4/<key[:2]>/<key>.entry, written to a temporary name and renamed (a
killed writer leaves no half entry under the real name). Inside: a 24-byte prefix (magic, header
length, the header's checksum), the header (JSON: the key fields, the body's length and, per output,
its dtype, shape and segments), then the body: each segment's raw bytes at a 64-byte boundary. Every
byte after the prefix is under a checksum: the header's (covering its padding), and the body's, checked
in one call per read; each segment has its own as well (covering the padding before it), checked where
the body's fails, to name the output that is bad. The checksum is XXH3-64 (the xxhash package): 26 GB/s on
this project's host against 2.8 for zlib's CRC-32 (the v2 layout's), which spent 0.2 ms of every
smoke case verifying (bench/harness_speed.py). It detects corruption, not tampering: the store is a
cache its owner fills. No pickle: dtypes are named (numpy's dtype string, or "bfloat16") and arrays
are views of the file's bytes.

A float64 output whose elements are mostly exact in a narrower float (zeros, copied cache rows) is
stored as that narrower array (the smallest to store of bfloat16, float16, float32) plus a residual:
the flat index and float64 bits of every element it does not keep bitwise (NaNs and values subnormal
in the narrow dtype always go there). Reading widens it and writes the residual's bits back, so every
output comes back bit for bit, dtype and shape included. A residual over a quarter of the elements
means plain float64.

Every read checks the header's and every segment's checksum, the file's length and that the header
names exactly the key asked for. An entry that fails (truncated, bit flips, a manifest for another
key: "stale") is reported (logged with the file and the problem, counted) and recomputed, never
used. Entries of another layout (v1: .npz; v2: CRC-32; v3: keys hashed over json's text, v4 over
orjson's, 2x faster to form) are not read: a new layout is a new directory, so an old store is all misses.

    GoldenStore(DIR).get(key) -> dict | None      (None: miss, or a bad entry, counted)
    lookup(store, key_fn, spec, case, seed)        -> (key, stored outputs or None): through()'s read
    GoldenStore(DIR).put(key, outputs)
    golden_key(spec, case, seed) / baseline_key(spec, case, seed) -> Key
    from_env()                                     the store named by OPDIFF_GOLDEN_STORE, or None
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import ml_dtypes
import numpy as np
import orjson
import xxhash

from .dtypes import name_of, np_dtype
from .half import widen

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: environment variable naming the store; `run --golden-store` sets it so isolated workers (and any
#: process the run starts) read and fill the same store.
ENV = "OPDIFF_GOLDEN_STORE"
LAYOUT = "v4"
SUFFIX = ".entry"
#: first 8 bytes of an entry: a file that is not one fails before its header is parsed
MAGIC = b"OPDGLD4\n"
#: magic, header length (bytes), checksum of the header: 24 bytes, little-endian
PREFIX = struct.Struct("<8sQQ")
#: segments start on 64-byte boundaries: frombuffer views are aligned for every dtype and cache line
ALIGN = 64
#: narrow dtypes tried for a float64 output, float32 first (what the others keep, it keeps too: a
#: residual too large for it rules them out). Of two that store as many bytes the first wins: bfloat16
#: widens back to float64 faster than float16 (12.6M elements: 14 vs 23 ms, ml_dtypes vs numpy's loop)
NARROW = ("float32", "bfloat16", "float16")
#: a residual of more than a quarter of the elements means plain float64: at 12 bytes an element it
#: would eat most of the saving, and scattering it back costs more than reading the float64 bytes
RESIDUAL_MAX = 0.25
#: below 512 elements (4 KiB of float64) narrowing saves less than its two extra segments cost in
#: header text and padding
NARROW_MIN_ELEMENTS = 512
#: the segments an output is stored as: its array, or a narrowed float64's narrow array and residual
ROLES = ("data", "index", "values")
#: project packages whose modules count towards a code hash (third-party code counts by version)
PROJECT_PACKAGES = ("harness", "backends", "cases")


@dataclass(frozen=True)
class Key:
    fields: tuple  # sorted (name, value) pairs, JSON-able values

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(sorted(self.fields)))   # whoever built it: digest relies on it

    @cached_property                     # a key is immutable; its file name is asked for on every get
    def digest(self) -> str:
        # fields are sorted (so the text is canonical); orjson: 1.7 against json's 6.6 us on a key whose
        # params are 760 characters of JSON, formed three times a case
        return hashlib.sha256(orjson.dumps(dict(self.fields))).hexdigest()

    def as_dict(self) -> dict:
        return dict(self.fields)


# ---------------------------------------------------------------- code hashes

_closure_cache: dict[str, str] = {}
_lock = threading.Lock()


def _module_file(name: str) -> Path | None:
    """The source file of project module `name` (package -> its __init__.py), or None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


# _imports per (module, file, mtime, size): each of the ~15 closures a run hashes (golden, baseline and
# inputs of every op) shares most of its modules with the others; parsing each once saved ~1.5 s a run
_imports_cache: dict[tuple, set[str]] = {}


def _imports(path: Path, name: str) -> set[str]:
    """Project modules imported anywhere in `path` (function bodies too: a lazy import still runs)."""
    st = path.stat()
    memo = (name, str(path), st.st_mtime_ns, st.st_size)
    with _lock:
        if memo in _imports_cache:
            return set(_imports_cache[memo])
    found = _parse_imports(path, name)
    with _lock:
        _imports_cache[memo] = found
    return set(found)


def _parse_imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if node.module:  # `from . import x` imports x, not the package's own code
                found.add(mod)
            for a in node.names:  # `from . import registry` names a module, `from .x import f` a function
                found.add(f"{mod}.{a.name}")
    return {m for m in found if _module_file(m) is not None}


def code_hash(*modules: str) -> str:
    """sha256 over the sources of `modules` and the project modules they import, transitively.
    Package __init__ files count only when a module is imported by the package name itself: they
    run on import but hold plumbing (re-exports, env defaults), not what a golden computes."""
    key = "|".join(sorted(modules))
    with _lock:
        if key in _closure_cache:
            return _closure_cache[key]
    seen: dict[str, Path] = {}
    todo = [m for m in modules if _module_file(m) is not None]
    missing = [m for m in modules if _module_file(m) is None]
    if missing:
        raise ValueError(f"code_hash: no project source for {', '.join(missing)}")
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen[m] = _module_file(m)
        todo.extend(_imports(seen[m], m) - set(seen))
    h = hashlib.sha256()
    for m in sorted(seen):
        h.update(m.encode() + b"\0" + seen[m].read_bytes() + b"\0")
    digest = h.hexdigest()
    with _lock:
        _closure_cache[key] = digest
    return digest


def versions(baseline: bool) -> tuple:
    """(name, version) pairs an entry depends on: numpy and ml_dtypes; torch and its threads for a baseline."""
    v = [("numpy", np.__version__), ("ml_dtypes", ml_dtypes.__version__)]
    if baseline:
        import torch

        # str(): torch's version object parses itself again at every comparison with the stored text
        v += [("torch", str(torch.__version__)), ("torch_threads", torch.get_num_threads())]
    return tuple(v)


def spec_module(spec) -> str:
    """The module of an op's spec and input builder."""
    # the input builder lives in cases/<op>.py (replayed records read their tensors, keyed by digest)
    return f"cases.{spec.name}"


def golden_key(spec, case, seed: int) -> Key:
    code = code_hash(f"backends.numpy.{spec.name}", "backends.numpy", spec_module(spec))
    return case_key("golden", spec, case, seed, code, versions(False))


def baseline_key(spec, case, seed: int) -> Key:
    code = code_hash(f"backends.torch.{spec.name}", "backends.torch", spec_module(spec))
    return case_key("baseline", spec, case, seed, code, versions(True))


def case_key(kind, spec, case, seed, code, version_fields) -> Key:
    """The key of one case's entry of `kind`: its op, params and seed, a code hash, library versions."""
    fields = {"layout": LAYOUT, "kind": kind, "op": spec.name, "params": case.params_json(), "seed": int(seed),
              "code": code, **dict(version_fields)}
    return Key(tuple(fields.items()))        # Key sorts them


# ---------------------------------------------------------------- the store


class BadEntry(Exception):
    """An entry that cannot be trusted; the message says what is wrong with it."""


class NoEntry(BadEntry):
    """No file at the entry's path (GoldenStore.get: a miss; read as a path someone listed: unreadable)."""


class GoldenStore:
    """One store directory. Thread- and process-safe for concurrent writers: entries are immutable
    files renamed into place, and two writers of one key write the same bytes."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.counts: Counter = Counter()  # hit, miss, write, corrupt, stale, unstorable, unkeyed
        self._counting = threading.Lock()   # large references are read ahead on a thread (harness.runner)

    def count(self, kind: str, n: int = 1) -> None:
        with self._counting:
            self.counts[kind] += n

    def unusable(self) -> None:
        """A hit whose contents its reader could not use (a bad inputs or judgement member): counted as
        corrupt instead of as a hit. The reader reports it and computes again."""
        with self._counting:
            self.counts["hit"] -= 1
            self.counts["corrupt"] += 1

    def size(self, key: Key) -> int:
        """The entry's file size in bytes; 0 where there is none."""
        try:
            return os.stat(self._file(key)).st_size
        except OSError:
            return 0

    def path(self, key: Key) -> Path:
        return Path(self._file(key))

    def _file(self, key: Key) -> str:
        """path(key) as text (four pathlib joins per read cost 4 us)."""
        d = key.digest
        return f"{self._base}{os.sep}{d[:2]}{os.sep}{d}{SUFFIX}"

    @cached_property
    def _base(self) -> str:
        return str(self.root / LAYOUT)

    def get(self, key: Key) -> dict | None:
        """The stored outputs of `key`, or None (a miss, or a bad entry: reported and counted)."""
        p = self._file(key)
        try:
            out = read_entry(p, key)
        except NoEntry:                  # one open() instead of a stat() first: the miss is the rare path
            self.count("miss")
            return None
        except BadEntry as exc:
            kind = "stale" if str(exc).startswith("stale") else "corrupt"
            self.count(kind)
            log.warning("golden store: %s: %s; recomputing it", p, exc)
            return None
        self.count("hit")
        return out

    def put(self, key: Key, outputs: dict) -> bool:
        """Store `outputs`; False (counted, logged) when they hold something that cannot be kept without pickle."""
        try:
            parts = encode_entry(key, outputs)
        except TypeError as exc:
            self.count("unstorable")
            log.warning("golden store: %s/%s not stored: %s", key.as_dict()["op"], key.as_dict()["kind"], exc)
            return False
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name does not end in SUFFIX, so entries() never lists a file being written
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.count("write")
        return True

    def summary(self) -> dict:
        return {"store": str(self.root), **{k: self.counts.get(k, 0) for k in
                                            ("hit", "miss", "write", "corrupt", "stale", "unstorable", "unkeyed")}}


# ---------------------------------------------------------------- narrow storage of float64 outputs


@dataclass(frozen=True)
class Narrowed:
    """A float64 array as `narrow` (its elements cast to a narrower float) plus the residual: the flat
    `index` and float64 `values` of every element the narrow dtype does not keep exactly."""
    narrow: np.ndarray
    index: np.ndarray
    values: np.ndarray


def _tiny(name: str) -> float:
    """The smallest normal value of a narrow float (ml_dtypes' finfo knows bfloat16 as well)."""
    return float(ml_dtypes.finfo(np_dtype(name)).tiny)


def index_dtype(n: int) -> np.dtype:
    """The narrowest unsigned integer that holds every flat index of `n` elements."""
    return np.dtype(np.uint32) if n <= 2**32 else np.dtype(np.uint64)


def _residual_index(flat: np.ndarray, magnitude: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(`flat` cast to narrow float `name`, flat indices of the elements that do not come back bitwise)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # overflow to inf is a residual, not an error
        narrow = flat.astype(np_dtype(name))
    keeps = narrow.astype(np.float64).view(np.uint64) == flat.view(np.uint64)
    # NaNs and values subnormal in the narrow dtype go to the residual even when they round-trip here: a NaN's
    # payload and a subnormal under flush-to-zero are where float conversions differ between machines (the store
    # is built on one and read on another); normal values, zeros and infinities widen exactly everywhere
    keeps &= (magnitude >= _tiny(name)) | (magnitude == 0)
    return narrow, np.flatnonzero(~keeps)


def narrowed(a: np.ndarray) -> Narrowed | None:
    """`a` (native float64) stored narrow, or None when plain float64 is smaller or the residual too large."""
    n = a.size
    if n < NARROW_MIN_ELEMENTS:
        return None
    flat = a.reshape(-1)
    magnitude = np.abs(flat)
    idx_bytes = index_dtype(n).itemsize + 8  # per residual element: its index and its float64 bits
    best, best_bytes = None, a.nbytes
    for name in NARROW:  # float32 first: what bfloat16 or float16 keeps, float32 keeps too
        narrow, index = _residual_index(flat, magnitude, name)
        if index.size > n * RESIDUAL_MAX:
            if name == "float32":
                break  # no narrower float can keep more elements
            continue
        stored = narrow.nbytes + index.size * idx_bytes
        if stored < best_bytes:
            best, best_bytes = Narrowed(narrow, index.astype(index_dtype(n)), flat[index]), stored
    return best


def widened(narrow: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The float64 array a Narrowed stands for (flat)."""
    out = widen(narrow)                  # astype(float64) bit for bit; float16 4x faster (harness.half)
    # the residual's bits are copied, not its values: no float operation touches a NaN's payload
    out.view(np.uint64)[index] = values.view(np.uint64)
    return out


# ---------------------------------------------------------------- the entry file


def dtype_tag(dt: np.dtype) -> str:
    """How an entry names a dtype: numpy's dtype string ("<f8", "|b1"), or "bfloat16" (ml_dtypes)."""
    return "bfloat16" if name_of(dt) == "bfloat16" else dt.str


_TAGS: dict[str, np.dtype] = {}        # the dtypes tags have named: each read names a few, many times


def tag_dtype(tag: str) -> np.dtype:
    """The dtype an entry names; ValueError for one an entry never holds (objects, raw void)."""
    if tag in _TAGS:
        return _TAGS[tag]
    dt = np_dtype("bfloat16") if tag == "bfloat16" else np.dtype(tag)
    if dt.hasobject or (dt.kind == "V" and tag != "bfloat16"):
        raise ValueError(f"dtype {tag!r} is not storable")
    if len(_TAGS) < 64:                  # a header naming endless odd dtypes does not grow it without end
        _TAGS[tag] = dt
    return dt


def _storable(name: str, value) -> np.ndarray:
    a = np.asarray(value, order="C")  # not ascontiguousarray: it makes a 0-d output 1-d
    if a.dtype.hasobject or a.dtype.kind == "V" and dtype_tag(a.dtype) != "bfloat16":
        raise TypeError(f"output {name!r} has dtype {a.dtype} (needs pickle)")
    return a


def _output_parts(a: np.ndarray) -> dict:
    """The arrays one output is stored as: {"data": a}, or a narrowed float64 as data, index and values."""
    n = narrowed(a) if a.dtype == np.float64 and a.dtype.isnative else None
    if n is None:
        return {"data": a}
    return {"data": n.narrow, "index": n.index, "values": n.values}


def _raw(a: np.ndarray) -> np.ndarray:
    # the bytes of a C-contiguous array as uint8, through a view: bfloat16 has no buffer-protocol format
    return a.reshape(-1).view(np.uint8)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def encode_entry(key: Key, outputs: dict) -> list:
    """The bytes of one entry file, as buffers in file order (b"".join of them is the file). Every byte
    after the prefix is under a checksum: the header's covers its padding, a segment's the padding before it."""
    body, meta, end, whole = [], {}, 0, xxhash.xxh3_64()
    for name, value in outputs.items():
        a = _storable(name, value)
        m = {"dtype": dtype_tag(a.dtype), "shape": list(a.shape)}
        for role, part in _output_parts(a).items():
            raw, pad = _raw(part), bytes(_aligned(end) - end)
            m[role] = {"from": end, "at": end + len(pad), "count": int(part.size), "dtype": dtype_tag(part.dtype),
                       "xxh3": _checksum(pad, raw)}
            whole.update(pad)
            whole.update(raw)
            body += [pad, raw]
            end += len(pad) + raw.size
        meta[name] = m
    header = json.dumps({"key": key.as_dict(), "body": end, "body_xxh3": whole.intdigest(), "outputs": meta},
                        sort_keys=True).encode()
    pad = bytes(_aligned(PREFIX.size + len(header)) - PREFIX.size - len(header))
    return [PREFIX.pack(MAGIC, len(header), _checksum(header, pad)), header, pad, *body]


def _checksum(*parts) -> int:
    """XXH3-64 of the buffers one after the other (the same as of their concatenation)."""
    h = xxhash.xxh3_64()
    for part in parts:
        h.update(part)
    return h.intdigest()


def _read_file(path: Path) -> np.ndarray:
    """The whole file as uint8. numpy memory, not a bytearray: the kernel copies into it ~3x faster
    (transparent huge pages; measured 23 vs 71 ms for 96 MiB), and outputs are views into it."""
    with open(path, "rb", buffering=0) as f:
        buf = np.empty(os.fstat(f.fileno()).st_size, np.uint8)
        got = 0
        while got < buf.size:  # one read() returns at most ~2 GiB on Linux
            n = f.readinto(buf[got:])
            if not n:
                raise BadEntry(f"corrupt entry: truncated while read ({got} of {buf.size} bytes)")
            got += n
    return buf


def _header(buf: np.ndarray) -> tuple[dict, int]:
    """(the header, where the body starts); BadEntry for a file that is no whole v4 entry."""
    manifest, start = _manifest(buf)
    if buf.size != start + manifest["body"]:
        raise BadEntry(f"corrupt entry: {buf.size} bytes, its header says {start + manifest['body']}")
    return manifest, start


def _manifest(buf: np.ndarray) -> tuple[dict, int]:
    """(the header, where the body starts) of `buf`, which holds at least the prefix and the header
    (the whole file, or read_key's first bytes of it); BadEntry where they are not a v4 header."""
    if buf.size < PREFIX.size:
        raise BadEntry(f"corrupt entry: truncated ({buf.size} bytes, shorter than the {PREFIX.size}-byte prefix)")
    magic, length, crc = PREFIX.unpack_from(buf)
    if magic != MAGIC:
        raise BadEntry("corrupt entry: not a v4 entry (bad magic)")
    start = _aligned(PREFIX.size + length)
    if buf.size < start:
        raise BadEntry(f"corrupt entry: truncated ({buf.size} bytes, its header alone {start})")
    if xxhash.xxh3_64_intdigest(buf[PREFIX.size:start]) != crc:
        raise BadEntry("corrupt entry: header fails its checksum")
    try:
        # orjson: 2.9 against json's 6.9 us on a smoke header (one per read, three reads a case)
        manifest = orjson.loads(buf[PREFIX.size:PREFIX.size + length].tobytes())
    except json.JSONDecodeError as exc:          # orjson's error is one (bad UTF-8 included)
        raise BadEntry(f"corrupt entry: bad header ({type(exc).__name__}: {exc})") from None
    return manifest, start


def _check_key(stored_key, key: Key | None, digest: str | None) -> None:
    if key is not None and stored_key != key.as_dict():
        diff = sorted(k for k in set(stored_key) | set(key.as_dict()) if stored_key.get(k) != key.as_dict().get(k))
        raise BadEntry(f"stale entry: its manifest names another key (differs in {', '.join(diff)})")
    if digest is not None and Key(tuple(stored_key.items())).digest != digest:
        raise BadEntry("stale entry: its manifest's key does not hash to its file name")


def _span(seg: dict) -> tuple[int, int, int]:
    """(from, at, end) of a segment in the body: its checksum covers from..end, its array at..end."""
    return seg["from"], seg["at"], seg["at"] + seg["count"] * tag_dtype(seg["dtype"]).itemsize


def _check_tiling(manifest: dict) -> None:
    """The segments' checksummed spans cover the body exactly, so no byte of it goes unchecked."""
    spans = sorted(_span(seg) for m in manifest["outputs"].values() for role, seg in m.items() if role in ROLES)
    end = 0
    for lo, at, hi in spans:
        if lo != end or not lo <= at <= hi:
            raise BadEntry(f"corrupt entry: its segments do not tile its body (a span from {lo}, expected {end})")
        end = hi
    if end != manifest["body"]:
        raise BadEntry(f"corrupt entry: its segments end at {end}, its body at {manifest['body']}")


def _segment(buf: np.ndarray, start: int, seg: dict, name: str, role: str, verified: bool = False) -> np.ndarray:
    """One stored array (flat, a view into `buf`), its checksum verified (`verified`: the body's was).
    (Spelled out, not through _span: an inputs entry has a dozen segments, read once per case.)"""
    dt = tag_dtype(seg["dtype"])
    at = start + seg["at"]
    hi = at + seg["count"] * dt.itemsize
    if hi > buf.size:
        raise BadEntry(f"corrupt entry: output {name!r} {role} ends past the file")
    if not verified and xxhash.xxh3_64_intdigest(buf[start + seg["from"]:hi]) != seg["xxh3"]:
        raise BadEntry(f"corrupt entry: output {name!r} {role} fails its checksum")
    return buf[at:hi].view(dt)


def _output(buf: np.ndarray, start: int, m: dict, name: str, verified: bool = False) -> np.ndarray:
    data = _segment(buf, start, m["data"], name, "data", verified)
    if "index" in m:
        if m["dtype"] != dtype_tag(np.dtype(np.float64)):
            raise BadEntry(f"corrupt entry: output {name!r} has a residual but dtype {m['dtype']}")
        data = widened(data, _segment(buf, start, m["index"], name, "index", verified),
                       _segment(buf, start, m["values"], name, "values", verified))
    elif m["data"]["dtype"] != m["dtype"]:
        raise BadEntry(f"corrupt entry: output {name!r} is {m['dtype']} but stored as {m['data']['dtype']}")
    return data.reshape(m["shape"])


def read_entry(path: Path, key: Key | None = None, digest: str | None = None) -> dict:
    """Outputs of one entry file, every checksum verified; BadEntry says what is wrong. With `key`,
    the manifest must name exactly that key (else the entry is stale: renamed, or another key's); with
    `digest` (the file name's), the manifest's key must hash to it."""
    return read_entry_and_key(path, key, digest)[1]


def read_entry_and_key(path: Path, key: Key | None = None, digest: str | None = None) -> tuple[dict, dict]:
    """(the key its header names, its outputs), checked as read_entry checks them: one read of the file."""
    try:
        buf = _read_file(path)
    except FileNotFoundError as exc:
        raise NoEntry(f"corrupt entry: unreadable (FileNotFoundError: {exc})") from None
    except OSError as exc:
        raise BadEntry(f"corrupt entry: unreadable ({type(exc).__name__}: {exc})") from None
    try:
        manifest, start = _header(buf)
        _check_key(manifest["key"], key, digest)
        # the whole body under one checksum: one call instead of a call and a span check per segment;
        # where it fails, the segments are checked one by one to name the one that is bad
        whole = "body_xxh3" in manifest and xxhash.xxh3_64_intdigest(buf[start:]) == manifest["body_xxh3"]
        if not whole:
            _check_tiling(manifest)
        outputs = {name: _output(buf, start, m, name, whole) for name, m in manifest["outputs"].items()}
        if not whole and "body_xxh3" in manifest:
            raise BadEntry("corrupt entry: its body fails its checksum")   # a guard: the segments tile it
        return dict(manifest["key"]), outputs
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        # only a header written by other code gets here: ours are checksummed and well-formed
        raise BadEntry(f"corrupt entry: bad manifest ({type(exc).__name__}: {exc})") from None


def read_key(path: Path) -> dict:
    """The key an entry's header names, reading the prefix and header alone (the header's checksum
    verified, not the body's): for listing a store without reading its arrays. BadEntry for a file
    that is no v4 entry's header."""
    try:
        with open(path, "rb") as f:
            head = f.read(PREFIX.size)
            if len(head) == PREFIX.size:
                head += f.read(_aligned(PREFIX.size + PREFIX.unpack(head)[1]) - PREFIX.size)
        return dict(_manifest(np.frombuffer(head, np.uint8))[0]["key"])
    except OSError as exc:
        raise BadEntry(f"corrupt entry: unreadable ({type(exc).__name__}: {exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEntry(f"corrupt entry: bad manifest ({type(exc).__name__}: {exc})") from None


def entry_kind(path: Path) -> str:
    """The kind ("golden", "baseline", "inputs", "judgement") its header names; BadEntry for a file
    that is no entry."""
    return str(read_key(path).get("kind"))


def entries(root: str | os.PathLike):
    """Every entry file of a store."""
    base = Path(root) / LAYOUT
    return sorted(base.glob(f"*/*{SUFFIX}")) if base.is_dir() else []


_env_stores: dict[str, GoldenStore] = {}


def activate(path: str) -> GoldenStore:
    """Name `path` as this process's store (and its children's, through the environment), with fresh counts."""
    os.environ[ENV] = path
    with _lock:
        _env_stores[path] = GoldenStore(path)
        return _env_stores[path]


def from_env() -> GoldenStore | None:
    """The process's store named by OPDIFF_GOLDEN_STORE (one instance per path, so counts add up)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    with _lock:
        if path not in _env_stores:
            _env_stores[path] = GoldenStore(path)
        return _env_stores[path]


def lookup(store: GoldenStore, key_fn, spec, case, seed) -> tuple[Key | None, dict | None]:
    """(key, the stored outputs or None): the read half of through(). The key is None where it cannot
    be formed (the op's modules are not project files: logged, counted as unkeyed)."""
    try:
        key = key_fn(spec, case, seed)
    except (OSError, ValueError, SyntaxError, ImportError) as exc:
        store.count("unkeyed")
        log.warning("golden store: no key for %s/%s (%s); computed without the store", spec.name, case.id, exc)
        return None, None
    return key, store.get(key)


def through(store: GoldenStore | None, key_fn, spec, case, seed, compute, looked_up=None) -> tuple[dict, str]:
    """(outputs, "store" | "computed"): read `key_fn(spec, case, seed)` from `store`, else compute and
    store. Without a store (or a seed) this is compute() alone; a key that cannot be formed is
    computed, never a failure of the case. `looked_up`: lookup()'s answer, where it was read ahead."""
    if store is None or seed is None:
        return compute(), "computed"
    key, hit = looked_up if looked_up is not None else lookup(store, key_fn, spec, case, seed)
    if hit is not None:
        return hit, "store"
    out = compute()
    if key is not None:
        store.put(key, out)
    return out, "computed"

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

One entry is one file, DIR/v1/<key[:2]>/<key>.npz, written to a temporary name and renamed (a
killed writer leaves no half entry under the real name). Inside: one member per output, plus
`__manifest__` (JSON as uint8): the key fields, and per output its dtype name, shape and the
sha256 of its bytes. Reading is np.load(allow_pickle=False); every output's checksum and the
manifest's key fields are checked. An entry that fails (truncated, bit flips, a manifest for
another key: "stale") is reported (logged with the file and the problem, counted) and
recomputed, never used.

    GoldenStore(DIR).get(key) -> dict | None      (None: miss, or a bad entry, counted)
    GoldenStore(DIR).put(key, outputs)
    golden_key(spec, case, seed) / baseline_key(spec, case, seed) -> Key
    from_env()                                     the store named by OPDIFF_GOLDEN_STORE, or None
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: environment variable naming the store; `run --golden-store` sets it so isolated workers (and any
#: process the run starts) read and fill the same store.
ENV = "OPDIFF_GOLDEN_STORE"
LAYOUT = "v1"
MANIFEST = "__manifest__"
#: project packages whose modules count towards a code hash (third-party code counts by version)
PROJECT_PACKAGES = ("harness", "backends", "cases")


@dataclass(frozen=True)
class Key:
    fields: tuple  # sorted (name, value) pairs, JSON-able values

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dict(self.fields), sort_keys=True).encode()).hexdigest()

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


def _imports(path: Path, name: str) -> set[str]:
    """Project modules imported anywhere in `path` (function bodies too: a lazy import still runs)."""
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


def _versions(baseline: bool) -> tuple:
    import ml_dtypes

    v = [("numpy", np.__version__), ("ml_dtypes", ml_dtypes.__version__)]
    if baseline:
        import torch

        v += [("torch", torch.__version__), ("torch_threads", torch.get_num_threads())]
    return tuple(v)


def _spec_module(spec) -> str:
    # the input builder lives in cases/<op>.py (replayed records read their tensors, keyed by digest)
    return f"cases.{spec.name}"


def golden_key(spec, case, seed: int) -> Key:
    code = code_hash(f"backends.numpy.{spec.name}", "backends.numpy", _spec_module(spec))
    return _key("golden", spec, case, seed, code, _versions(False))


def baseline_key(spec, case, seed: int) -> Key:
    code = code_hash(f"backends.torch.{spec.name}", "backends.torch", _spec_module(spec))
    return _key("baseline", spec, case, seed, code, _versions(True))


def _key(kind, spec, case, seed, code, versions) -> Key:
    fields = {"layout": LAYOUT, "kind": kind, "op": spec.name, "params": case.params_json(), "seed": int(seed),
              "code": code, **dict(versions)}
    return Key(tuple(sorted(fields.items())))


# ---------------------------------------------------------------- the store


class BadEntry(Exception):
    """An entry that cannot be trusted; the message says what is wrong with it."""


class GoldenStore:
    """One store directory. Thread- and process-safe for concurrent writers: entries are immutable
    files renamed into place, and two writers of one key write the same bytes."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.counts: Counter = Counter()  # hit, miss, write, corrupt, stale, unstorable, unkeyed

    def path(self, key: Key) -> Path:
        d = key.digest
        return self.root / LAYOUT / d[:2] / f"{d}.npz"

    def get(self, key: Key) -> dict | None:
        """The stored outputs of `key`, or None (a miss, or a bad entry: reported and counted)."""
        p = self.path(key)
        if not p.is_file():
            self.counts["miss"] += 1
            return None
        try:
            out = read_entry(p, key)
        except BadEntry as exc:
            kind = "stale" if str(exc).startswith("stale") else "corrupt"
            self.counts[kind] += 1
            log.warning("golden store: %s: %s; recomputing it", p, exc)
            return None
        self.counts["hit"] += 1
        return out

    def put(self, key: Key, outputs: dict) -> bool:
        """Store `outputs`; False (counted, logged) when they hold something npy cannot keep without pickle."""
        try:
            blob = encode_entry(key, outputs)
        except TypeError as exc:
            self.counts["unstorable"] += 1
            log.warning("golden store: %s/%s not stored: %s", key.as_dict()["op"], key.as_dict()["kind"], exc)
            return False
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.counts["write"] += 1
        return True

    def summary(self) -> dict:
        return {"store": str(self.root), **{k: self.counts.get(k, 0) for k in
                                            ("hit", "miss", "write", "corrupt", "stale", "unstorable", "unkeyed")}}


def encode_entry(key: Key, outputs: dict) -> bytes:
    from .dtypes import name_of

    arrays, meta = {}, {}
    for name, value in outputs.items():
        a = np.ascontiguousarray(np.asarray(value))
        if a.dtype.hasobject or a.dtype.kind == "V" and name_of(a) != "bfloat16":
            raise TypeError(f"output {name!r} has dtype {a.dtype} (needs pickle)")
        if name == MANIFEST:
            raise TypeError(f"output name {MANIFEST!r} is reserved")
        dtype = name_of(a)
        raw = a.view(np.uint16) if dtype == "bfloat16" else a  # npy has no bfloat16; the manifest keeps the name
        arrays[name] = raw
        meta[name] = {"dtype": dtype, "shape": list(a.shape), "sha256": _sha256(raw)}
    manifest = {"key": key.as_dict(), "outputs": meta}
    arrays[MANIFEST] = np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _sha256(a: np.ndarray) -> str:
    # hashed through the buffer protocol: tobytes() would copy every output once more
    return hashlib.sha256(np.ascontiguousarray(a)).hexdigest()


def read_entry(path: Path, key: Key | None = None, digest: str | None = None) -> dict:
    """Outputs of one entry file, every checksum verified; BadEntry says what is wrong. With `key`,
    the manifest must name exactly that key (else the entry is stale: renamed, or another key's); with
    `digest` (the file name's), the manifest's key must hash to it."""
    from .dtypes import np_dtype

    try:
        with np.load(path, allow_pickle=False) as z:
            members = {n: z[n] for n in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise BadEntry(f"corrupt entry: unreadable ({type(exc).__name__}: {exc})") from None
    if MANIFEST not in members:
        raise BadEntry("corrupt entry: no manifest")
    try:
        manifest = json.loads(members.pop(MANIFEST).tobytes().decode("utf-8"))
        outputs_meta = manifest["outputs"]
        stored_key = manifest["key"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadEntry(f"corrupt entry: bad manifest ({type(exc).__name__}: {exc})") from None
    if key is not None and stored_key != key.as_dict():
        diff = sorted(k for k in set(stored_key) | set(key.as_dict()) if stored_key.get(k) != key.as_dict().get(k))
        raise BadEntry(f"stale entry: its manifest names another key (differs in {', '.join(diff)})")
    if digest is not None and isinstance(stored_key, dict) and \
            Key(tuple(sorted(stored_key.items()))).digest != digest:
        raise BadEntry("stale entry: its manifest's key does not hash to its file name")
    if set(members) != set(outputs_meta):
        raise BadEntry(f"corrupt entry: outputs {sorted(members)} but the manifest lists {sorted(outputs_meta)}")
    out = {}
    for name, raw in members.items():
        m = outputs_meta[name]
        if _sha256(raw) != m.get("sha256"):
            raise BadEntry(f"corrupt entry: output {name!r} fails its sha256 checksum")
        if list(raw.shape) != m.get("shape"):
            raise BadEntry(f"corrupt entry: output {name!r} has shape {list(raw.shape)}, manifest {m.get('shape')}")
        out[name] = raw.view(np_dtype("bfloat16")) if m.get("dtype") == "bfloat16" else raw
    return out


def entries(root: str | os.PathLike):
    """Every entry file of a store."""
    base = Path(root) / LAYOUT
    return sorted(base.glob("*/*.npz")) if base.is_dir() else []


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


def through(store: GoldenStore | None, key_fn, spec, case, seed, compute) -> tuple[dict, str]:
    """(outputs, "store" | "computed"): read `key_fn(spec, case, seed)` from `store`, else compute and
    store. Without a store (or a seed) this is compute() alone; a key that cannot be formed (the op's
    modules are not project files) is logged and computed, never a failure of the case."""
    if store is None or seed is None:
        return compute(), "computed"
    try:
        key = key_fn(spec, case, seed)
    except (OSError, ValueError, SyntaxError, ImportError) as exc:
        store.counts["unkeyed"] += 1
        log.warning("golden store: no key for %s/%s (%s); computed without the store", spec.name, case.id, exc)
        return compute(), "computed"
    hit = store.get(key)
    if hit is not None:
        return hit, "store"
    out = compute()
    store.put(key, out)
    return out, "computed"

"""Which entries of a golden store this checkout still reads, and removing the others.

A change to a golden, a torch reference, an input builder or a module they import gives their cases
new keys (harness.golden_store), so the old entries are never read again: a store that nightly CI
fills on every commit grows by a tier's worth of entries each time. `golden prune` keeps what the
cases of the given tiers and seeds key here (this checkout, these numpy / ml_dtypes / torch versions
and torch thread count), and the judgements (harness.judgements) this comparison code made against
those goldens, and removes the rest, along with temporaries a killed builder left and the
directories of older layouts, which this version never reads.

    live_digests(specs, tiers, seeds) -> (digests, unkeyed)  the entry names those cases read
    survey(root, digests, now) -> Survey                      what a prune keeps and removes
    remove(survey) -> (files, bytes)                           remove it

Nothing is removed on a guess: where a case's keys cannot be formed (its module does not hash, torch
does not import), the caller refuses to remove anything (its entries would look unreferenced).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import golden_store, input_store, judgements

log = logging.getLogger(__name__)

# A temporary younger than this may belong to a builder still writing it (entries are written to
# `.tmp-*.part` and renamed: golden_store.GoldenStore.put); an older one was left by a killed builder.
# The largest nightly entry (a 640 MiB cache) is written in seconds, so an hour leaves a wide margin.
STALE_TEMP_S = 3600.0

_LAYOUT_DIR = re.compile(r"v\d+")


def live_digests(specs, tiers, seeds) -> tuple[set[str], list[dict]]:
    """(the file names, digests, of every entry the cases of `tiers` read with `seeds`, the cases whose
    keys could not be formed). A case's inputs are keyed for every case (a run stores a negative case's
    inputs too); a golden and a baseline for every positive one (a digest no entry has costs nothing)."""
    from . import registry
    from .runner import BASELINE_BACKEND

    digests, unkeyed, seen = set(), [], set()
    # a baseline's key names torch's version and thread count: as a run keys it, after the torch backend
    # has set its threads (OPDIFF_TORCH_THREADS, default 1; harness.runner.References.baseline)
    avail = registry.backend(BASELINE_BACKEND).available()
    if not avail:
        unkeyed.append({"op": "*", "case_id": "*", "seed": "*",
                        "error": f"baselines cannot be keyed: {BASELINE_BACKEND} is unavailable ({avail.reason})"})
    for spec in specs:
        for tier in tiers:
            for case in spec.cases(tier):
                if (spec.name, case.id) in seen:     # a case in two tiers has the same keys
                    continue
                seen.add((spec.name, case.id))
                for seed in seeds:
                    try:
                        if "replay_record" not in case.params:   # a replayed call reads its own tensor files
                            digests.add(input_store.inputs_key(spec, case, seed).digest)
                        if not case.negative:
                            digests.add(golden_store.golden_key(spec, case, seed).digest)
                            if avail:
                                digests.add(golden_store.baseline_key(spec, case, seed).digest)
                    except (OSError, ValueError, SyntaxError, ImportError, RuntimeError) as exc:  # RuntimeError:
                        # a torch that fails on import (torch_npu autoloaded without CANN)
                        unkeyed.append({"op": spec.name, "case_id": case.id, "seed": seed,
                                        "error": f"{type(exc).__name__}: {exc}"[:300]})
    return digests, unkeyed


@dataclass
class Survey:
    """What a prune of one store keeps and removes (paths, and their bytes)."""

    root: Path
    kept: int = 0
    kept_bytes: int = 0
    unreferenced: list[Path] = field(default_factory=list)
    unreferenced_bytes: int = 0
    temporaries: list[Path] = field(default_factory=list)   # stray `.tmp-*.part` files older than STALE_TEMP_S
    temporary_bytes: int = 0
    writing: int = 0                                        # younger temporaries: left alone
    old_layouts: list[Path] = field(default_factory=list)   # v1..v3 directories
    old_layout_bytes: int = 0
    other: list[Path] = field(default_factory=list)         # anything else: never touched

    def as_dict(self) -> dict:
        return {"store": str(self.root), "kept": self.kept, "kept_bytes": self.kept_bytes,
                "unreferenced": len(self.unreferenced), "unreferenced_bytes": self.unreferenced_bytes,
                "temporaries": len(self.temporaries), "temporary_bytes": self.temporary_bytes,
                "writing": self.writing, "old_layouts": [p.name for p in self.old_layouts],
                "old_layout_bytes": self.old_layout_bytes, "other": [str(p) for p in self.other]}


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:                      # removed meanwhile (another prune, a builder's rename)
        return 0


def _tree_bytes(d: Path) -> int:
    return sum(_size(p) for p in d.rglob("*") if p.is_file())


def survey(root: str | os.PathLike, digests: set[str], now: float) -> Survey:
    """Classify every file of the store at `root` (`now`: time.time(), for the temporaries' age)."""
    s = Survey(Path(root))
    for top in sorted(s.root.iterdir()):
        if top.is_dir() and top.name == golden_store.LAYOUT:
            for sub in sorted(top.iterdir()):
                files = sorted(sub.iterdir()) if sub.is_dir() else [sub]
                for p in files:
                    _classify(s, p, digests, now, in_bucket=sub.is_dir())
        elif top.is_dir() and _LAYOUT_DIR.fullmatch(top.name) and _looks_like_layout(top):
            s.old_layouts.append(top)
            s.old_layout_bytes += _tree_bytes(top)
        else:
            s.other.append(top)
    return s


_BUCKET = re.compile(r"[0-9a-f]{2}")


def _looks_like_layout(d: Path) -> bool:
    """A directory that holds a store's layout and nothing else: 2-hex buckets of entries (any
    suffix an older layout used) and temporaries. Anything else in it (a `v1` of the user's own next
    to the store) leaves it alone: it is removed whole, so it must be ours whole."""
    for bucket in d.iterdir():
        if not (bucket.is_dir() and _BUCKET.fullmatch(bucket.name)):
            return False
        for p in bucket.iterdir():
            if not p.is_file() or not (p.suffix in (".entry", ".npz", ".json") or p.name.startswith(".tmp-")):
                return False
    return True


def _classify(s: Survey, p: Path, digests: set[str], now: float, in_bucket: bool) -> None:
    size = _size(p)
    if in_bucket and p.is_file() and p.name.endswith(golden_store.SUFFIX):
        if p.name[:-len(golden_store.SUFFIX)] in digests or _live_judgement(p, digests):
            s.kept += 1
            s.kept_bytes += size
        else:
            s.unreferenced.append(p)
            s.unreferenced_bytes += size
    elif in_bucket and p.is_file() and p.name.startswith(".tmp-") and p.name.endswith(".part"):
        try:
            age = now - p.stat().st_mtime
        except OSError:
            return                       # renamed into place meanwhile: an entry now
        if age >= STALE_TEMP_S:
            s.temporaries.append(p)
            s.temporary_bytes += size
        else:
            s.writing += 1
    else:
        s.other.append(p)


def _live_judgement(p: Path, digests: set[str]) -> bool:
    """A judgement entry (harness.judgements) of a golden the cases read, made by this comparison code
    on this CPU: its key names the outputs it judged, which no case can name in advance, so it is
    read from its header."""
    try:
        key = golden_store.read_key(p)
    except golden_store.BadEntry:
        return False
    return (key.get("kind") == "judgement" and key.get("golden") in digests
            and key.get("code") == judgements.code() and key.get("cpu") == judgements.cpu())


def remove(s: Survey) -> tuple[int, int]:
    """Remove what `s` lists for removal: (files removed, their bytes). A file already gone is skipped."""
    files = nbytes = 0
    for p in s.unreferenced + s.temporaries:
        size = _size(p)
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        files += 1
        nbytes += size
    for d in s.old_layouts:
        n, size = sum(1 for p in d.rglob("*") if p.is_file()), _tree_bytes(d)
        shutil.rmtree(d)
        files += n
        nbytes += size
    for sub in {p.parent for p in s.unreferenced + s.temporaries}:
        try:
            sub.rmdir()                  # an emptied bucket; one that still holds entries stays
        except OSError:
            pass
    log.info("golden prune: removed %d files (%d bytes) from %s", files, nbytes, s.root)
    return files, nbytes

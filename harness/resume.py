"""`run --resume DIR`: finish an interrupted run without redoing or duplicating cases.

A case counts as done once its rows are flushed to results.jsonl *and* a line naming it is
flushed to done.jsonl afterwards. A runner killed anywhere (SIGKILL included) leaves at worst
rows of one unfinished case and a half-written last line; on resume those rows are dropped (the
files are rewritten atomically), and only the cases missing from done.jsonl are run again.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .errors import UsageError
from .results import read_jsonl

log = logging.getLogger(__name__)

DONE_FILE = "done.jsonl"
#: options of `run` that define the plan; stored in run.json so that --resume can rebuild it.
PLAN_KEYS = ("ops", "backends", "tier", "seed", "case", "no_timing", "shard", "isolate", "timeout", "known_issues")


class DoneLog:
    """Appends one flushed line per completed case."""

    def __init__(self, run_dir: Path):
        self._f = open(Path(run_dir) / DONE_FILE, "a", encoding="utf-8")

    def add(self, op: str, case_id: str) -> None:
        self._f.write(json.dumps({"op": op, "case_id": case_id}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_meta(run_dir: str | os.PathLike) -> dict:
    d = Path(run_dir)
    if not d.exists():
        raise UsageError(f"--resume {d}: no such directory")
    if not d.is_dir():
        raise UsageError(f"--resume {d}: not a directory")
    meta_path = d / "run.json"
    if not meta_path.is_file():
        raise UsageError(f"--resume {d}: not a run directory (no run.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{meta_path}: corrupt run.json ({exc})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path}: corrupt run.json (not an object)")
    plan = meta.get("plan_args")
    if not isinstance(plan, dict) or any(k not in plan for k in ("ops", "backends", "tier", "seed")):
        raise UsageError(f"{meta_path}: no 'plan_args' recorded (written by an older opdiff or not by `run`); "
                         f"cannot rebuild the plan to resume")
    return meta


def read_complete(path: Path) -> list[dict]:
    """Rows of a JSONL file written by opdiff (every line ends with a newline): anything after
    the last newline is a line cut by a kill, dropped with a warning; any other bad line is an error."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    cut = raw.rfind(b"\n") + 1
    if cut < len(raw):
        log.warning("%s: dropping a truncated last line (%d bytes) left by the interrupted run", path, len(raw) - cut)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(raw[:cut])
        os.replace(tmp, path)
    return read_jsonl(path)


def completed(run_dir: Path) -> set[tuple[str, str]]:
    done = set()
    for r in read_complete(Path(run_dir) / DONE_FILE):
        if not isinstance(r, dict) or "op" not in r or "case_id" not in r:
            raise UsageError(f"{Path(run_dir) / DONE_FILE}: malformed line {r!r}")
        done.add((r["op"], r["case_id"]))
    return done


def prune(run_dir: str | os.PathLike) -> tuple[set, int]:
    """Keep only rows of completed cases in results/samples JSONL (atomic rewrite), and a clean
    done.jsonl. Returns (completed (op, case_id) pairs, number of rows dropped)."""
    d = Path(run_dir)
    done = completed(d)
    dropped = 0
    for stem in ("results", "samples"):
        path = d / f"{stem}.jsonl"
        rows = read_complete(path)
        keep = [r for r in rows if (r.get("op"), r.get("case_id")) in done]
        if stem == "results":
            dropped = len(rows) - len(keep)
        _rewrite(path, keep)
    _rewrite(d / DONE_FILE, [{"op": o, "case_id": c} for o, c in sorted(done)])
    for stale in ("results.parquet", "samples.parquet"):
        (d / stale).unlink(missing_ok=True)  # rebuilt from the JSONL when the run finishes
    return done, dropped


def _rewrite(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

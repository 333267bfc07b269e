"""`run --resume DIR`: finish an interrupted run without redoing or duplicating cases.

A case counts as done once its rows are flushed to results.jsonl *and* a line naming it (with its
row count) is flushed to done.jsonl afterwards. A runner killed anywhere (SIGKILL included) leaves
at worst rows of one unfinished case and a half-written last line; on resume those rows are
dropped (the files are rewritten atomically), and only the cases missing from done.jsonl are run
again. done.jsonl is not trusted alone: a case whose rows are not all in results.jsonl (a file cut
or edited since) is run again too, and counted in the warning. The caller holds the directory's
lock (harness.rundir) while this module rewrites its files.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from collections import Counter

from . import rundir
from .errors import UsageError
from .results import numbered_jsonl, read_jsonl
from .results import read_meta as read_run_json
from .rowcheck import check_rows

log = logging.getLogger(__name__)

DONE_FILE = "done.jsonl"
#: options of `run` that define the plan, with `run`'s defaults: stored in run.json (`plan_args`) so that
#: --resume can rebuild the plan, and refused beside --resume when given (timeout excepted: it may change)
PLAN_DEFAULTS = {"ops": "all", "backends": "numpy,torch", "tier": "smoke", "seed": 0, "case": [], "no_timing": False,
                 "shard": None, "isolate": None, "timeout": None, "known_issues": None, "replay": None,
                 "determinism": None}
PLAN_KEYS = tuple(PLAN_DEFAULTS)


class DoneLog:
    """Appends one flushed line per completed case."""

    def __init__(self, run_dir: Path):
        self._f = rundir.open_append(Path(run_dir) / DONE_FILE)

    def add(self, op: str, case_id: str, rows: int | None = None, **extra) -> None:
        """`extra`: what else names the unit of work (a pytest session's line also names its backend)."""
        line = {"op": op, "case_id": case_id} if rows is None else {"op": op, "case_id": case_id, "rows": rows}
        self._f.write(json.dumps(dict(line, **extra)) + "\n")
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
    meta = read_run_json(meta_path)
    if meta.get("source") == "pytest":  # its plan is a -k selection of tests, which plan_args cannot rebuild
        raise UsageError(f"--resume {d}: written by a pytest session (run.json source 'pytest'); run the pytest "
                         f"selection again into a new --opdiff-out directory")
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
        rundir.atomic_write(path, raw[:cut])
    return read_jsonl(path)


def completed(run_dir: Path) -> dict[tuple[str, str], int | None]:
    """(op, case_id) -> number of result rows the case wrote (None: a done.jsonl of an older opdiff)."""
    done = {}
    path = Path(run_dir) / DONE_FILE
    read_complete(path)  # drops a cut last line first
    for i, r in numbered_jsonl(path):
        if not isinstance(r.get("op"), str) or not isinstance(r.get("case_id"), str) \
                or type(r.get("rows", 0)) is not int:
            raise UsageError(f"{path}:{i}: malformed line {r!r} (expected op, case_id and an integer rows)")
        done[(r["op"], r["case_id"])] = r.get("rows")
    return done


def verified(done: dict, rows: list[dict]) -> set[tuple[str, str]]:
    """The done cases whose rows are all in `rows` (exactly the count done.jsonl recorded; at
    least one row where it recorded none)."""
    have = Counter((r.get("op"), r.get("case_id")) for r in rows)
    return {k for k, n in done.items() if have[k] and (n is None or have[k] == n)}


def prune(run_dir: str | os.PathLike) -> tuple[set, int]:
    """Keep only rows of completed cases in results/samples JSONL (atomic rewrite), and a clean
    done.jsonl. Returns (completed (op, case_id) pairs, number of rows dropped)."""
    d = Path(run_dir)
    recorded = completed(d)
    results = read_complete(d / "results.jsonl")
    check_rows(results, "results", lambda i: f"{d / 'results.jsonl'} row {i}")
    done = verified(recorded, results)
    lost = sorted(set(recorded) - done)
    if lost:  # done.jsonl says finished, results.jsonl disagrees: the rows were lost, run them again
        log.warning("%s: %d case(s) listed in %s lack rows in results.jsonl (e.g. %s); running them again",
                    d, len(lost), DONE_FILE, "/".join(lost[0]))
    dropped = 0
    for stem in ("results", "samples"):
        path = d / f"{stem}.jsonl"
        rows = results if stem == "results" else read_complete(path)
        keep = [r for r in rows if (r.get("op"), r.get("case_id")) in done]
        if stem == "results":
            dropped = len(rows) - len(keep)
        _rewrite(path, keep)
    _rewrite(d / DONE_FILE, [{"op": o, "case_id": c, **({} if recorded[(o, c)] is None else
                                                        {"rows": recorded[(o, c)]})} for o, c in sorted(done)])
    for stale in ("results.parquet", "samples.parquet"):
        (d / stale).unlink(missing_ok=True)  # rebuilt from the JSONL when the run finishes
    return done, dropped


def _rewrite(path: Path, rows: list[dict]) -> None:
    rundir.atomic_write(path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))

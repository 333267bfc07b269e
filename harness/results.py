"""Run directories: run.json (self-description), results.jsonl appended per case, and
results.parquet / samples.parquet consolidated atomically at the end.

A run interrupted at any point keeps every row already appended (each case is flushed). The
writer holds the directory's lock (harness.rundir) from creation to finish; every whole-file write
goes through a temporary file and a rename. Readers check what they read: encoding, JSON, the row
schema (harness.rowcheck) and that results.parquet and results.jsonl hold the same number of rows.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

import orjson

from . import rundir
from .errors import UsageError
from .rowcheck import check_rows

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "run_id", "op", "case_id", "params", "negative", "violates", "backend", "output", "dtype", "verdict", "ok",
    "reason", "max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "mismatch_count", "mismatch_frac", "cosine",
    "error_balance", "baseline_ratio", "baseline_max_err", "off_by_one_frac", "numel", "mare_ratio", "mere_ratio",
    "rmse_ratio", "grade", "small_count", "small_err_count", "small_err_frac", "beyond_1ulp_frac", "bias_ulp",
    "latency_median_us",
    "latency_iqr_us", "latency_p20_us", "latency_p80_us", "latency_min_us", "n_samples", "timing_mode",
    "bytes", "flops", "gbps", "tflops", "tier", "seed", "repro",
    "golden_source", "baseline_source",  # "store" / "computed" (harness.golden_store), None when unused
)
SAMPLE_COLUMNS = ("run_id", "op", "case_id", "backend", "sample_index", "latency_us")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


class RunWriter:
    """Writes one run directory. Rows are appended to JSONL and flushed per call.

    `lock`: the directory's held rundir.RunLock (taken by the command before it prepared the run);
    without one, the writer claims the directory itself (it must be new or empty) and releases the
    lock at finish()."""

    def __init__(self, out_dir: str | os.PathLike, meta: dict, lock: rundir.RunLock | None = None):
        self.dir = Path(out_dir)
        self._own_lock = lock is None
        self.lock = rundir.claim_new(self.dir) if lock is None else lock
        if not self.lock.held:
            raise UsageError(f"{self.dir}: writing a run directory needs its lock held")
        self.meta = dict(meta)
        self.run_id = self.meta.setdefault("run_id", new_run_id())
        self.meta.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.meta["status"] = "running"
        self._write_meta()
        self._rows = rundir.open_append(self.dir / "results.jsonl")
        self._samples = rundir.open_append(self.dir / "samples.jsonl")

    def _write_meta(self):
        rundir.atomic_write(self.dir / "run.json", json.dumps(self.meta, indent=2, sort_keys=True, default=str))

    def append(self, rows: list[dict], samples: list[dict] = ()) -> None:
        for r in rows:
            r.setdefault("run_id", self.run_id)
        for s in samples:
            s.setdefault("run_id", self.run_id)
        # one write and one flush per file and case (a write per row cost as much as encoding it)
        if rows:
            self._rows.write("".join([encode_line(r, _ROW_JSON) for r in rows]))
            self._rows.flush()
        if samples:
            self._samples.write("".join([encode_line(s, _SAMPLE_JSON) for s in samples]))
            self._samples.flush()

    def finish(self, summary: dict, status: str = "finished") -> None:
        self._rows.close()
        self._samples.close()
        rows = consolidate(self.dir)["results"]
        self.meta.update(summary, status=status, rows=rows, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()
        if self._own_lock:
            self.lock.release()


def json_safe(obj):
    """JSON for what json cannot encode: numpy scalars as Python numbers, anything else as text."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:
        pass
    return str(obj)


_PLAIN = frozenset((str, int, bool, type(None)))   # what orjson writes as json does (floats: when finite)


def encode_line(obj: dict, fallback: json.JSONEncoder) -> str:
    """One JSONL line of a flat row or sample: orjson (2.3 instead of 13.5 us for a row of 45 fields,
    5 to 14 rows per smoke case) where every value is text, an integer, a bool, None or a finite float;
    else `fallback` (json): orjson writes NaN and inf as null, json as NaN / Infinity, which the readers
    (json.loads) keep as floats; numpy scalars, nested values and integers beyond 64 bits go there too.
    Both write the same values; only the text of a float may differ (1e-05 / 1e-5). The check is one
    pass over the values (2 us a row: scanning orjson's text for nulls afterwards cost 4 to 9 us)."""
    for v in obj.values():
        c = v.__class__
        if c is float:
            if v - v != 0.0:             # NaN or inf: inf - inf is NaN
                return fallback.encode(obj) + "\n"
        elif c not in _PLAIN:
            return fallback.encode(obj) + "\n"
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE).decode()
    except orjson.JSONEncodeError:       # an integer beyond 64 bits
        return fallback.encode(obj) + "\n"


# One encoder each, made once (json.dumps with options builds one per call). Rows are flat dicts of
# numbers and text: no cycle to check for.
_ROW_JSON = json.JSONEncoder(default=json_safe, allow_nan=True, check_circular=False)
_SAMPLE_JSON = json.JSONEncoder(default=json_safe, check_circular=False)


def read_jsonl(path: Path, problems: list | None = None) -> list[dict]:
    """Rows of a JSONL file; a corrupt line is an error naming file and line (a truncated last
    line, the trace of a killed writer, is dropped with a warning, and said in `problems` when given)."""
    return [row for _, row in numbered_jsonl(path, problems)]


def numbered_jsonl(path: Path, problems: list | None = None) -> list[tuple[int, dict]]:
    """(line number, row) of a JSONL file, as read_jsonl reads it."""
    rows = []
    if not path.exists():
        return rows
    lines = path.read_bytes().split(b"\n")
    for i, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}:{i}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1})") \
                from None
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as exc:
            if i == len(lines) and not line.endswith("}"):
                # half-written last line of an interrupted run: reported, not silently skipped
                problem = f"{path}:{i}: truncated last line dropped (a writer killed mid-line)"
                log.warning("%s (interrupted run? `python -m harness run --resume DIR` finishes it)", problem)
                if problems is not None:
                    problems.append(problem)
                continue
            raise UsageError(f"{path}:{i}: corrupt results line ({exc.msg})") from None
        if not isinstance(rows[-1][1], dict):
            raise UsageError(f"{path}:{i}: not a JSON object ({type(rows[-1][1]).__name__})")
    return rows


def consolidate(run_dir: Path) -> dict:
    """JSONL -> parquet, written to a temporary name and renamed (atomic). Returns the rows per stem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = {}
    for stem, cols in (("results", RESULT_COLUMNS), ("samples", SAMPLE_COLUMNS)):
        rows = read_jsonl(run_dir / f"{stem}.jsonl")
        table = _table(rows, cols, pa)
        with rundir.atomic_file(run_dir / f"{stem}.parquet") as f:
            pq.write_table(table, f)
        counts[stem] = len(rows)
    return counts


def _table(rows, cols, pa):
    extra = sorted({k for r in rows for k in r} - set(cols))
    names = list(cols) + extra
    data = {c: [r.get(c) for r in rows] for c in names}
    arrays = {}
    for c, vals in data.items():
        try:
            arrays[c] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[c] = pa.array([None if v is None else json.dumps(v, default=str) for v in vals])
    return pa.table(arrays)


def load_run(run_dir: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(run.json, rows) of a run directory, from parquet when present, else from the JSONL."""
    d = Path(run_dir)
    meta_path = d / "run.json"
    if not d.exists():
        raise UsageError(f"{d}: no such directory")
    if not d.is_dir():
        raise UsageError(f"{d}: not a directory")
    if not meta_path.is_file():
        raise UsageError(f"{d}: not a run directory (no run.json)")
    return read_meta(meta_path), read_rows(d, "results")


def read_meta(meta_path: Path) -> dict:
    """run.json as a dict; anything else is an error naming the file and what is wrong."""
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{meta_path}: corrupt run.json (not UTF-8 text: byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{meta_path}: corrupt run.json ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise UsageError(f"{meta_path}: unreadable ({exc.strerror})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path}: corrupt run.json (not a JSON object)")
    return meta


def read_rows(run_dir: Path, stem: str) -> list[dict]:
    """Rows of `stem` ("results" or "samples"): the consolidated parquet, else the JSONL log.
    Every row is checked (harness.rowcheck); when both files exist they must hold as many rows."""
    pq_path, jsonl = run_dir / f"{stem}.parquet", run_dir / f"{stem}.jsonl"
    if not pq_path.is_file():
        numbered = numbered_jsonl(jsonl)
        check_rows([r for _, r in numbered], stem, lambda i: f"{jsonl}:{numbered[i - 1][0]}")
        return [r for _, r in numbered]
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(pq_path).to_pylist()
    except Exception as exc:
        raise UsageError(f"{pq_path}: unreadable parquet ({exc})") from None
    check_rows(rows, stem, lambda i: f"{pq_path} row {i}")
    if jsonl.is_file():
        n = len(read_jsonl(jsonl))
        if n != len(rows):
            raise UsageError(f"{run_dir}: {pq_path.name} holds {len(rows)} rows but {jsonl.name} {n}; one of "
                             f"them is truncated or was changed after the run finished")
    return rows


def load(run_dir: str | os.PathLike, params: bool = False):
    """The run's result rows as a typed pandas DataFrame (harness.frames.load; run.json in .attrs["meta"])."""
    from .frames import load as load_frame

    return load_frame(run_dir, params)


def load_history(paths, params: bool = False):
    """Result rows of every run under `paths` as one DataFrame, oldest first (harness.frames.load_history)."""
    from .frames import load_history as load_frames

    return load_frames(paths, params)

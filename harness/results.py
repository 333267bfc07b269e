"""Run directories: run.json (self-description), results.jsonl appended per case, and
results.parquet / samples.parquet consolidated atomically at the end.

A run interrupted at any point keeps every row already appended (each case is flushed).
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from .errors import UsageError

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "run_id", "op", "case_id", "params", "negative", "violates", "backend", "output", "dtype", "verdict", "ok",
    "reason", "max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "mismatch_count", "mismatch_frac", "cosine",
    "error_balance", "baseline_ratio", "baseline_max_err", "off_by_one_frac", "numel", "latency_median_us",
    "latency_iqr_us", "latency_p20_us", "latency_p80_us", "latency_min_us", "n_samples", "timing_mode",
    "bytes", "flops", "gbps", "tflops", "tier", "seed", "repro",
)
SAMPLE_COLUMNS = ("run_id", "op", "case_id", "backend", "sample_index", "latency_us")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


class RunWriter:
    """Writes one run directory. Rows are appended to JSONL and flushed per call."""

    def __init__(self, out_dir: str | os.PathLike, meta: dict):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self.run_id = self.meta.setdefault("run_id", new_run_id())
        self.meta.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.meta["status"] = "running"
        self._write_meta()
        self._rows = open(self.dir / "results.jsonl", "a", encoding="utf-8")
        self._samples = open(self.dir / "samples.jsonl", "a", encoding="utf-8")

    def _write_meta(self):
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.dir / "run.json")

    def append(self, rows: list[dict], samples: list[dict] = ()) -> None:
        for r in rows:
            r.setdefault("run_id", self.run_id)
            self._rows.write(json.dumps(r, default=_json_safe, allow_nan=True) + "\n")
        for s in samples:
            s.setdefault("run_id", self.run_id)
            self._samples.write(json.dumps(s, default=_json_safe) + "\n")
        self._rows.flush()
        self._samples.flush()

    def finish(self, summary: dict) -> None:
        self._rows.close()
        self._samples.close()
        consolidate(self.dir)
        self.meta.update(summary, status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self._write_meta()


def _json_safe(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:
        pass
    return str(obj)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a corrupt line is an error naming file and line (a truncated last
    line, the trace of a killed writer, is dropped with no error)."""
    rows = []
    if not path.exists():
        return rows
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) and not line.endswith("}"):
                # half-written last line of an interrupted run: reported, not silently skipped
                log.warning("%s:%d: truncated last line dropped (interrupted run? `python -m harness run "
                            "--resume DIR` finishes it)", path, i)
                continue
            raise UsageError(f"{path}:{i}: corrupt results line ({exc.msg})") from None
    return rows


def consolidate(run_dir: Path) -> None:
    """JSONL -> parquet, written to a temporary name and renamed (atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for stem, cols in (("results", RESULT_COLUMNS), ("samples", SAMPLE_COLUMNS)):
        rows = read_jsonl(run_dir / f"{stem}.jsonl")
        table = _table(rows, cols, pa)
        tmp = run_dir / f".{stem}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, run_dir / f"{stem}.parquet")


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
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{meta_path}: corrupt run.json ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path}: corrupt run.json (not a JSON object)")
    return meta, read_rows(d, "results")


def read_rows(run_dir: Path, stem: str) -> list[dict]:
    """Rows of `stem` ("results" or "samples"): the consolidated parquet, else the JSONL log."""
    pq_path = run_dir / f"{stem}.parquet"
    if pq_path.is_file():
        import pyarrow.parquet as pq

        try:
            return pq.read_table(pq_path).to_pylist()
        except Exception as exc:
            raise UsageError(f"{pq_path}: unreadable parquet ({exc})") from None
    return read_jsonl(run_dir / f"{stem}.jsonl")

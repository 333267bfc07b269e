"""A history is any set of run directories. Queries go through DuckDB over their parquet files.

expand(paths)           run directories named by paths: a run directory itself, or every run
                        directory directly inside a folder (sorted by start time)
run_medians(dirs)       (op, case_id, backend) -> per-run medians in microseconds, one per process
                        (a `--repeat` run contributes one per replicate), and its timing modes
latency_series(dirs)    per run directory, oldest first: (op, case_id, backend) -> median of its run
                        medians, for nightly trends
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError


@dataclass
class RunInfo:
    path: Path
    meta: dict
    started: str = ""

    @property
    def label(self) -> str:
        commit = (self.meta.get("env") or {}).get("opdiff_commit") or ""
        return f"{self.started[:16]} {commit[:8]}".strip()


def _meta(d: Path) -> dict:
    try:
        return json.loads((d / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{d}/run.json: unreadable ({exc})") from None


def expand(paths) -> list[RunInfo]:
    runs = []
    for p in paths:
        p = Path(p)
        if (p / "run.json").is_file():
            cands = [p]
        elif p.is_dir():
            cands = sorted(c for c in p.iterdir() if (c / "run.json").is_file())
            if not cands:
                raise UsageError(f"{p}: neither a run directory nor a folder of run directories")
        else:
            raise UsageError(f"{p}: not a directory")
        for c in cands:
            m = _meta(c)
            runs.append(RunInfo(c, m, str(m.get("started", ""))))
    return sorted(runs, key=lambda r: r.started)


def _connect():
    import duckdb

    return duckdb.connect()


def _files(runs, stem) -> list[str]:
    return [str(r.path / f"{stem}.parquet") for r in runs if (r.path / f"{stem}.parquet").is_file()]


def _columns(con, files) -> set[str]:
    rel = con.sql("SELECT * FROM read_parquet($files, union_by_name=true) LIMIT 0", params={"files": files})
    return set(rel.columns)


@dataclass
class Medians:
    runs: dict = field(default_factory=lambda: defaultdict(list))   # key -> [median_us per process run]
    modes: dict = field(default_factory=lambda: defaultdict(set))   # key -> {timing_mode}
    n_samples: dict = field(default_factory=lambda: defaultdict(int))


def run_medians(runs: list[RunInfo]) -> Medians:
    """Per-process medians from the raw samples (the unit of evidence for harness.regress)."""
    out = Medians()
    con = _connect()
    sfiles = _files(runs, "samples")
    if sfiles and {"run_id", "latency_us"} <= _columns(con, sfiles):
        q = ("SELECT op, case_id, backend, run_id, median(latency_us), count(*) "
             "FROM read_parquet($files, union_by_name=true) WHERE latency_us IS NOT NULL "
             "GROUP BY op, case_id, backend, run_id ORDER BY run_id")
        for op, case_id, backend, _run, med, n in con.execute(q, {"files": sfiles}).fetchall():
            out.runs[(op, case_id, backend)].append(float(med))
            out.n_samples[(op, case_id, backend)] += int(n)
    rfiles = _files(runs, "results")
    if rfiles and "timing_mode" in _columns(con, rfiles):
        q = ("SELECT DISTINCT op, case_id, backend, timing_mode FROM read_parquet($files, union_by_name=true) "
             "WHERE timing_mode IS NOT NULL")
        for op, case_id, backend, mode in con.execute(q, {"files": rfiles}).fetchall():
            out.modes[(op, case_id, backend)].add(mode)
    return out


def result_rows(runs: list[RunInfo]) -> list[dict]:
    """All result rows of the runs (a `--repeat` run holds its merged rows once)."""
    files = _files(runs, "results")
    if not files:
        from .results import read_jsonl

        return [r for run in runs for r in read_jsonl(run.path / "results.jsonl")]
    con = _connect()
    rel = con.sql("SELECT * FROM read_parquet($files, union_by_name=true)", params={"files": files})
    cols = rel.columns
    return [dict(zip(cols, row)) for row in rel.fetchall()]


def latency_series(runs: list[RunInfo]) -> tuple[list[RunInfo], dict]:
    """(runs oldest first, key -> [median of run medians or None, one per run])."""
    import numpy as np

    per_run = [run_medians([r]).runs for r in runs]
    keys = sorted({k for m in per_run for k in m})
    series = {k: [float(np.median(m[k])) if m.get(k) else None for m in per_run] for k in keys}
    return runs, series

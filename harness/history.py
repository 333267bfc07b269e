"""A history is any set of run directories. Queries go through DuckDB over their parquet files.

expand(paths)           run directories named by paths: a run directory itself, or every run
                        directory directly inside a folder (sorted by start time); each is checked
                        as it is listed (run.json an object, rows well-formed, parquet and JSONL
                        agreeing), so a query never runs over a corrupt file
run_medians(dirs)       (op, case_id, backend) -> per-run medians in microseconds, one per process
                        (a `--repeat` run contributes one per replicate), and its timing modes
latency_series(dirs)    per run directory, oldest first: (op, case_id, backend) -> median of its run
                        medians, for nightly trends
"""
from __future__ import annotations

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
    from .results import read_meta, read_rows

    meta = read_meta(d / "run.json")
    for stem in ("results", "samples"):
        read_rows(d, stem)  # raises UsageError naming the file and row
    return meta


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


def _query(con, files, q, params=None):
    """Rows of a DuckDB query over `files`; a DuckDB failure becomes an error naming them."""
    import duckdb

    try:
        return con.execute(q, params or {"files": files}).fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"cannot read {', '.join(files)}: {exc}") from None


def _files(runs, stem) -> list[str]:
    return [str(r.path / f"{stem}.parquet") for r in runs if (r.path / f"{stem}.parquet").is_file()]


def _columns(con, files) -> set[str]:
    import duckdb

    try:
        rel = con.sql("SELECT * FROM read_parquet($files, union_by_name=true) LIMIT 0", params={"files": files})
    except duckdb.Error as exc:
        raise UsageError(f"cannot read {', '.join(files)}: {exc}") from None
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
        for op, case_id, backend, _run, med, n in _query(con, sfiles, q):
            out.runs[(op, case_id, backend)].append(float(med))
            out.n_samples[(op, case_id, backend)] += int(n)
    rfiles = _files(runs, "results")
    if rfiles and "timing_mode" in _columns(con, rfiles):
        q = ("SELECT DISTINCT op, case_id, backend, timing_mode FROM read_parquet($files, union_by_name=true) "
             "WHERE timing_mode IS NOT NULL")
        for op, case_id, backend, mode in _query(con, rfiles, q):
            out.modes[(op, case_id, backend)].add(mode)
    return out


def result_rows(runs: list[RunInfo]) -> list[dict]:
    """All result rows of the runs (a `--repeat` run holds its merged rows once)."""
    files = _files(runs, "results")
    if not files:
        from .results import read_jsonl

        return [r for run in runs for r in read_jsonl(run.path / "results.jsonl")]
    import duckdb

    con = _connect()
    try:
        rel = con.sql("SELECT * FROM read_parquet($files, union_by_name=true)", params={"files": files})
        cols = rel.columns
        return [dict(zip(cols, row)) for row in rel.fetchall()]
    except duckdb.Error as exc:
        raise UsageError(f"cannot read {', '.join(files)}: {exc}") from None


def latency_series(runs: list[RunInfo]) -> tuple[list[RunInfo], dict]:
    """(runs oldest first, key -> [median of run medians or None, one per run])."""
    import numpy as np

    per_run = [run_medians([r]).runs for r in runs]
    keys = sorted({k for m in per_run for k in m})
    series = {k: [float(np.median(m[k])) if m.get(k) else None for m in per_run] for k in keys}
    return runs, series

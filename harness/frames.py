"""Results as pandas DataFrames: one run directory, a history of them, or rows already in memory.

    load(DIR, params=False)          result rows of a run directory; meta (run.json) in df.attrs["meta"]
    load_samples(DIR)                its latency samples (one row per timed call)
    load_history(PATHS, params=False) result rows of every run directory named by PATHS (a run directory,
                                     or a folder of them), oldest first, with run_dir / started / commit
    from_rows(rows, meta=None)       the same typed frame from a list of row dicts
    from_runs(RUNS)                  load_history's frame from harness.history.RunInfo entries
    by_case(df)                      {(op, case_id, backend): [row dicts]} (what compare judges on)
    case_frame(df)                   one row per (op, case_id, backend): the worst output decides
    records(df)                      back to row dicts, missing values as None (for code written on dicts)
    tuples(df, names)                the named columns row by row, missing values as None (fast on big runs)

Column types: op, backend, verdict, dtype, output, timing_mode and grade are categories (verdict
ordered best to worst, so `df.verdict.max()` is the worst verdict); negative and ok are booleans;
the metric and latency columns are float64 (missing: NaN); the text columns are strings. With
params=True the case's params JSON becomes one `p.<name>` column per parameter. Rows are read through
harness.results (which checks them), so a frame never holds a malformed row.
"""
from __future__ import annotations

import json
import os

from .compare import METRIC_KEYS
from .verdicts import VERDICT_ORDER

CATEGORIES = ("op", "backend", "dtype", "output", "timing_mode", "grade", "peak_device", "tier")
TEXT = ("run_id", "case_id", "params", "violates", "reason", "repro", "known_issue")
NUMBERS = ("latency_median_us", "latency_iqr_us", "latency_p20_us", "latency_p80_us", "latency_min_us",
           "latency_stdrel", "n_samples", "bytes", "flops", "gbps", "tflops", "pct_peak_bw", "pct_peak_flops",
           "seed", "warmup_calls")
_NON_NUMERIC_METRICS = {"grade"}
CASE_KEY = ["op", "case_id", "backend"]


def _pd():
    import pandas as pd

    return pd


def from_rows(rows: list[dict], meta: dict | None = None, params: bool = False):
    """A typed frame of result rows (dicts as harness.results reads them)."""
    pd = _pd()
    df = pd.DataFrame.from_records(list(rows))
    for col in ("op", "case_id", "backend", "verdict", "output", "dtype", "reason", "repro", "negative", "ok",
                "known_issue", "params"):
        if col not in df.columns:
            df[col] = None
    df = _typed(df)
    if params:
        df = expand_params(df)
    df.attrs["meta"] = dict(meta or {})
    return df


def _typed(df):
    pd = _pd()
    df["verdict"] = pd.Categorical(df["verdict"], categories=list(VERDICT_ORDER), ordered=True)
    for col in CATEGORIES:
        if col in df.columns:
            df[col] = df[col].astype("category")
    for col in TEXT:
        if col in df.columns:
            df[col] = df[col].astype("string")
    # a row without ok (older runs) counts as its verdict says: only fail and worse are unexpected
    ok = df["ok"].astype("boolean")
    df["ok"] = ok.fillna(~df["verdict"].isin(["fail", "nondeterministic", "error", "timeout", "crash"])).astype(bool)
    df["negative"] = df["negative"].astype("boolean").fillna(False).astype(bool)
    for col in [*METRIC_KEYS, *NUMBERS]:
        if col in df.columns and col not in _NON_NUMERIC_METRICS:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df


def expand_params(df):
    """One `p.<name>` column per case parameter (from the params JSON); values keep their JSON types."""
    pd = _pd()
    parsed = [json.loads(p) if isinstance(p, str) and p else {} for p in df["params"].tolist()]
    wide = pd.DataFrame.from_records(parsed, index=df.index)
    wide.columns = [f"p.{c}" for c in wide.columns]
    return pd.concat([df, wide], axis=1)


def load(run_dir: str | os.PathLike, params: bool = False):
    """The result rows of one run directory as a typed frame; run.json in df.attrs["meta"]."""
    from .results import load_run

    meta, rows = load_run(run_dir)
    return from_rows(rows, meta, params)


def load_samples(run_dir: str | os.PathLike):
    """Latency samples of one run directory: op, case_id, backend (categories), run_id, sample_index, latency_us."""
    from pathlib import Path

    from .results import load_run, read_rows

    load_run(run_dir)  # the same errors as load() for something that is not a run directory
    pd = _pd()
    df = pd.DataFrame.from_records(read_rows(Path(run_dir), "samples"),
                                   columns=["run_id", "op", "case_id", "backend", "sample_index", "latency_us"])
    for col in ("op", "backend"):
        df[col] = df[col].astype("category")
    df["latency_us"] = pd.to_numeric(df["latency_us"], errors="coerce").astype("float64")
    return df


def load_history(paths, params: bool = False):
    """Result rows of every run in `paths` (run directories or folders of them), oldest run first.
    Added columns: run_dir, started (datetime, UTC), commit, run_index (0 = oldest)."""
    from .history import expand

    return from_runs(expand(list(paths)), params)


def from_runs(runs, params: bool = False):
    """load_history's frame from harness.history.RunInfo entries (a run listed twice counts once)."""
    from .results import load_run

    pd = _pd()
    parts, seen, unique = [], set(), []
    for r in runs:
        if str(r.path.resolve()) not in seen:
            seen.add(str(r.path.resolve()))
            unique.append(r)
    for i, run in enumerate(unique):
        meta, rows = load_run(run.path)
        if not rows:  # an empty run adds no rows (and an empty frame has no columns to fill)
            continue
        df = pd.DataFrame.from_records(rows)
        df["run_dir"] = str(run.path)
        df["started"] = run.started
        df["commit"] = (meta.get("env") or {}).get("opdiff_commit")
        df["run_index"] = i
        parts.append(df)
    if not parts:
        return from_rows([], {}, params)
    out = pd.concat(parts, ignore_index=True)
    out = from_rows(out.to_dict("records"), {}, params)
    out["started"] = pd.to_datetime(out["started"], utc=True, errors="coerce", format="mixed")
    out["run_dir"] = out["run_dir"].astype("category")
    return out


def case_frame(df):
    """One row per (op, case_id, backend): the worst verdict over the case's outputs, ok only when
    every output is ok, the largest error metrics, and the latency columns (measured once per case)."""
    pd = _pd()
    if df.empty:
        return df.copy()
    # the row that decides: worst verdict first, then a not-ok row, so its reason explains the verdict
    order = df.assign(_v=df["verdict"].cat.codes, _bad=~df["ok"]).sort_values(["_v", "_bad"], ascending=False,
                                                                             kind="stable")
    first = order.drop_duplicates(CASE_KEY).drop(columns=["_v", "_bad"])
    g = df.groupby(CASE_KEY, observed=True, sort=False)
    agg = pd.DataFrame({"ok": g["ok"].all(), "n_outputs": g.size()})
    bad = df.loc[~df["ok"], CASE_KEY + ["output"]].astype({"output": "string"})
    agg["bad_outputs"] = bad.groupby(CASE_KEY, observed=True)["output"].agg(", ".join)
    agg["bad_outputs"] = agg["bad_outputs"].fillna("")
    for col in ("baseline_ratio", "rmse_ratio", "max_ulp", "max_abs_err", "max_rel_err"):
        if col in df.columns:
            agg[col] = g[col].max()
    out = first.drop(columns=[c for c in agg.columns if c in first.columns]).merge(
        agg.reset_index(), on=CASE_KEY, how="left")
    for col in ("op", "backend"):
        out[col] = out[col].astype(df[col].dtype)
    return out.reset_index(drop=True)


def records(df) -> list[dict]:
    """Row dicts with missing values (NaN, NA, NaT) as None, categories as their plain values."""
    pd = _pd()
    obj = df.astype(object).where(pd.notna(df), None)
    return obj.to_dict("records")


def tuples(df, names: list):
    """The named columns row-wise as tuples, missing values as None; absent columns are all None.
    Much faster than records() where a report walks tens of thousands of rows."""
    pd = _pd()
    cols = []
    for n in names:
        col = df[n] if n in df.columns else pd.Series([None] * len(df), index=df.index)
        cols.append(col.astype(object).where(col.notna(), None).tolist())
    return zip(*cols)


def by_case(df) -> dict:
    """(op, case_id, backend) -> that case's rows as dicts (records()), in frame order."""
    out: dict = {}
    for r in records(df.drop(columns=["run_dir", "started", "commit", "run_index"], errors="ignore")):
        out.setdefault((r["op"], r["case_id"], r["backend"]), []).append(r)
    return out

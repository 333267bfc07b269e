"""The README's DataFrame recipes run as written, in pandas and in DuckDB, over a three-night history,
and both give the expected answers."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import report_runs

pd = pytest.importorskip("pandas")
duckdb = pytest.importorskip("duckdb")

README = Path(__file__).resolve().parent.parent / "README.md"
CASE = "pw03-float16_b2_s4"
NIGHTS = (("n0", "20261201T010000-aaaaaa", 10.0, "pass"), ("n1", "20261202T010000-bbbbbb", 11.0, "warn"),
          ("nightly", "20261203T010000-cccccc", 15.0, "fail"))


def _blocks():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Results as DataFrames", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|sql)\n(.*?)```", section, re.S)


def _history(root: Path):
    from harness.results import consolidate

    for night, (name, run_id, latency, verdict) in enumerate(NIGHTS):
        rows = []
        for op in ("paged_cache_load", "incre_flash_attention"):
            for i in range(5):
                r = report_runs.good(op, i, "numpy")
                r["baseline_ratio"] = (i + 1) * (10 if op == "paged_cache_load" else 1) + night
                rows.append(r)
                rows.append(report_runs.good(op, i, "torch", baseline_ratio=None))
        rows.append(report_runs.row("paged_cache_load", CASE, "torch", verdict, ok=verdict != "fail",
                                    latency_median_us=latency))
        for r in rows:
            r["run_id"] = run_id
        meta = dict(report_runs.META, run_id=run_id, started=f"2026-12-0{night + 1}T01:00:00+0000")
        consolidate(report_runs.write_run(root / "runs" / name, rows, meta))


def test_readme_recipes_in_pandas_and_duckdb(tmp_path, monkeypatch):
    _history(tmp_path)
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert [k for k, _ in blocks] == ["python", "sql"] * 3
    ns, sql = {}, []
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, str(README), "exec"), ns)  # noqa: S102  (the README's own recipe)
        else:
            sql.append(duckdb.sql(code).fetchall())

    # 1. worst cases per op: the three largest ratios of the last night, per op
    worst = ns["worst"]
    assert [(r.op, r.case_id, r.baseline_ratio) for r in worst.itertuples()] == [
        ("paged_cache_load", "pw04-case", 52.0), ("paged_cache_load", "pw03-case", 42.0),
        ("paged_cache_load", "pw02-case", 32.0), ("incre_flash_attention", "pw04-case", 7.0),
        ("incre_flash_attention", "pw03-case", 6.0), ("incre_flash_attention", "pw02-case", 5.0)]
    assert sorted((op, c, v) for op, c, _, _, v in sql[0]) == sorted(
        (r.op, r.case_id, r.baseline_ratio) for r in worst.itertuples())

    # 2. torch's verdict counts per night
    counts = ns["counts"]
    assert counts.loc[0, "pass"] == 11 and counts.loc[1, "warn"] == 1 and counts.loc[2, "fail"] == 1
    assert counts.loc[2, "pass"] == 10
    assert {(run, v): n for run, v, n in sql[1]} == {
        (NIGHTS[0][1], "pass"): 11, (NIGHTS[1][1], "pass"): 10, (NIGHTS[1][1], "warn"): 1,
        (NIGHTS[2][1], "pass"): 10, (NIGHTS[2][1], "fail"): 1}

    # 3. the latency trend of one case, oldest first
    trend = ns["trend"]
    assert trend.tolist() == [10.0, 11.0, 15.0] and trend.index.is_monotonic_increasing
    assert [lat for _, lat in sql[2]] == [10.0, 11.0, 15.0]


def test_frames_are_typed(tmp_path):
    from harness import results

    _history(tmp_path)
    df = results.load(tmp_path / "runs" / "nightly", params=True)
    assert df.attrs["meta"]["run_id"] == NIGHTS[2][1]
    for col in ("op", "backend", "verdict", "dtype", "output"):
        assert isinstance(df[col].dtype, pd.CategoricalDtype), col
    assert df["verdict"].cat.ordered and df["verdict"].max() == "fail"
    assert df["baseline_ratio"].dtype == "float64" and df["ok"].dtype == bool
    assert "p.n" in df.columns and df.loc[df.case_id == CASE, "p.n"].tolist() == [len(CASE)]
    hist = results.load_history([tmp_path / "runs"])
    assert hist["run_index"].tolist() == sorted(hist["run_index"].tolist()) and hist["run_index"].max() == 2
    assert str(hist["started"].dtype).startswith("datetime64")

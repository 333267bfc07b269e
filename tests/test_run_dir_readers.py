"""Readers that verify (issue 16, cases 4, 5, 9, 10, 11, 14): a malformed run directory is a
usage error naming the file and line for report, compare and merge, an abort (128) for
bisect-check, never a traceback or a verdict; resume checks done.jsonl against the rows; compare
of runs with nothing in common is a usage error, not "no regression"."""
from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

import numpy as np
import pytest

from harness.cli import main
from harness.results import RunWriter, consolidate, load_run

RUN = ["run", "--ops", "paged_cache_load", "--backends", "numpy", "--no-timing"]
BASE = ["--case", "base-*"]


def _key(r):
    return (r["op"], r["case_id"], r["backend"], r["output"], r["verdict"])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    assert main([*RUN, *BASE, "--case", "edge-cache_dtype-*", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    """A baseline with latency samples, as bisect-check needs."""
    out = tmp_path_factory.mktemp("timed") / "run"
    assert main(["run", "--ops", "paged_cache_load", "--backends", "numpy", *BASE, "--out", str(out)]) == 0
    return out


def _rewrite_jsonl(d, edit):
    """Apply edit(list of lines) to results.jsonl and rebuild the parquet from it (both agree)."""
    lines = (d / "results.jsonl").read_text().splitlines()
    (d / "results.jsonl").write_text("\n".join(edit(lines)) + "\n")
    consolidate(d)


def _edit_row(i, **change):
    def edit(lines):
        row = json.loads(lines[i])
        for k, v in change.items():
            if v is None:
                row.pop(k)
            else:
                row[k] = v
        lines[i] = json.dumps(row)
        return lines
    return edit


def _damage(d, how):
    """Damage a copy of a run directory; returns the text the error must contain."""
    if how == "parquet_cut":
        data = (d / "results.parquet").read_bytes()
        (d / "results.parquet").write_bytes(data[:100])
        return f"{d}/results.parquet: unreadable parquet"
    if how == "samples_cut":
        data = (d / "samples.parquet").read_bytes()
        (d / "samples.parquet").write_bytes(data[:50])
        return f"{d}/samples.parquet: unreadable parquet"
    if how == "jsonl_not_utf8":
        (d / "results.parquet").unlink()
        lines = (d / "results.jsonl").read_bytes().split(b"\n")
        lines[1] = lines[1].replace(b'"numpy"', b'"nump\xff"', 1)
        (d / "results.jsonl").write_bytes(b"\n".join(lines))
        return f"{d}/results.jsonl:2: not UTF-8 text (byte 0xff"
    if how == "meta_not_utf8":
        (d / "run.json").write_bytes((d / "run.json").read_bytes().replace(b'"smoke"', b'"sm\xffoke"'))
        return f"{d}/run.json: corrupt run.json (not UTF-8 text"
    if how == "meta_list":
        (d / "run.json").write_text("[1, 2]")
        return f"{d}/run.json: corrupt run.json (not a JSON object)"
    if how == "row_without_op":
        _rewrite_jsonl(d, _edit_row(2, op=None))
        return f"{d}/results.parquet row 3: malformed results row: missing 'op'"
    if how == "row_without_case_id":
        _rewrite_jsonl(d, _edit_row(0, case_id=None))
        return f"{d}/results.parquet row 1: malformed results row: missing 'case_id'"
    if how == "unknown_verdict":
        (d / "results.parquet").unlink()
        _rewrite_jsonl(d, _edit_row(1, verdict="passs"))
        (d / "results.parquet").unlink()
        return f"{d}/results.jsonl:2: malformed results row: unknown verdict 'passs'"
    if how == "latency_text":
        _rewrite_jsonl(d, _edit_row(0, latency_median_us="fast"))
        return "row 1: malformed results row: 'latency_median_us' is str"
    if how == "parquet_short":  # case 14: the parquet lost rows the JSONL still has
        import pyarrow.parquet as pq

        t = pq.read_table(d / "results.parquet")
        pq.write_table(t.slice(0, t.num_rows - 1), d / "results.parquet")
        return f"{d}: results.parquet holds {t.num_rows - 1} rows but results.jsonl {t.num_rows}"
    raise AssertionError(how)


READ_DAMAGE = ["parquet_cut", "jsonl_not_utf8", "meta_not_utf8", "meta_list", "row_without_op", "unknown_verdict",
               "latency_text", "parquet_short"]


@pytest.mark.parametrize("how", READ_DAMAGE)
def test_report_compare_merge_name_the_bad_file(good_run, tmp_path, capsys, how):
    """Cases 11 and 14: tracebacks (UnicodeDecodeError, KeyError 'op', list has no .get) or silent
    use of a short parquet became named errors, exit 2, in every reader."""
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    needle = _damage(d, how)
    for argv in (["report", str(d), "-o", str(tmp_path / "r.html")], ["compare", str(good_run), str(d)],
                 ["compare", str(d), str(good_run)], ["merge", str(d), "--out", str(tmp_path / "m")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err, (argv, err)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "m").exists()


def test_report_into_a_missing_directory_is_a_usage_error(good_run, tmp_path, capsys):
    assert main(["report", str(good_run), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert f"{tmp_path}/no/r.html: directory {tmp_path}/no does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["parquet_cut", "samples_cut", "meta_not_utf8", "meta_list", "row_without_case_id",
                                 "latency_text", "parquet_short"])
def test_bisect_check_aborts_on_an_unusable_baseline(timed_run, tmp_path, capsys, how):
    """Case 4: a corrupt baseline answered "bad" (exit 1, traceback): git bisect blamed a commit."""
    d = tmp_path / "d"
    shutil.copytree(timed_run, d)
    needle = _damage(d, how)
    case_id = next(r["case_id"] for r in load_run(timed_run)[1])
    rc = main(["bisect-check", "--case", case_id, "--backend", "numpy", "--baseline", str(d), "--tier", "smoke"])
    out = capsys.readouterr().out
    assert rc == 128, out
    assert out.startswith("bisect-check: abort:") and needle in out, out
    assert main(["compare", str(d), str(timed_run)]) == 2  # and compare calls it a usage error, not a regression


def test_compare_of_disjoint_or_empty_runs_is_a_usage_error(good_run, tmp_path, capsys):
    """Case 9: nothing compared used to read "no regression", exit 0."""
    other = tmp_path / "other"
    assert main([*RUN, "--case", "pw00-*", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(good_run), str(other)]) == 2
    assert "no case x backend in common between" in capsys.readouterr().err
    empty = tmp_path / "empty"
    RunWriter(empty, {"tier": "smoke"}).finish({"cases": 0})
    assert load_run(empty)[1] == []
    for argv, side in ((["compare", str(empty), str(good_run)], "BASE"),
                       (["compare", str(good_run), str(empty)], "NEW")):
        assert main(argv) == 2
        assert f"{side} {empty} holds no result rows" in capsys.readouterr().err
    both = tmp_path / "both"  # overlapping in part: compared, and the rest counted
    assert main([*RUN, *BASE, "--case", "pw00-*", "--out", str(both)]) == 0
    capsys.readouterr()
    assert main(["compare", str(good_run), str(both)]) == 0
    assert "note: 3 case x backend only in BASE, 1 only in NEW: not compared" in capsys.readouterr().err


def test_merge_refuses_duplicate_rows_inside_one_input(good_run, tmp_path, capsys):
    """Case 10: merge kept duplicates inside one input (36 rows from 32)."""
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    _rewrite_jsonl(d, lambda lines: lines + lines[:2])
    assert main(["merge", str(d), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert f"refusing to merge: {d} holds paged_cache_load/" in err and "twice (result rows 1 and 9)" in err
    assert not (tmp_path / "m").exists()


def test_resume_reruns_cases_whose_rows_were_lost(tmp_path, caplog):
    """Case 5: results.jsonl cut at a line boundary, then --resume: exit 0, `finished`, rows lost."""
    full = tmp_path / "full"
    assert main([*RUN, "--case", "edge-*", "--out", str(full)]) == 0
    want = Counter(map(_key, load_run(full)[1]))
    assert sum(want.values()) == 40
    d = tmp_path / "cut"
    shutil.copytree(full, d)
    lines = (d / "results.jsonl").read_text().splitlines(keepends=True)
    (d / "results.jsonl").write_text("".join(lines[:18]))  # 22 rows gone, every line whole
    for name in ("results.parquet", "samples.parquet"):
        (d / name).unlink()
    meta = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps(dict(meta, status="running")))
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--resume", str(d)]) == 0
    assert "11 case(s) listed in done.jsonl lack rows in results.jsonl" in caplog.text
    meta, rows = load_run(d)
    assert meta["status"] == "finished" and Counter(map(_key, rows)) == want


def test_resume_reruns_a_case_with_only_some_of_its_rows(tmp_path):
    d = tmp_path / "d"
    assert main([*RUN, *BASE, "--case", "pw00-*", "--out", str(d)]) == 0
    want = Counter(map(_key, load_run(d)[1]))
    lines = (d / "results.jsonl").read_text().splitlines(keepends=True)
    (d / "results.jsonl").write_text("".join(lines[:-1]))  # the last case keeps its key row, loses value
    (d / "results.parquet").unlink()
    assert main(["run", "--resume", str(d)]) == 0
    assert Counter(map(_key, load_run(d)[1])) == want


def test_a_malformed_done_line_is_named_with_its_line(good_run, tmp_path, capsys):
    d = tmp_path / "d"
    shutil.copytree(good_run, d)
    lines = (d / "done.jsonl").read_text().splitlines(keepends=True)
    lines[1] = json.dumps({"op": "paged_cache_load", "case_id": "x", "rows": "2"}) + "\n"
    (d / "done.jsonl").write_text("".join(lines))
    assert main(["run", "--resume", str(d)]) == 2
    assert f"{d}/done.jsonl:2: malformed line" in capsys.readouterr().err


@pytest.mark.parametrize("row", [
    {"op": "x", "max_abs_err": 1e-05, "big": 1e16, "n": 3, "ok": True, "none": None, "text": "a\"b\u00e9\n"},
    {"op": "x", "max_abs_err": float("nan"), "ratio": float("inf")},          # orjson would write null
    {"op": "x", "n": 2**70},                                                   # beyond orjson's 64 bits
    {"op": "x", "v": np.float32(float("nan")), "w": np.int64(7), "f": np.float64(0.1)},
    # text that reads like a null value, beside a NaN that orjson would write as one: the counts
    # of unescaped `":null` and of None must not be fooled
    {"op": "x", "params": '{"a": null, "b":null}', "r": 'k":null \\":null', "e": float("nan"), "n": None},
    {"op": "x", "params": '{"a": null}', "n": None, "m": 0.5},                 # nulls in text only
    {"op": "x", "nested": [1.0, float("nan")], "d": {"k": float("inf")}},     # not flat: json writes it
], ids=["plain", "nonfinite", "bigint", "numpy", "null-text-and-nan", "null-text", "nested"])
def test_encode_line_writes_what_json_reads_back_as_json_wrote_it(row):
    from harness.results import _ROW_JSON, encode_line

    line = encode_line(row, _ROW_JSON)
    assert line.endswith("\n") and line.count("\n") == 1
    back, want = json.loads(line), json.loads(_ROW_JSON.encode(row))
    assert back.keys() == want.keys()
    for k in want:                       # NaN != NaN: compare as text of the parsed values
        assert repr(back[k]) == repr(want[k]), k
    if row.get("m") == 0.5:              # no NaN there: orjson wrote it (no space after a colon)
        assert line.startswith('{"op":"x"')

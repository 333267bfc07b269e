"""Bad input: every option and every file read is checked, with a message naming the problem and
the file; corrupt or truncated results are reported, never silently skipped. (Resume, shard,
merge and known-issue files have their own cases in test_resume / test_shard / test_ledger.)"""
from __future__ import annotations

import json
import logging

import pytest

from harness.cli import main
from harness.results import load_run

RUN = ["run", "--ops", "paged_cache_load", "--backends", "numpy", "--case", "base-*", "--no-timing"]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _rc(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects a malformed option before main's own checks
        return exc.code


def _err(capsys):
    return capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [
    (["--timeout", "abc"], "argument --timeout: 'abc' is not a number of seconds"),
    (["--timeout", "0"], "argument --timeout: '0' must be a positive number of seconds"),
    (["--timeout", "-3"], "must be a positive number of seconds"),
    (["--timeout", "nan"], "must be a positive number of seconds"),
    (["--timeout", "inf"], "must be a positive number of seconds"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["--tier", "huge"], "argument --tier: invalid choice: 'huge'"),
    (["--no-isolate", "--timeout", "5"], "--timeout needs isolated workers"),
    (["--isolate", "--no-isolate"], "--isolate and --no-isolate contradict each other"),
    (["--shard", "1of2"], "--shard '1of2': expected I/N"),
    (["--ops", "paged_cache_lod"], "unknown op 'paged_cache_lod'; known ops: "),
    (["--backends", "numpy,nmpy"], "unknown backend 'nmpy'; known backends: "),
    (["--backends", ","], "no backend given; valid backends: "),
    (["--case", "nothing-matches-*"], "no case matches --case"),
])
def test_run_options(tmp_path, capsys, args, needle):
    out = tmp_path / "x"
    base = RUN[:-3] + ["--no-timing"] if "--case" in args else RUN  # only the bad --case selects
    assert _rc([*base, "--out", str(out), *args]) == 2
    assert needle in _err(capsys)
    assert not (out / "results.jsonl").exists()  # nothing half-written


def test_argparse_errors_exit_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([*RUN, "--out", str(tmp_path / "x"), "--timeout", "abc"])
    assert exc.value.code == 2


@pytest.mark.parametrize("setup, needle", [
    ("file", "--out {p}: exists and is not a directory"),
    ("run", "--out {p}: already holds a run (run.json); use --resume {p}"),
])
def test_run_out(tmp_path, capsys, setup, needle):
    p = tmp_path / "o"
    if setup == "file":
        p.write_text("x")
    else:
        p.mkdir()
        (p / "run.json").write_text("{}")
    assert main([*RUN, "--out", str(p)]) == 2
    assert needle.format(p=p) in _err(capsys)


@pytest.mark.parametrize("setup, needle", [
    ("missing", "known-issues directory {p}: no such directory"),
    ("file", "known-issues directory {p}: not a directory"),
    ("badtoml", "{p}/numpy.toml: not valid TOML"),
    ("noissue", "{p}/numpy.toml entry #1: 'issue' is required"),
])
def test_run_known_issues_dir(tmp_path, capsys, setup, needle):
    p = tmp_path / "ki"
    if setup == "file":
        p.write_text("x")
    elif setup != "missing":
        p.mkdir()
        body = "[[known_issue]\n" if setup == "badtoml" else \
            '[[known_issue]]\nop = "paged_cache_load"\ncase = "base-*"\nkind = "xfail"\nreason = "r"\n'
        (p / "numpy.toml").write_text(body)
    assert main([*RUN, "--out", str(tmp_path / "x"), "--known-issues", str(p)]) == 2
    assert needle.format(p=p) in _err(capsys)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, needle", [
    ("missing", "{d}: no such directory"),
    ("file", "{d}: not a directory"),
    ("no_meta", "{d}: not a run directory (no run.json)"),
    ("meta_json", "{d}/run.json: corrupt run.json"),
    ("meta_list", "{d}/run.json: corrupt run.json (not a JSON object)"),
    ("parquet", "{d}/results.parquet: unreadable parquet"),
    ("jsonl_middle", "{d}/results.jsonl:1: corrupt results line"),
])
def test_reading_run_directories(good_run, tmp_path, capsys, damage, needle):
    d = tmp_path / "d"
    if damage == "file":
        d.write_text("x")
    elif damage != "missing":
        _copy(good_run, d)
    if damage == "no_meta":
        (d / "run.json").unlink()
    elif damage == "meta_json":
        (d / "run.json").write_text('{"status": "fin')
    elif damage == "meta_list":
        (d / "run.json").write_text("[1, 2]")
    elif damage == "parquet":
        data = (d / "results.parquet").read_bytes()
        (d / "results.parquet").write_bytes(data[:100])
    elif damage == "jsonl_middle":
        (d / "results.parquet").unlink()
        lines = (d / "results.jsonl").read_text().splitlines(keepends=True)
        (d / "results.jsonl").write_text(lines[0][:30] + "\n" + "".join(lines[1:]))
    for cmd in (["report", str(d), "-o", str(tmp_path / "r.html")], ["merge", str(d), "--out", str(tmp_path / "m")]):
        assert main(cmd) == 2, cmd
        assert needle.format(d=d) in _err(capsys), cmd


def test_truncated_last_line_is_reported(good_run, tmp_path, caplog):
    d = _copy(good_run, tmp_path / "d")
    (d / "results.parquet").unlink()
    text = (d / "results.jsonl").read_text()
    (d / "results.jsonl").write_text(text + text.splitlines()[0][:50])
    with caplog.at_level(logging.WARNING):
        meta, rows = load_run(d)
    assert len(rows) == len(text.splitlines())
    assert "results.jsonl:" in caplog.text and "truncated last line dropped" in caplog.text
    # a finished run with a truncated results file is refused outright where it would be merged
    assert main(["merge", str(d), "--out", str(tmp_path / "m")]) == 2


def test_baseline_directories_are_checked(good_run, tmp_path, capsys):
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "run.json").write_text("{oops")
    assert main(["compare", str(bad), str(good_run)]) == 2
    assert str(bad / "run.json") in _err(capsys)
    assert main(["compare", str(tmp_path / "none"), str(good_run)]) == 2
    assert str(tmp_path / "none") in _err(capsys)
    meta = json.loads((good_run / "run.json").read_text())
    assert meta["status"] == "finished"

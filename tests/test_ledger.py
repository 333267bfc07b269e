"""Known issues as data: loading is strict, xfail is strict, quarantine never launches, tolerance
turns a bounded fail into a warn, unmatched entries warn locally and fail in CI; CLI and pytest."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ledger, registry
from harness.cli import main
from harness.errors import UsageError
from harness.results import load_run
from tests.fault_backend import ENV, register

ROOT = Path(__file__).resolve().parents[1]
SPEC = registry.op("paged_cache_load")
IDS = {p: next(c.id for c in SPEC.cases("smoke") if c.id.startswith(p))
       for p in ("base-", "pw00-", "pw01-", "pw02-", "edge-cache_dtype-0-", "edge-cache_dtype-2-")}
BASE, PW00, PW01, PW02, E0, E2 = IDS.values()


def _entry(**kw):
    d = {"op": "paged_cache_load", "case": BASE, "kind": "xfail", "reason": "r", "issue": "#1"}
    d.update(kw)
    return "[[known_issue]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in d.items() if v is not None)


def _toml(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


def _write(tmp_path, backend, *entries):
    d = tmp_path / "ki"
    d.mkdir(exist_ok=True)
    (d / f"{backend}.toml").write_text("\n".join(entries))
    return d


@pytest.mark.parametrize("kw, needle", [
    ({"issue": None}, "'issue' is required"),
    ({"reason": None}, "'reason' is required"),
    ({"reason": "  "}, "'reason' is required"),
    ({"kind": "maybe"}, "kind 'maybe' is not one of xfail, quarantine, tolerance"),
    ({"op": "nope"}, "unknown op 'nope'; known ops: "),
    ({"owner": "me"}, "unknown key(s) ['owner']"),
    ({"case": None}, "give at least one of dtype, case, where"),
    ({"dtype": "float8"}, "dtype 'float8' is not one of"),
    ({"where": {"colour": "red"}}, "'where' names unknown param(s) ['colour']"),
    ({"kind": "tolerance"}, "a tolerance entry needs 'limits'"),
    ({"kind": "tolerance", "limits": {"max_err": 1}}, "limit 'max_err' is not a metric"),
    ({"kind": "tolerance", "limits": {"max_ulp": -1}}, "must be a number >= 0"),
    ({"limits": {"max_ulp": 1}}, "'limits' only applies to kind = \"tolerance\""),
])
def test_bad_entries_name_file_and_entry(tmp_path, kw, needle):
    d = _write(tmp_path, "numpy", _entry(case=PW00), _entry(**kw))
    with pytest.raises(UsageError) as exc:
        ledger.load(d)
    msg = str(exc.value)
    assert "numpy.toml entry #2" in msg and needle in msg


def test_invalid_toml_and_layout(tmp_path):
    d = _write(tmp_path, "numpy", "[[known_issue]]\nop = \n")
    with pytest.raises(UsageError, match=r"numpy.toml: not valid TOML \(.*line 2"):
        ledger.load(d)
    d = _write(tmp_path, "numpy", "op = 'x'\n")
    with pytest.raises(UsageError, match=r"numpy.toml: unknown top-level key\(s\) \['op'\]"):
        ledger.load(d)
    with pytest.raises(UsageError, match="known-issues directory .*missing: no such directory"):
        ledger.load(tmp_path / "missing")


def test_the_shipped_directory_loads():
    assert isinstance(ledger.load().entries, list)  # no real entries yet, but it must stay loadable


def test_matching_by_dtype_case_and_where(tmp_path):
    d = _write(tmp_path, "torch", _entry(case=None, dtype="int8", where={"layout": ["NZ"]}, kind="quarantine"))
    lg = ledger.load(d)
    hits = [c for c in SPEC.cases("smoke") if lg.match(SPEC, c, "torch:cuda")]
    assert hits and all(SPEC.dtype_of(c.params) == "int8" and c.params["layout"] == "NZ" for c in hits)
    assert not [c for c in SPEC.cases("smoke") if lg.match(SPEC, c, "numpy")]


# ---- CLI -----------------------------------------------------------------------------------------

@pytest.fixture
def fault(monkeypatch):
    register()
    monkeypatch.setenv(ENV, f"garbage={PW00};garbage={PW01};garbage={PW02}")
    monkeypatch.delenv("CI", raising=False)
    yield
    registry.unregister_backend("fault")


def _cli(tmp_path, ki, *extra):
    out = tmp_path / "run"
    args = ["run", "--ops", "paged_cache_load", "--backends", "fault", "--no-isolate", "--no-timing",
            "--known-issues", str(ki), "--out", str(out)]
    for i in (BASE, PW00, PW01, PW02, E0, E2):
        args += ["--case", i]
    rc = main(args + list(extra))
    return (rc, *load_run(out)) if (out / "run.json").exists() else (rc, None, None)


def test_cli_applies_every_kind(tmp_path, fault, monkeypatch):
    # a segfault on E0 too: only its quarantine keeps this in-process (--no-isolate) run alive
    monkeypatch.setenv(ENV, os.environ[ENV] + f";segfault={E0}")
    ki = _write(tmp_path, "fault",
                _entry(case=PW00, reason="garbage on pw00", issue="#10"),
                _entry(case=E0, kind="quarantine", reason="segfaults", issue="#11"),
                # 77 vs golden values of at most a few hundred: an absolute error of 1000 bounds it
                _entry(case=PW01, kind="tolerance", limits={"max_abs_err": 1000.0}, issue="#12"),
                _entry(case=PW02, kind="tolerance", limits={"max_abs_err": 0.5}, issue="#13"))
    rc, meta, rows = _cli(tmp_path, ki)
    by = {r["case_id"]: r for r in rows}
    assert by[PW00]["verdict"] == "fail" and by[PW00]["ok"] and by[PW00]["known_issue"] == "#10 (xfail)"
    assert by[PW00]["reason"].startswith("xfail, known issue #10: garbage on pw00")
    assert by[E0]["verdict"] == "skipped" and by[E0]["ok"] and "quarantined, not launched" in by[E0]["reason"]
    assert by[PW01]["verdict"] == "warn" and by[PW01]["ok"] and "within known-issue tolerance #12" in by[PW01]["reason"]
    assert by[PW02]["verdict"] == "fail" and not by[PW02]["ok"] and "beyond known-issue tolerance #13" in by[PW02]["reason"]
    assert by[BASE]["verdict"] == by[E2]["verdict"] == "pass" and "known_issue" not in by[BASE] or \
        by[BASE]["known_issue"] is None
    assert rc == 1  # PW02 is beyond its tolerance
    applied = {e["issue"]: e["rows"] for e in meta["known_issues"]}
    assert set(applied) == {"#10", "#11", "#12", "#13"} and all(n >= 1 for n in applied.values())
    html = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "run"), "-o", str(html)]) == 0
    text = html.read_text()
    assert "Known issues applied" in text and "#12" in text and "quarantine" in text


def test_cli_strict_xfail_unexpected_pass_says_remove_the_entry(tmp_path, fault):
    ki = _write(tmp_path, "fault", _entry(case=BASE, issue="#20"))
    rc, meta, rows = _cli(tmp_path, ki, "--case", "ignored-*")
    base = [r for r in rows if r["case_id"] == BASE]
    assert base and all(not r["ok"] and r["verdict"] == "pass" for r in base)
    assert "unexpected pass of known issue #20" in base[0]["reason"] and "remove the entry" in base[0]["reason"]
    assert rc == 1


def test_unmatched_entry_warns_locally_and_fails_in_ci(tmp_path, fault, monkeypatch, caplog):
    ki = _write(tmp_path, "fault", _entry(case="no-such-case-*", issue="#30"))
    rc, meta, rows = _cli(tmp_path, ki)
    assert meta is not None and "#30" in caplog.text and "matches no case" in caplog.text
    monkeypatch.setenv("CI", "true")
    rc, meta, _ = _cli(tmp_path / "ci", ki)
    assert rc == 2 and meta is None


# ---- pytest --------------------------------------------------------------------------------------

def test_pytest_applies_known_issues_at_collection(tmp_path):
    ki = _write(tmp_path, "fault",
                _entry(case=PW00, issue="#40"),                    # fails -> xfailed
                _entry(case=BASE, issue="#41"),                    # passes -> XPASS(strict): remove the entry
                _entry(case=E0, kind="quarantine", issue="#42"),   # would segfault pytest -> skipped
                _entry(case=PW01, kind="tolerance", limits={"max_abs_err": 1000.0}, issue="#43"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{ENV: f"garbage={PW00};garbage={PW01};segfault={E0}"})
    env.pop("CI", None)
    k = " or ".join(f"{i}-fault" for i in (PW00, BASE, E0, PW01))
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.fault_plugin", "-p", "no:cacheprovider", "-rA",
                        "tests/test_matrix.py", "--ops", "paged_cache_load", "--backends", "fault", "-k", k,
                        "--known-issues", str(ki), "--opdiff-out", str(tmp_path / "out")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    text = p.stdout + p.stderr
    # the deselected count follows the size of the smoke matrix; the four selected outcomes are the point
    assert re.search(r"1 failed, 1 passed, 1 skipped, \d+ deselected, 1 xfailed", text), text
    assert "HypothesisSideeffectWarning" not in text
    assert "XPASS(strict)" in text and "known issue #41" in text and "remove the entry" in text
    assert "quarantined: known issue #42" in text
    rows = {r["case_id"]: r for r in load_run(tmp_path / "out")[1]}
    assert rows[PW00]["known_issue"] == "#40 (xfail)" and rows[PW00]["ok"]
    assert rows[PW01]["verdict"] == "warn" and rows[PW01]["known_issue"] == "#43 (tolerance)"
    assert E0 not in rows  # never launched


def test_pytest_unmatched_entry_fails_in_ci(tmp_path):
    ki = _write(tmp_path, "numpy", _entry(case="no-such-case-*", issue="#50"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="true")
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_matrix.py",
                        "--ops", "paged_cache_load", "--backends", "numpy", "-k", BASE, "--known-issues", str(ki)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 4, p.stdout + p.stderr  # pytest's usage-error exit code
    assert "known issue #50 (xfail, op paged_cache_load) matches no case" in p.stdout + p.stderr

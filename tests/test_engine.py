"""harness.engine.Engine: known issues applied once per row (quarantine never launches, xfail keeps the rows as
they ran for pytest's strict mark), backends chosen by name in the engine's order, rows of an unrun case
settled like any other."""
from __future__ import annotations

import pytest

from harness import registry
from harness.engine import Engine, Options
from harness.errors import UsageError
from harness.ledger import Entry, Ledger
from tests.fault_backend import ENV, FaultBackend

SPEC = registry.op("paged_cache_load")
BASE = next(c for c in SPEC.cases("smoke") if c.id.startswith("base-"))
PW00 = next(c for c in SPEC.cases("smoke") if c.id.startswith("pw00-"))
INPROC = Options(isolate=False)


def _entry(kind, case, issue="#1"):
    return Entry(backend="fault", op=SPEC.name, kind=kind, reason="r", issue=issue, file="fault.toml", index=1,
                 case=case.id)


def test_xfail_rows_are_excused_and_kept_as_they_ran(monkeypatch):
    monkeypatch.setenv(ENV, f"garbage={PW00.id}")
    engine = Engine([FaultBackend()], INPROC, Ledger([_entry("xfail", PW00)]))
    res = engine.run_case(SPEC, PW00)
    assert [r["verdict"] for r in res.rows] == ["fail", "fail"] and all(r["ok"] for r in res.rows)
    assert {r["known_issue"] for r in res.rows} == {"#1 (xfail)"}
    assert [(r["verdict"], r["ok"]) for r in res.judged] == [("fail", False), ("fail", False)]
    plain = engine.run_case(SPEC, BASE)  # no entry matches: nothing kept apart
    assert plain.as_run is None and plain.judged is plain.rows and {r["verdict"] for r in plain.rows} == {"pass"}
    assert [e["rows"] for e in engine.ledger.summary()] == [2]


def test_a_quarantined_case_is_never_launched(monkeypatch):
    monkeypatch.setenv(ENV, f"segfault={BASE.id}")  # in-process: a launch would kill this test process
    res = Engine([FaultBackend()], INPROC, Ledger([_entry("quarantine", BASE)])).run_case(SPEC, BASE)
    assert {r["verdict"] for r in res.rows} == {"skipped"} and all(r["ok"] for r in res.rows)
    assert "quarantined, not launched" in res.rows[0]["reason"]


def test_named_backends_run_in_the_engines_order(monkeypatch):
    monkeypatch.setenv(ENV, "")
    engine = Engine([registry.backend("numpy"), FaultBackend()], INPROC)
    res = engine.run_case(SPEC, BASE, ["fault", "numpy"])
    assert [r["backend"] for r in res.rows] == ["numpy", "numpy", "fault", "fault"]
    assert {r["backend"] for r in engine.run_case(SPEC, BASE, ["fault"]).rows} == {"fault"}
    with pytest.raises(UsageError, match="backend\\(s\\) torch not in this engine's numpy, fault"):
        engine.run_case(SPEC, BASE, ["torch"])


def test_rows_of_an_unrun_case_get_the_known_issues():
    engine = Engine([FaultBackend()], INPROC, Ledger([_entry("xfail", BASE, "#7")]))
    rows = engine.unrun_rows(SPEC, BASE, "fault", "crash", "worker died")
    assert [(r["verdict"], r["ok"], r["known_issue"]) for r in rows] == [("crash", True, "#7 (xfail)")] * 2
    assert rows[0]["reason"].startswith("xfail, known issue #7: r | crash: worker died")


def test_the_isolation_policy_follows_run():
    numpy, fault = registry.backend("numpy"), FaultBackend()
    assert Engine([numpy, fault], Options()).describe() == {"isolated_backends": ["fault"], "timeout_s": 600.0}
    assert Engine([numpy, fault], Options(timeout=5.0)).describe() == {"isolated_backends": ["numpy", "fault"],
                                                                      "timeout_s": 5.0}
    assert Engine([numpy, fault], Options(isolate=True)).describe()["isolated_backends"] == ["numpy", "fault"]
    assert Engine([numpy, fault], INPROC).describe() == {"isolated_backends": [], "timeout_s": None}

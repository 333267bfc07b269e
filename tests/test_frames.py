"""harness.frames: one row per case x backend (the worst output decides), records back to dicts."""
from __future__ import annotations

import math

import pytest

from . import report_runs

pytest.importorskip("pandas")


def test_case_frame_worst_output_decides_and_names_the_bad_outputs():
    from harness import frames

    rows = [report_runs.good("paged_cache_load", 0, "torch", output="key"),
            report_runs.row("paged_cache_load", "pw00-case", "torch", "fail", ok=False, output="value",
                            reason="worst at index (0,): actual 2.0, golden 1.0", max_ulp=9.0),
            report_runs.good("paged_cache_load", 0, "numpy", output="key"),
            report_runs.good("paged_cache_load", 0, "numpy", output="value", verdict="warn")]
    cases = frames.case_frame(frames.from_rows(rows))
    got = {b: r for b, r in zip(cases["backend"].astype(str), frames.records(cases))}
    assert set(got) == {"torch", "numpy"} and len(cases) == 2
    assert (got["torch"]["verdict"], got["torch"]["ok"], got["torch"]["bad_outputs"]) == ("fail", False, "value")
    assert got["torch"]["reason"].startswith("worst at index") and got["torch"]["max_ulp"] == 9.0
    assert (got["numpy"]["verdict"], got["numpy"]["ok"], got["numpy"]["bad_outputs"]) == ("warn", True, "")
    assert got["numpy"]["n_outputs"] == 2


def test_records_turn_missing_values_into_none():
    from harness import frames

    rows = [report_runs.good("paged_cache_load", 0, "torch"), report_runs.row("paged_cache_load", "x", "aclnn",
                                                                               "skipped", reason="unavailable")]
    recs = frames.records(frames.from_rows(rows))
    assert recs[1]["baseline_ratio"] is None and recs[1]["known_issue"] is None
    assert isinstance(recs[0]["baseline_ratio"], float) and not math.isnan(recs[0]["baseline_ratio"])
    assert recs[0]["verdict"] == "pass" and type(recs[0]["op"]) is str
    assert list(frames.tuples(frames.from_rows(rows), ["case_id", "no_such_column"])) == [("pw00-case", None),
                                                                                        ("x", None)]

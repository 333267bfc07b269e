"""Machine-speed canary: drift of the machine between two runs must not read as a code regression."""
from __future__ import annotations

import json

import pytest

from harness import canary, regress
from harness.regress import AMBIGUOUS, FASTER, SAME, SLOWER

from .test_regress import CASES_GLOB, _spin_cases, spin_registered, write_replicated  # noqa: F401 (fixture)


def _c(memcpy, exp):
    return {"memcpy_us": memcpy, "exp_us": exp}


# ---- pure functions ---------------------------------------------------------------------------------

def test_canary_ratio_is_the_geometric_mean_of_per_workload_ratios_of_medians():
    base = [_c(100, 50), _c(110, 52), _c(90, 48)]
    new = [_c(200, 100), _c(180, 104), _c(220, 96)]
    assert regress.canary_ratio(base, new) == pytest.approx(2.0)
    # memcpy 1.5x, exp 1.0x -> sqrt(1.5)
    assert regress.canary_ratio([_c(100, 50)], [_c(150, 50)]) == pytest.approx(1.5 ** 0.5)
    # only workloads both sides measured count
    assert regress.canary_ratio([{"memcpy_us": 100}], [_c(120, 999)]) == pytest.approx(1.2)
    assert regress.canary_ratio([], new) is None
    assert regress.canary_ratio(base, []) is None
    assert regress.canary_ratio([{"other": 1.0}], new) is None


def test_canary_moved_uses_the_floor():
    assert not regress.canary_moved(None)
    assert not regress.canary_moved(1.04)
    assert regress.canary_moved(1.06) and regress.canary_moved(1 / 1.06)
    assert not regress.canary_moved(1.2, floor=0.25)


BASE = [100.0, 101.0, 99.0]
SLOW20 = [120.0, 121.0, 119.0]


def test_machine_drift_turns_slower_into_ambiguous_with_the_reason():
    ratio = regress.canary_ratio([_c(1000, 300)] * 3, [_c(1800, 540)] * 3)
    v = regress.apply_canary(regress.decide_latency(BASE, SLOW20), ratio)
    assert v.verdict == AMBIGUOUS
    assert "machine speed changed between runs (canary ratio 1.80)" in v.reason
    assert "--interleave-cwd" in v.reason and "run medians separated" in v.reason
    # a faster machine makes FASTER ambiguous
    fast = regress.apply_canary(regress.decide_latency(BASE, [80.0, 81.0, 79.0]), 1 / 1.8)
    assert fast.verdict == AMBIGUOUS
    # ... and so does the opposite direction: load does not move every workload the same way
    assert regress.apply_canary(regress.decide_latency(BASE, SLOW20), 1 / 1.8).verdict == AMBIGUOUS
    # SAME stays SAME
    assert regress.apply_canary(regress.decide_latency(BASE, [101.0, 100.0, 99.5]), 1.8).verdict == SAME


def test_steady_machine_keeps_a_real_20_percent_slowdown_and_no_canary_keeps_old_behaviour():
    steady = regress.canary_ratio([_c(1000, 300), _c(1010, 290)], [_c(1005, 302), _c(995, 298)])
    assert not regress.canary_moved(steady)
    v = regress.apply_canary(regress.decide_latency(BASE, SLOW20), steady)
    assert v.verdict == SLOWER and 1.19 < v.ratio < 1.21
    old = regress.decide_latency(BASE, SLOW20)
    assert regress.apply_canary(regress.decide_latency(BASE, SLOW20), None).verdict == old.verdict == SLOWER
    # a per-op floor of 25% tolerates a 10% machine drift: the 30% slowdown stays SLOWER
    v = regress.apply_canary(regress.decide_latency(BASE, [130.0, 131.0, 129.0], floor=0.25), 1.10)
    assert v.verdict == SLOWER


def test_run_values_reads_plain_and_merged_run_json():
    rec = canary.record(_c(100.0, 40.0), _c(400.0, 10.0))
    assert rec["us"] == pytest.approx(_c(200.0, 20.0))  # geometric mean of start and end
    assert canary.run_values({"canary": rec}) == [rec["us"]]
    merged = canary.merged([rec, None, canary.record(_c(1, 1), _c(1, 1))])
    assert len(canary.run_values({"canary": merged})) == 2
    assert canary.merged([None, {}]) is None
    assert canary.run_values({}) == [] and canary.run_values({"canary": "junk"}) == []


def test_probe_measures_both_workloads():
    got = canary.probe(reps=1)
    assert set(got) == {"memcpy_us", "exp_us"} and all(v > 0 for v in got.values())


# ---- compare end to end -------------------------------------------------------------------------------

def _inject(side_dir, values: dict):
    """Give every run directory under side_dir the canary record `values` (start = end)."""
    for meta_path in sorted(side_dir.glob("r*/run.json")):
        meta = json.loads(meta_path.read_text())
        meta["canary"] = canary.record(values, values)
        meta_path.write_text(json.dumps(meta))


def test_compare_reports_drift_as_ambiguous_and_a_steady_machine_as_slower(tmp_path, spin_registered, capsys):
    from harness.cli import main
    from harness.run_compare import compare_runs
    from harness.repeat import merge_replicates

    spec, chosen = _spin_cases()
    affected = {c.id for c in chosen if c.id.startswith("edge-")}
    write_replicated(tmp_path, {"base": {}, "new": {"OPDIFF_TEST_SLOWDOWN": f"0.2:{CASES_GLOB}"}}, 3, (spec, chosen))
    _inject(tmp_path / "base", _c(1000.0, 300.0))
    _inject(tmp_path / "new", _c(1800.0, 540.0))   # the machine got 1.8x slower for NEW

    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "new")])
    out = capsys.readouterr().out
    assert code == 3, out
    assert out.startswith("warning: machine speed changed between runs (canary ratio 1.80)")
    assert "SLOWER" not in out.replace("SLOWER/FASTER", "")
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    assert {r.verdict for r in rows if r.case_id in affected} == {AMBIGUOUS}
    assert {r.verdict for r in rows if r.case_id not in affected} == {SAME}

    # the same data on a steady machine: the 20% slowdown is SLOWER again, no warning
    _inject(tmp_path / "new", _c(1010.0, 297.0))
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "new")])
    out = capsys.readouterr().out
    assert code == 1 and "warning" not in out
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    assert {r.case_id for r in rows if r.verdict == SLOWER} == affected

    # merged `run --repeat` directories keep one canary per replicate, and compare reads them
    _inject(tmp_path / "new", _c(1800.0, 540.0))
    for side in ("base", "new"):
        merge_replicates(tmp_path / f"{side}_m", sorted((tmp_path / side).glob("r*")))
    meta = json.loads((tmp_path / "new_m" / "run.json").read_text())
    assert len(canary.run_values(meta)) == 3
    rows = compare_runs([tmp_path / "base_m"], [tmp_path / "new_m"])
    assert rows[0].canary_ratio == pytest.approx(1.8)
    assert {r.verdict for r in rows if r.case_id in affected} == {AMBIGUOUS}


def test_run_dirs_without_canary_keep_todays_verdicts(tmp_path, spin_registered):
    from harness.run_compare import compare_runs, exit_code

    spec, chosen = _spin_cases(3)
    write_replicated(tmp_path, {"base": {}, "new": {"OPDIFF_TEST_SLOWDOWN": "0.2"}}, 3, (spec, chosen))
    _inject(tmp_path / "new", _c(1800.0, 540.0))  # one side only: no ratio, old behaviour
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    assert {r.verdict for r in rows} == {SLOWER} and rows[0].canary_ratio is None
    assert exit_code(rows) == 1

"""Regression verdicts: the pure statistics, and `compare` end to end on replicated runs."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from harness import regress
from harness.regress import AMBIGUOUS, FASTER, SAME, SLOWER

# ---- pure statistics ------------------------------------------------------------------------------


def _brute_p(x, y):
    """One-sided MWU p by enumerating every assignment of the pooled values (no ties)."""
    pooled = list(x) + list(y)
    u_obs = sum(a > b for a in x for b in y)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        hits += sum(a > b for a in xs for b in ys) >= u_obs
        total += 1
    return hits / total


@pytest.mark.parametrize("x, y", [([4, 5, 6], [1, 2, 3]), ([1, 5, 6], [2, 3, 4]), ([2.5, 7, 1, 9], [3, 4, 8]),
                                  ([1, 2], [3, 4, 5, 6, 7])])
def test_exact_mwu_matches_enumeration(x, y):
    assert regress.mwu_greater(x, y) == pytest.approx(_brute_p(x, y))


def test_mwu_extremes_and_large_sample_normal_approximation():
    assert regress.mwu_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)
    assert regress.min_p(5, 5) == pytest.approx(1 / 252)
    assert regress.mwu_greater([1, 2, 3], [4, 5, 6]) == 1.0
    # above 30 per side the normal approximation takes over; it must agree with the exact count
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 31), rng.normal(0.0, 1, 31)
    u = int(np.sum(a[:, None] > b[None, :]))
    exact = sum(regress._u_distribution(31, 31)[u:]) / math.comb(62, 31)
    assert regress.mwu_greater(a, b) == pytest.approx(exact, abs=0.01)
    assert regress.mwu_greater(a, b) + regress.mwu_greater(b, a) == pytest.approx(1.0, abs=0.02)


def test_latency_verdicts_on_run_medians():
    base = [100.0, 101.0, 99.0]
    assert regress.decide_latency(base, [120.0, 121.0, 119.0]).verdict == SLOWER
    assert regress.decide_latency(base, [80.0, 81.0, 79.0]).verdict == FASTER
    assert regress.decide_latency(base, [102.0, 98.0, 103.0]).verdict == SAME
    # beyond the floor but overlapping runs: not enough evidence either way
    v = regress.decide_latency(base, [130.0, 95.0, 120.0])
    assert v.verdict == AMBIGUOUS and "overlap" in v.reason
    # one run per side can never be significant
    assert regress.decide_latency([100.0], [150.0]).verdict == AMBIGUOUS
    # a per-op floor of 25% makes a 20% change SAME
    assert regress.decide_latency(base, [120.0, 121.0, 119.0], floor=0.25).verdict == SAME


def test_within_run_drift_does_not_raise_an_alarm():
    """benchmarking.md section 5 in miniature: each process has its own multiplicative drift. A test
    over all samples (as if independent) would call this significant; run medians do not."""
    rng = np.random.default_rng(1)
    ours = pooled = 0
    trials = 200
    for _ in range(trials):
        runs = [100 * np.exp(rng.normal(0, 0.03)) * rng.lognormal(0, 0.03, 500) for _ in range(6)]
        meds = [float(np.median(r)) for r in runs]
        ours += regress.decide_latency(meds[:3], meds[3:]).verdict in (SLOWER, FASTER)
        a, b = np.concatenate(runs[:3]), np.concatenate(runs[3:])
        pooled += min(regress.mwu_greater(a, b), regress.mwu_greater(b, a)) < 0.001  # asv: two-sided p < 0.002
    assert pooled / trials > 0.5       # samples treated as independent: mostly false alarms
    assert ours / trials <= 0.06       # run medians + 5% floor: the section-5 simulation saw .03-.08


def test_bootstrap_over_runs_brackets_the_ratio():
    lo, hi = regress.bootstrap_ratio_ci([100, 102, 98, 101], [110, 112, 108, 111])
    assert lo < 1.1 < hi and lo > 1.0


def _row(verdict, ok=True, **metrics):
    return {"verdict": verdict, "ok": ok, "reason": "", **metrics}


def test_accuracy_worse_grew_better_same():
    assert regress.decide_accuracy([_row("pass")], [_row("fail", ok=False)]).status == "WORSE"
    assert regress.decide_accuracy([_row("pass")], [_row("warn")]).status == "WORSE"
    assert regress.decide_accuracy([_row("fail", ok=False)], [_row("pass")]).status == "BETTER"
    grew = regress.decide_accuracy([_row("pass", max_ulp=1.0)], [_row("pass", max_ulp=8.0)])
    assert grew.status == "GREW" and grew.regressed
    assert regress.decide_accuracy([_row("pass", max_ulp=0.5)], [_row("pass", max_ulp=1.5)]).status == "SAME"
    assert regress.decide_accuracy([_row("pass", baseline_ratio=1.0)], [_row("pass", baseline_ratio=1.1)]).status == "SAME"
    assert regress.decide_accuracy([_row("pass")], [_row("skipped")]).status == "SKIPPED"
    assert regress.decide_accuracy([], [_row("pass")]).status == "MISSING"


def test_nightly_two_consecutive_violations_rule():
    flat = [100, 101, 99, 100, 102, 100]
    assert regress.nightly_status(flat).status == "ok"
    assert regress.nightly_status(flat + [130]).status == "suspicious"       # one noisy night
    assert regress.nightly_status(flat + [130, 131]).status == "regression"  # two in a row
    assert regress.nightly_status(flat + [130, 100]).status == "ok"
    assert regress.nightly_status(flat + [130, 131, 129, 100, 101]).status == "suspicious"
    assert regress.nightly_status([100, 130]).status == "insufficient_data"


def test_step_detection_marks_level_shifts_only():
    assert regress.detect_steps([100, 101, 99, 100, 125, 126, 124, 125]) == [4]
    assert regress.detect_steps([100, 101, 99, 103, 98, 102, 100]) == []
    assert regress.detect_steps([100, 100, 100, 150, 150, 150, 100, 100]) == [3, 6]


# ---- compare end to end -----------------------------------------------------------------------------

CASES_GLOB = "edge-*"


@pytest.fixture()
def spin_registered():
    from harness import registry

    from .test_regress_spin import SpinBackend

    registry.register_backend("spin", SpinBackend)
    yield
    registry.unregister_backend("spin")


def _spin_cases(n=4):
    from harness import registry

    spec = registry.op("paged_cache_load")
    return spec, [c for c in spec.cases("smoke") if not c.negative][:n]


def write_replicated(root, sides: dict, reps: int, cases, backends=("spin",)):
    """In-process replicates written as one run directory each, A/B interleaved:
    root/base/r0, root/new/r0, root/base/r1, ... `sides` maps side -> environment overrides."""
    from harness import registry
    from harness.results import RunWriter
    from harness.runner import run_case
    from harness.timing import TIER_TIMING

    spec, chosen = cases
    for k in range(reps):
        for side, env in sides.items():
            old = {v: os.environ.get(v) for v in env}
            os.environ.update(env)
            try:
                w = RunWriter(root / side / f"r{k}", {"tier": "smoke", "backends": list(backends)})
                for c in chosen:
                    res = run_case(spec, c, [registry.backend(b) for b in backends], "smoke", 0, TIER_TIMING["smoke"])
                    w.append(res.rows, res.samples)
                w.finish({"cases": len(chosen)})
            finally:
                for v, val in old.items():
                    if val is None:
                        os.environ.pop(v, None)
                    else:
                        os.environ[v] = val


def _verdicts(rows):
    return {(r.case_id, r.backend): r.verdict for r in rows}


def test_two_runs_of_the_same_code_are_same_on_every_case(tmp_path, spin_registered):
    from harness.run_compare import compare_runs, exit_code

    cases = _spin_cases()
    write_replicated(tmp_path, {"base": {}, "new": {}}, 3, cases)
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    assert len(rows) == len(cases[1])
    assert {r.verdict for r in rows} == {SAME}, [(r.case_id, r.ratio, r.reason) for r in rows]
    assert {r.accuracy for r in rows} == {"SAME"}
    assert all(r.n_base == 3 and r.n_new == 3 for r in rows)
    assert exit_code(rows) == 0


def test_injected_20_percent_slowdown_is_slower_on_affected_cases_only(tmp_path, spin_registered):
    from harness.run_compare import compare_runs, exit_code

    spec, chosen = _spin_cases()
    affected = {c.id for c in chosen if c.id.startswith("edge-")}
    assert affected and len(affected) < len(chosen)
    write_replicated(tmp_path, {"base": {}, "new": {"OPDIFF_TEST_SLOWDOWN": f"0.2:{CASES_GLOB}"}}, 3, (spec, chosen))
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    got = _verdicts(rows)
    assert {k for k, v in got.items() if v == SLOWER} == {(c, "spin") for c in affected}
    assert {v for (c, _), v in got.items() if c not in affected} == {SAME}
    for r in rows:
        if r.case_id in affected:
            assert 1.15 < r.ratio < 1.3
    assert exit_code(rows) == 1


def test_accuracy_regression_in_the_same_table_and_cli_exit_codes(tmp_path, spin_registered, capsys):
    from harness.cli import main

    spec, chosen = _spin_cases(3)
    bad = chosen[1].id
    write_replicated(tmp_path, {"base": {}, "new": {"OPDIFF_TEST_CORRUPT": bad}}, 2, (spec, chosen))
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "new"), "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert "WORSE" in out and bad in out and "repro: python -m harness run" in out
    # same data, compared with itself: nothing to report
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "base")]) == 0


def test_ambiguous_only_exits_3_and_modes_are_never_mixed(tmp_path):
    from harness.run_compare import Row, exit_code

    def row(v, acc="SAME"):
        return Row("op", "c", "b", v, 1.2, 1, 1, 1, 1, None, None, None, 0.05, "", acc, "", "")

    assert exit_code([row(SAME), row(AMBIGUOUS)]) == 3
    assert exit_code([row(SLOWER), row(AMBIGUOUS)]) == 1
    assert exit_code([row(SAME, "GREW")]) == 1
    assert exit_code([row(FASTER)]) == 0


def test_timing_modes_differ_is_ambiguous(tmp_path, spin_registered):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness.run_compare import compare_runs

    cases = _spin_cases(2)
    write_replicated(tmp_path, {"base": {}, "new": {}}, 2, cases)
    for k in range(2):
        p = tmp_path / "new" / f"r{k}" / "results.parquet"
        t = pq.read_table(p)
        i = t.column_names.index("timing_mode")
        t = t.set_column(i, "timing_mode", pa.array(["cuda_event/cold"] * t.num_rows))
        pq.write_table(t, p)
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    assert {r.verdict for r in rows} == {AMBIGUOUS}
    assert all("timing modes differ" in r.reason for r in rows)


@pytest.mark.slow
def test_run_repeat_interleaved_processes_same_code(tmp_path):
    """`run --repeat 3 --interleave-cwd`: six real processes, A B A B A B. The spin backend (entry
    point) must be SAME everywhere; the numpy backend must raise no false SLOWER/FASTER alarm."""
    import subprocess
    import sys

    from harness.run_compare import compare_runs

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dist = tmp_path / "plug" / "opdiff_spin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: opdiff-spin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[opdiff.backends]\nspin = tests.test_regress_spin:SpinBackend\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'plug'}{os.pathsep}{root}")
    cmd = [sys.executable, "-m", "harness", "run", "--ops", "paged_cache_load", "--backends", "spin,numpy",
           "--case", "edge-cache_dtype-*", "--repeat", "3", "--out", str(tmp_path / "base"),
           "--interleave-cwd", root, "--interleave-out", str(tmp_path / "new")]
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = compare_runs([tmp_path / "base"], [tmp_path / "new"])
    spin = [r for r in rows if r.backend == "spin"]
    assert spin and {r.verdict for r in spin} == {SAME}
    assert all(r.n_base == 3 and r.n_new == 3 for r in rows)
    assert not [r for r in rows if r.backend == "numpy" and r.verdict in (SLOWER, FASTER)]
    assert math.isfinite(spin[0].ratio)

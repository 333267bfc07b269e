"""`--shard i/n` and `merge`: a 2-shard run + merge gives the same rows as one run; merge refuses
mismatched code, environments, plans and incomplete or corrupt inputs."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from harness import registry, shard
from harness.cli import main
from harness.commands.merge import merge
from harness.errors import UsageError
from harness.results import load_run

SELECT = ["--ops", "paged_cache_load", "--backends", "numpy", "--no-timing", "--case", "edge-*", "--case", "neg-*"]
SPEC = registry.op("paged_cache_load")


def _key(r):
    return (r["op"], r["case_id"], r["backend"], r["output"], r["verdict"], r["ok"], r["reason"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    assert main(["run", *SELECT, "--out", str(d / "whole")]) == 0
    for i in (1, 2):
        assert main(["run", *SELECT, "--shard", f"{i}/2", "--out", str(d / f"s{i}")]) == 0
    return d


def test_two_shards_merged_equal_the_single_run(runs, tmp_path):
    meta, n = merge([str(runs / "s1"), str(runs / "s2")], str(tmp_path / "m"))
    whole_meta, whole = load_run(runs / "whole")
    merged_meta, merged = load_run(tmp_path / "m")
    assert Counter(map(_key, merged)) == Counter(map(_key, whole)) and n == len(whole)
    assert merged_meta["status"] == "finished" and merged_meta["cases"] == whole_meta["cases"]
    assert {r["run_id"] for r in merged} == {merged_meta["run_id"]}
    assert [m["shard"] for m in merged_meta["merged_from"]] == ["1/2", "2/2"]
    s1 = {r["case_id"] for r in load_run(runs / "s1")[1]}
    s2 = {r["case_id"] for r in load_run(runs / "s2")[1]}
    assert s1 and s2 and not s1 & s2


def test_merge_cli_exit_code_and_message(runs, tmp_path, capsys):
    assert main(["merge", str(runs / "s1"), str(runs / "s2"), "--out", str(tmp_path / "m")]) == 0
    assert "merged 2 run(s)" in capsys.readouterr().out


def test_split_is_deterministic_disjoint_and_cost_balanced():
    plan = [(SPEC, c) for c in SPEC.cases("nightly")]
    for n in (1, 2, 3, 8):
        parts = [shard.select(plan, i, n) for i in range(1, n + 1)]
        assert parts == [shard.select(plan, i, n) for i in range(1, n + 1)]  # deterministic
        flat = [c.id for p in parts for _, c in p]
        assert sorted(flat) == sorted(c.id for _, c in plan) and len(set(flat)) == len(flat)
        loads = [sum(shard.case_cost(*e) for e in p) for p in parts]
        heaviest = max(shard.case_cost(*e) for e in plan)
        assert max(loads) - min(loads) <= heaviest + 1e-12  # LPT bound
        # plan order is kept inside a shard
        for p in parts:
            pos = [plan.index(e) for e in p]
            assert pos == sorted(pos)


def test_without_cost_model_shards_balance_by_count():
    plan = list(range(11))
    parts = [shard.select(plan, i, 3, weight=lambda e: 1.0) for i in (1, 2, 3)]
    assert sorted(len(p) for p in parts) == [3, 4, 4]
    assert sorted(x for p in parts for x in p) == plan


def test_cost_model_prices_large_cases_higher():
    cases = [c for c in SPEC.cases("smoke") if not c.negative]
    costs = sorted(shard.case_cost(SPEC, c) for c in cases)
    assert costs[-1] > costs[0] > 0
    neg = next(c for c in SPEC.cases("smoke") if c.negative)
    assert shard.case_cost(SPEC, neg) == shard.CASE_OVERHEAD_S


@pytest.mark.parametrize("text", ["", "2", "0/2", "3/2", "a/b", "1/0", "-1/2", "1/2/3"])
def test_bad_shard_option(text):
    with pytest.raises(UsageError, match="--shard"):
        shard.parse(text)


def test_bad_shard_option_through_cli(tmp_path, capsys):
    assert main(["run", *SELECT, "--shard", "3/2", "--out", str(tmp_path / "x")]) == 2
    assert "between 1 and 2" in capsys.readouterr().err


def _copy(src, dst, edit=None):
    import shutil

    shutil.copytree(src, dst)
    if edit:
        meta = json.loads((dst / "run.json").read_text())
        edit(meta)
        (dst / "run.json").write_text(json.dumps(meta))
    return dst


def test_merge_refuses_mismatched_code_or_environment(runs, tmp_path):
    other = _copy(runs / "s2", tmp_path / "s2", lambda m: m["env"].update(torch="2.99.0"))
    with pytest.raises(UsageError, match=r"differs from .* in env.torch: '2.99.0' vs .*different code or environment"):
        merge([str(runs / "s1"), str(other)], str(tmp_path / "m"))
    other = _copy(runs / "s2", tmp_path / "s2c", lambda m: m["env"].update(opdiff_commit="deadbeef"))
    with pytest.raises(UsageError, match="env.opdiff_commit"):
        merge([str(runs / "s1"), str(other)], str(tmp_path / "m"))


def test_merge_refuses_other_plans_and_shard_sets(runs, tmp_path):
    other = _copy(runs / "s2", tmp_path / "p", lambda m: m["plan_args"].update(seed=7))
    with pytest.raises(UsageError, match="plan_args.seed"):
        merge([str(runs / "s1"), str(other)], str(tmp_path / "m"))
    with pytest.raises(UsageError, match=r"shard\(s\) 2/2 missing"):
        merge([str(runs / "s1")], str(tmp_path / "m"))
    dup = _copy(runs / "s1", tmp_path / "dup")
    with pytest.raises(UsageError, match="are both shard 1/2"):
        merge([str(runs / "s1"), str(dup)], str(tmp_path / "m"))
    with pytest.raises(UsageError, match="whole run, the others are shards"):
        merge([str(runs / "s1"), str(runs / "whole")], str(tmp_path / "m"))
    with pytest.raises(UsageError, match="given twice"):
        merge([str(runs / "s1"), str(runs / "s1")], str(tmp_path / "m"))
    over = _copy(runs / "whole", tmp_path / "w2")
    with pytest.raises(UsageError, match="overlapping runs"):
        merge([str(runs / "whole"), str(over)], str(tmp_path / "m"))


def test_merge_partial_takes_what_is_there(runs, tmp_path):
    meta, n = merge([str(runs / "s1")], str(tmp_path / "m"), partial=True)
    assert n == len(load_run(runs / "s1")[1])


def test_merge_refuses_unfinished_truncated_and_corrupt_inputs(runs, tmp_path):
    unfinished = _copy(runs / "s2", tmp_path / "u", lambda m: m.update(status="running"))
    with pytest.raises(UsageError, match=r"u: run not finished .* run --resume"):
        merge([str(runs / "s1"), str(unfinished)], str(tmp_path / "m"))
    trunc = _copy(runs / "s2", tmp_path / "t")
    text = (trunc / "results.jsonl").read_text()
    (trunc / "results.jsonl").write_text(text[: len(text) - 40])
    with pytest.raises(UsageError, match=r"results.jsonl: truncated"):
        merge([str(runs / "s1"), str(trunc)], str(tmp_path / "m"))
    short = _copy(runs / "s2", tmp_path / "short")
    lines = (short / "results.jsonl").read_text().splitlines(keepends=True)
    (short / "results.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(UsageError, match=r"results.parquet holds \d+ rows but results.jsonl \d+"):
        merge([str(runs / "s1"), str(short)], str(tmp_path / "m"))
    bad_pq = _copy(runs / "s2", tmp_path / "pq")
    data = (bad_pq / "results.parquet").read_bytes()
    (bad_pq / "results.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="unreadable parquet"):
        merge([str(runs / "s1"), str(bad_pq)], str(tmp_path / "m"))
    with pytest.raises(UsageError, match="no run.json"):
        merge([str(runs / "s1"), str(tmp_path)], str(tmp_path / "m"))
    with pytest.raises(UsageError, match="nope: no such directory"):
        merge([str(runs / "s1"), str(tmp_path / "nope")], str(tmp_path / "m"))


def test_merge_refuses_a_non_empty_out(runs, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("keep me")
    with pytest.raises(UsageError, match="not an empty directory"):
        merge([str(runs / "s1"), str(runs / "s2")], str(tmp_path / "m"))

"""Judgements kept in the golden store (harness.judgements): a second run reads them instead of
folding, gives the same rows, and judges afresh whatever differs from what was judged."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from harness import golden_build, golden_prune, golden_store, judgements, registry
from harness import error_stats
from harness.cli import main

# NSA grad smoke cases whose three gradients hold 98K to 165K elements: judgements are kept for them
SELECT = ["--ops", "nsa_selected_attention_grad", "--case", "pw20-*", "--case", "official-ut_decode_b64_dv128_sparse0*",
          "--no-timing"]
_SAME = ("output", "verdict", "reason", "ok", "max_abs_err", "max_rel_err", "mere", "rmse", "max_ulp", "cosine",
         "baseline_ratio", "mare_ratio", "mere_ratio", "rmse_ratio", "mismatch_count", "small_err_count",
         "golden_source", "baseline_source")


def _rows(d):
    rows = [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()]
    return sorted(((r["case_id"], r["backend"], r["output"]), r) for r in rows)


def _same(a, b) -> None:
    assert [k for k, _ in a] == [k for k, _ in b]
    for (k, ra), (_, rb) in zip(a, b):
        assert {f: ra[f] for f in _SAME} == {f: rb[f] for f in _SAME}, k


def _judgement_entries(store):
    return [e for e in golden_store.entries(store) if golden_store.entry_kind(e) == "judgement"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv(golden_store.ENV, "")  # restored (unset) afterwards: run sets it
    store = tmp_path / "store"
    assert main(["run", *SELECT, "--out", str(tmp_path / "plain")]) == 0     # before: run names its store
    assert main(["run", *SELECT, "--golden-store", str(store), "--out", str(tmp_path / "cold")]) == 0
    return {"store": store, "tmp": tmp_path, "cold": _rows(tmp_path / "cold"), "plain": _rows(tmp_path / "plain")}


def test_a_second_run_reads_the_judgements_and_gives_the_same_rows(runs, monkeypatch):
    n_cases = len({k[0] for k, _ in runs["cold"]})
    assert n_cases == 2 and len(_judgement_entries(runs["store"])) == 2 * n_cases   # numpy's and torch's
    calls = []
    fold = error_stats.fold
    monkeypatch.setattr(error_stats, "fold", lambda *a, **k: calls.append(1) or fold(*a, **k))
    assert main(["run", *SELECT, "--golden-store", str(runs["store"]), "--out", str(runs["tmp"] / "warm")]) == 0
    assert calls == []                   # nothing was folded: every row came from a judgement
    warm = _rows(runs["tmp"] / "warm")
    assert {r["golden_source"] for _, r in warm} == {"store"}
    _same(runs["cold"], [(k, {**r, "golden_source": "computed", "baseline_source": r["baseline_source"] and "computed"})
                         for k, r in warm])
    counts = json.loads((runs["tmp"] / "warm" / "run.json").read_text())["golden_store"]
    assert counts["miss"] == 0 and counts["write"] == 0 and counts["corrupt"] == 0
    # and the same rows as a run with no store at all
    _same(runs["plain"], [(k, {**r, "golden_source": "computed", "baseline_source": r["baseline_source"] and "computed"})
                  for k, r in warm])


def test_other_bits_are_judged_again(runs, monkeypatch):
    """A backend whose output differs by one bit from what was judged gets a judgement of its own."""
    from backends.numpy import NumpyBackend

    run = NumpyBackend.run

    def flipped(self, spec, case, inputs):
        out = run(self, spec, case, inputs)
        dq = np.array(out["dq"])
        dq.view(np.uint16).reshape(-1)[0] ^= 1          # the last bit of the first element
        return {**out, "dq": dq}

    monkeypatch.setattr(NumpyBackend, "run", flipped)
    before = len(_judgement_entries(runs["store"]))
    assert main(["run", *SELECT, "--golden-store", str(runs["store"]), "--out", str(runs["tmp"] / "flip")]) in (0, 1)
    assert len(_judgement_entries(runs["store"])) == before + 2          # numpy's two cases, judged again
    flip = dict(_rows(runs["tmp"] / "flip"))
    cold = dict(runs["cold"])
    sums = ("max_abs_err", "mere", "rmse")           # one bit moves the error sums of its row
    changed = [k for k in flip if k[1] == "numpy" and k[2] == "dq"
               and [flip[k][f] for f in sums] != [cold[k][f] for f in sums]]
    assert len(changed) == 2 and all(flip[k]["golden_source"] == "store" for k in changed)
    assert all(flip[k]["reason"] == cold[k]["reason"] for k in flip if k[1] == "torch")


def test_a_bad_judgement_entry_is_reported_and_judged_again(runs, caplog):
    victim = _judgement_entries(runs["store"])[0]
    key = golden_store.Key(tuple(golden_store.read_key(victim).items()))
    golden_store.GoldenStore(runs["store"]).put(key, {judgements.ROWS: np.frombuffer(b'[{"label": "dq"}]', np.uint8)})
    with caplog.at_level(logging.WARNING, logger="harness.judgements"):
        assert main(["run", *SELECT, "--golden-store", str(runs["store"]), "--out", str(runs["tmp"] / "warm")]) == 0
    assert "bad judgement entry" in caplog.text and victim.name in caplog.text
    counts = json.loads((runs["tmp"] / "warm" / "run.json").read_text())["golden_store"]
    assert counts["corrupt"] == 1 and counts["write"] == 1          # judged again, and stored again
    warm = _rows(runs["tmp"] / "warm")
    _same([(k, {**r, "golden_source": None, "baseline_source": None}) for k, r in runs["cold"]],
          [(k, {**r, "golden_source": None, "baseline_source": None}) for k, r in warm])
    assert golden_build.verify(runs["store"])["bad"] == []


def test_the_key_names_what_a_judgement_depends_on(runs):
    keys = [golden_store.read_key(e) for e in _judgement_entries(runs["store"])]
    spec = registry.op("nsa_selected_attention_grad")
    cases = {c.id: c for c in spec.cases("smoke")}
    goldens = {golden_store.golden_key(spec, c, 0).digest for c in cases.values()}
    baselines = {golden_store.baseline_key(spec, c, 0).digest for c in cases.values()}
    assert all(k["golden"] in goldens and k["code"] == judgements.code() and k["cpu"] == judgements.cpu()
               for k in keys)
    # numpy's regions are judged against the baseline, torch's (it is the baseline) against caps
    assert sorted(k["baseline"] in baselines for k in keys) == [False, False, True, True]
    assert {k["baseline"] for k in keys if k["baseline"] not in baselines} == {""}


def test_small_outputs_keep_no_judgement(tmp_path):
    spec = registry.op("incre_flash_attention")
    outputs = {"attention_out": np.zeros((2, 4, 1, 16), np.float16)}
    store = golden_store.GoldenStore(tmp_path)
    assert judgements.Judgements.of(store, spec, outputs, ["attention_out"], "g" * 64, "") is None
    big = {"attention_out": np.zeros(judgements.MIN_ELEMENTS, np.float16)}
    assert judgements.Judgements.of(store, spec, big, ["attention_out"], "g" * 64, "") is not None
    assert judgements.Judgements.of(None, spec, big, ["attention_out"], "g" * 64, "") is None


def test_prune_keeps_the_judgements_of_live_goldens(runs, capsys):
    store = golden_store.GoldenStore(runs["store"])
    live = _judgement_entries(runs["store"])
    dead = golden_store.Key(tuple({**golden_store.read_key(live[0]), "golden": "0" * 64}.items()))
    store.put(dead, {judgements.ROWS: np.frombuffer(b"[]", np.uint8)})
    old_code = golden_store.Key(tuple({**golden_store.read_key(live[0]), "code": "older"}.items()))
    store.put(old_code, {judgements.ROWS: np.frombuffer(b"[]", np.uint8)})
    digests, unkeyed = golden_prune.live_digests([registry.op("nsa_selected_attention_grad")], ["smoke"], [0])
    s = golden_prune.survey(runs["store"], digests, time.time())
    assert not unkeyed and sorted(s.unreferenced) == sorted([store.path(dead), store.path(old_code)])


def test_rows_come_back_as_kept_nan_and_inf_included(tmp_path):
    spec = registry.op("incre_flash_attention")
    big = {"attention_out": np.zeros(judgements.MIN_ELEMENTS, np.float16)}
    j = judgements.Judgements.of(golden_store.GoldenStore(tmp_path), spec, big, ["attention_out"], "g" * 64, "")
    rows = [{"label": "attention_out", "verdict": "fail", "reason": "ratio inf", "baseline": False,
             "metrics": {"mare_ratio": float("inf"), "mere_ratio": float("nan"), "max_abs_err": 0.1 + 0.2,
                         "numel": 65536, "grade": "L0", "max_ulp": None}}]
    j.keep(rows)
    back = j.read()
    m = dict(back[0]["metrics"])
    assert np.isnan(m.pop("mere_ratio"))
    assert m == {k: v for k, v in rows[0]["metrics"].items() if k != "mere_ratio"}
    assert type(m["numel"]) is int and m["max_abs_err"] == 0.1 + 0.2 and m["mare_ratio"] == float("inf")
    assert {k: v for k, v in back[0].items() if k != "metrics"} == {k: v for k, v in rows[0].items() if k != "metrics"}

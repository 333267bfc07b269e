"""The golden store (harness.golden_store): entries round-trip bit for bit, bad entries (flipped
bits, truncation, another key's manifest) are detected, reported and recomputed, keys follow the
code, and a run through a store gives the rows of a run without one."""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from harness import golden_build, golden_store, registry
from harness.cli import main
from harness.golden_store import BadEntry, GoldenStore, Key, read_entry

SELECT = ["--ops", "nsa_compress_with_cache", "--case", "edge-*", "--no-timing"]


def _key(**kw):
    fields = {"kind": "golden", "op": "x", "params": "{}", "seed": 0, **kw}
    return Key(tuple(sorted(fields.items())))


def _outputs():
    rng = np.random.default_rng(1)
    return {"a": rng.standard_normal((3, 5)),
            "b": rng.standard_normal(7).astype(ml_dtypes.bfloat16),
            "c": rng.integers(-128, 127, (2, 2)).astype(np.int8),
            "empty": np.zeros((0, 4), np.float32)}


def test_round_trip_is_bitwise_and_keeps_dtypes(tmp_path):
    store = GoldenStore(tmp_path)
    k, out = _key(), _outputs()
    assert store.get(k) is None and store.counts["miss"] == 1
    assert store.put(k, out)
    got = store.get(k)
    assert set(got) == set(out)
    for name, a in out.items():
        assert got[name].dtype == a.dtype and got[name].shape == a.shape
        assert got[name].tobytes() == a.tobytes()
    assert store.summary()["hit"] == 1 and store.summary()["write"] == 1
    assert store.path(k).parent.parent == tmp_path / golden_store.LAYOUT


def _flip_data_byte(path: Path) -> None:
    """Flip one byte inside the stored array data of output "a" (not the entry's header)."""
    raw = bytearray(path.read_bytes())
    marker = np.random.default_rng(1).standard_normal((3, 5)).tobytes()[:16]
    at = raw.find(marker)
    assert at > 0
    raw[at + 3] ^= 0x40
    path.write_bytes(bytes(raw))


def test_flipped_bit_is_detected_reported_and_recomputed(tmp_path, caplog):
    store = GoldenStore(tmp_path)
    k = _key()
    store.put(k, _outputs())
    _flip_data_byte(store.path(k))
    with pytest.raises(BadEntry, match="corrupt"):
        read_entry(store.path(k), k)
    calls = []
    with caplog.at_level(logging.WARNING, logger="harness.golden_store"):
        out, source = golden_store.through(store, lambda *a: k, None, None, 0,
                                           lambda: calls.append(1) or _outputs())
    assert source == "computed" and calls == [1]
    assert store.counts["corrupt"] == 1
    assert str(store.path(k)) in caplog.text and "recomputing" in caplog.text
    # the recomputed entry replaced the bad one
    assert read_entry(store.path(k), k)["a"].tobytes() == _outputs()["a"].tobytes()


@pytest.mark.parametrize("keep", [0, 40, 0.5, -30])
def test_truncated_entry_is_corrupt(tmp_path, keep):
    store = GoldenStore(tmp_path)
    k = _key()
    store.put(k, _outputs())
    p = store.path(k)
    raw = p.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(raw) + keep)
    p.write_bytes(raw[:n])
    assert store.get(k) is None
    assert store.counts["corrupt"] == 1 and store.counts["hit"] == 0


def test_entry_of_another_key_is_stale(tmp_path):
    store = GoldenStore(tmp_path)
    a, b = _key(seed=0), _key(seed=1)
    store.put(a, _outputs())
    store.path(b).parent.mkdir(parents=True, exist_ok=True)
    store.path(b).write_bytes(store.path(a).read_bytes())  # copied under the wrong name
    assert store.get(b) is None and store.counts["stale"] == 1
    with pytest.raises(BadEntry, match="stale.*seed"):
        read_entry(store.path(b), b)
    with pytest.raises(BadEntry, match="does not hash to its file name"):
        read_entry(store.path(b), digest=store.path(b).stem)
    assert store.get(a) is not None


def test_object_arrays_are_not_stored(tmp_path):
    store = GoldenStore(tmp_path)
    assert store.put(_key(), {"a": np.array([{"x": 1}], dtype=object)}) is False
    assert store.counts["unstorable"] == 1
    assert golden_store.entries(tmp_path) == []


def test_verify_command_lists_bad_entries(tmp_path, capsys):
    store = GoldenStore(tmp_path)
    store.put(_key(seed=0), _outputs())
    store.put(_key(seed=1), _outputs())
    assert main(["golden", "verify", "--store", str(tmp_path)]) == 0
    assert "2 good entries (2 golden), 0 bad" in capsys.readouterr().out
    bad = store.path(_key(seed=1))
    bad.write_bytes(bad.read_bytes()[:-10])
    assert main(["golden", "verify", "--store", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 good entry (1 golden), 1 bad" in out and str(bad) in out


def test_key_follows_case_seed_and_code(tmp_path, monkeypatch):
    spec = registry.op("paged_cache_load")
    c1, c2 = spec.cases("smoke")[:2]
    k = golden_store.golden_key(spec, c1, 0)
    assert k.digest == golden_store.golden_key(spec, c1, 0).digest
    assert len({k.digest, golden_store.golden_key(spec, c1, 1).digest, golden_store.golden_key(spec, c2, 0).digest,
                golden_store.baseline_key(spec, c1, 0).digest}) == 4
    assert k.as_dict()["numpy"] == np.__version__ and k.as_dict()["ml_dtypes"] == ml_dtypes.__version__
    # a project module imported (lazily) by the golden's module changes the code hash
    for rel, text in {"cases/__init__.py": "", "cases/fake_op.py": "def f():\n    from cases import _helper\n",
                      "cases/_helper.py": "X = 1\n", "backends/__init__.py": "",
                      "backends/numpy/__init__.py": "", "backends/numpy/fake_op.py": "import numpy\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(golden_store, "ROOT", tmp_path)
    monkeypatch.setattr(golden_store, "_closure_cache", {})
    h1 = golden_store.code_hash("backends.numpy.fake_op", "cases.fake_op")
    golden_store._closure_cache.clear()
    assert golden_store.code_hash("backends.numpy.fake_op", "cases.fake_op") == h1
    (tmp_path / "cases/_helper.py").write_text("X = 2\n")
    golden_store._closure_cache.clear()
    assert golden_store.code_hash("backends.numpy.fake_op", "cases.fake_op") != h1
    with pytest.raises(ValueError, match="no project source"):
        golden_store.code_hash("backends.numpy.missing_op")


def _rows(d):
    rows = [json.loads(line) for line in (Path(d) / "results.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["case_id"], r["backend"], r["output"]))


_SAME = ("verdict", "reason", "max_abs_err", "mere", "baseline_ratio", "mare_ratio", "max_ulp", "mismatch_count")


def cold_rows(tmp_path):
    return _rows(tmp_path / "cold")


@pytest.mark.parametrize("ahead", [False, True])    # True: every golden and baseline read ahead on a thread
def test_run_through_a_store_gives_the_same_rows(tmp_path, monkeypatch, caplog, ahead):
    from harness import runner

    monkeypatch.setenv(golden_store.ENV, "")  # restored (unset) afterwards: run sets it
    if ahead:
        monkeypatch.setattr(runner, "READ_AHEAD_MIN_BYTES", 0)
        reads = []
        lookup = golden_store.lookup
        monkeypatch.setattr(golden_store, "lookup",
                            lambda *a: reads.append(threading.current_thread().name) or lookup(*a))
    store = tmp_path / "store"
    assert main(["run", *SELECT, "--out", str(tmp_path / "plain")]) == 0
    assert main(["run", *SELECT, "--golden-store", str(store), "--out", str(tmp_path / "cold")]) == 0
    by_kind = {}
    for e in golden_store.entries(store):
        by_kind.setdefault(golden_store.entry_kind(e), []).append(e)
    entries = by_kind["golden"] + by_kind["baseline"]
    n_all_cases = len({r["case_id"] for r in cold_rows(tmp_path)})
    assert len(by_kind["inputs"]) == n_all_cases   # every case's inputs, negative ones too (harness.input_store)
    plain, cold = _rows(tmp_path / "plain"), _rows(tmp_path / "cold")
    compared = [r for r in cold if r["golden_source"] is not None]
    assert compared and {r["golden_source"] for r in compared} == {"computed"}
    # reductions read the baseline too (exact outputs of the same case do not)
    assert {r["baseline_source"] for r in compared if r["backend"] == "numpy"} == {"computed", None}
    assert {r["baseline_source"] for r in compared if r["backend"] == "torch"} == {None}  # torch is the baseline
    assert [r["golden_source"] for r in plain] == [r["golden_source"] for r in cold]  # computed without a store too
    n_cases = len({r["case_id"] for r in compared})
    assert len(entries) == 2 * n_cases  # a golden and a baseline per compared case (reductions)
    # corrupt one entry: that case is recomputed (and reported), every other output comes from the store
    victim = entries[0]
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    with caplog.at_level(logging.WARNING, logger="harness.golden_store"):
        assert main(["run", *SELECT, "--golden-store", str(store), "--out", str(tmp_path / "warm")]) == 0
    assert str(victim) in caplog.text
    warm = _rows(tmp_path / "warm")
    meta = json.loads((tmp_path / "warm" / "run.json").read_text())
    assert meta["golden_store"]["corrupt"] == 1
    assert meta["golden_store"]["hit"] == 2 * n_cases - 1 + n_all_cases and meta["golden_store"]["write"] == 1
    sources = [(r["golden_source"], r["baseline_source"]) for r in warm if r["golden_source"] is not None]
    assert sum("computed" in s for s in sources) >= 1 and any(s == ("store", "store") for s in sources)
    assert [tuple(r[k] for k in _SAME) for r in warm] == [tuple(r[k] for k in _SAME) for r in plain]
    if ahead:                            # the reads went through the thread: a golden and a baseline per case
        assert sum(name.startswith("opdiff-store-read") for name in reads) == len(reads) >= 2 * 2 * n_cases
    assert golden_build.verify(store) == {"ok": 2 * n_cases + n_all_cases, "bad": [],
                                          "kinds": {"baseline": n_cases, "golden": n_cases, "inputs": n_all_cases}}


def test_build_fills_what_run_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(golden_store.ENV, "")  # restored (unset) afterwards: run sets it
    store = str(tmp_path / "store")
    args = ["golden", "build", "--tier", "smoke", "--ops", "nsa_compress_with_cache", "--case", "edge-*",
            "--store", store, "--jobs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    n = sum(golden_store.entry_kind(e) != "inputs" for e in golden_store.entries(store))
    assert n > 0 and f"{n // 2} computed" in out and f"inputs:    0 already stored, {n // 2} drawn" in out
    assert main(args) == 0
    again = capsys.readouterr().out
    assert f"goldens:   {n // 2} already stored, 0 computed" in again and f"inputs:    {n // 2} already stored" in again
    assert main(["run", *SELECT, "--golden-store", store, "--out", str(tmp_path / "r")]) == 0
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    # the run reads what build wrote, goldens, baselines and the positive cases' inputs; it draws (a miss
    # each) the inputs of the negative cases, which build skips (they have no golden)
    n_neg = sum(c.negative and fnmatch.fnmatchcase(c.id, "edge-*") for c in registry.op("nsa_compress_with_cache").cases("smoke"))
    assert meta["golden_store"]["hit"] == n + n // 2 and meta["golden_store"]["miss"] == n_neg
    assert os.environ[golden_store.ENV] == os.path.abspath(store)


@pytest.mark.slow
def test_parallel_build_over_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(golden_store.ENV, "")  # restored (unset) afterwards: run sets it
    store = tmp_path / "store"
    assert main(["golden", "build", "--tier", "smoke", "--ops", "paged_cache_load", "--store", str(store),
                 "--jobs", "2"]) == 0
    n_pos = sum(not c.negative for c in registry.op("paged_cache_load").cases("smoke"))
    assert golden_build.verify(store) == {"ok": 2 * n_pos, "bad": [], "kinds": {"golden": n_pos, "inputs": n_pos}}

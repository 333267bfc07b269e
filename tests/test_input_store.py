"""Case inputs in the golden store (harness.input_store): every op's inputs come back as drawn (bit for
bit, same dtypes, same plain values and argument order), a bad entry is redrawn, inputs a stored copy
would change (a strided view built on purpose) are never stored, and a run through a warm store gives
the rows of a run without one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness import golden_store, input_store, registry
from harness.cli import main
from harness.dtypes import bits
from harness.golden_store import GoldenStore


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name, x in a.items():
        y = b[name]
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == x.shape, name
            assert np.array_equal(bits(x), bits(y)), name
        else:
            assert type(y) is type(x) and y == x, name


def _first_cases(op, n=6):
    return [c for c in registry.op(op).cases("smoke")][:n]


@pytest.mark.parametrize("op", registry.op_names())
def test_inputs_come_back_as_drawn(tmp_path, op):
    spec, store = registry.op(op), GoldenStore(tmp_path)
    for case in _first_cases(op):
        drawn = input_store.make_inputs(spec, case, 3, store)       # a miss: drawn and written
        again = input_store.make_inputs(spec, case, 3, store)       # a hit: read back
        _same(spec.make_inputs(case, 3), drawn)
        _same(drawn, again)
    assert store.counts["hit"] + store.counts["unstorable"] == len(_first_cases(op))
    assert store.counts["corrupt"] == store.counts["stale"] == 0


def test_a_corrupt_inputs_entry_is_redrawn(tmp_path, caplog):
    spec = registry.op("paged_cache_load")
    case = _first_cases("paged_cache_load", 1)[0]
    store = GoldenStore(tmp_path)
    input_store.make_inputs(spec, case, 0, store)
    path = store.path(input_store.inputs_key(spec, case, 0))
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01                                          # inside the last stored array
    path.write_bytes(bytes(raw))
    got = input_store.make_inputs(spec, case, 0, store)
    _same(spec.make_inputs(case, 0), got)
    assert store.counts["corrupt"] == 1 and store.counts["write"] == 2
    assert "checksum" in caplog.text and str(path) in caplog.text


def test_an_entry_without_values_is_not_taken_for_inputs(tmp_path):
    spec = registry.op("paged_cache_load")
    case = _first_cases("paged_cache_load", 1)[0]
    store = GoldenStore(tmp_path)
    store.put(input_store.inputs_key(spec, case, 0), {"key_cache": np.zeros(3)})   # not what encode writes
    got = input_store.make_inputs(spec, case, 0, store)
    _same(spec.make_inputs(case, 0), got)
    assert store.counts["corrupt"] == 1


def test_unplain_inputs_are_never_stored():
    wide = np.arange(12.0)
    assert input_store.encode({"x": np.frombuffer(bytes(96))[::2]}) is None   # no ndarray owns its memory
    assert input_store.encode({"x": wide, "f": float("nan")}) is None  # JSON has no NaN
    assert input_store.encode({"x": wide, "o": object()}) is None
    enc = input_store.encode({"b": True, "x": wide, "n": None, "l": [1, 2], "s": "BSH", "v": 0.1})
    assert json.loads(enc[input_store.VALUES].tobytes())["order"] == ["b", "x", "n", "l", "s", "v"]
    back = input_store.decode(enc)
    assert back["b"] is True and back["n"] is None and back["l"] == [1, 2] and back["v"] == 0.1
    assert back["x"] is wide


def test_broadcast_inputs_are_stored_as_what_they_broadcast_from(tmp_path):
    """A zero-stride view comes back with its values, shape, strides and read-only flag; a view that is
    strided in another way stays unstorable."""
    row = np.arange(6, dtype=np.float32).reshape(1, 6)
    views = {"rows": np.broadcast_to(row, (1 << 21, 6)), "scalar": np.broadcast_to(np.float32(2.5), (3, 4, 5)),
             "middle": np.broadcast_to(np.arange(4.0).reshape(4, 1, 1), (4, 7, 1))}
    enc = input_store.encode({**views, "plain": np.ones(3)})
    assert enc["rows"].shape == (1, 6) and enc["scalar"].size == 1     # stored small
    back = input_store.decode(enc)
    for name, v in views.items():
        got = back[name]
        assert got.shape == v.shape and got.strides == v.strides and not got.flags.writeable, name
        assert np.array_equal(got, v), name
    # strided and broadcast: not a broadcast of a contiguous array, so stored as the bytes it spans
    odd = np.broadcast_to(np.arange(12.0)[::2], (3, 6))
    got = input_store.decode(input_store.encode({"x": odd}))["x"]
    assert got.strides == odd.strides and np.array_equal(got, odd) and not got.flags.writeable

    spec = registry.op("nsa_selected_attention_grad")               # a negative case of 2M query rows
    case = next(c for c in spec.cases("smoke") if c.id.startswith("neg-t1_range"))
    store = GoldenStore(tmp_path)
    drawn, again = (input_store.make_inputs(spec, case, 0, store) for _ in range(2))
    assert store.counts["write"] == 1 and store.counts["hit"] == 1
    for name, x in drawn.items():
        if isinstance(x, np.ndarray):             # a broadcast one compared on its first rows, not 800 MB of it
            y, part = again[name], (slice(0, 3),) if 0 in x.strides else ()
            assert y.strides == x.strides and y.shape == x.shape and y.dtype == x.dtype, name
            assert np.array_equal(bits(y[part]), bits(x[part])), name


@pytest.mark.parametrize("view", ["reversed", "transposed", "stepped", "window"])
def test_strided_views_come_back_with_their_strides_from_the_bytes_they_span(view):
    owner = np.arange(4 * 12 * 5, dtype=np.int16).reshape(4, 12, 5)
    v = {"reversed": owner[::-1, 1::3], "transposed": owner.T, "stepped": owner[1:3, 2:9:2, ::2],
         "window": np.lib.stride_tricks.sliding_window_view(owner.reshape(-1), 7)[::3]}[view]
    enc = input_store.encode({"x": v, "n": 3})
    kept = enc["x"].nbytes
    assert kept <= owner.nbytes and kept < owner.nbytes or view == "transposed"   # only the span is kept
    got = input_store.decode(enc)["x"]
    assert got.shape == v.shape and got.strides == v.strides and got.dtype == v.dtype
    assert got.flags.writeable == v.flags.writeable and np.array_equal(got, v)


def test_a_strided_view_that_does_not_fit_its_bytes_is_a_corrupt_entry():
    enc = input_store.encode({"x": np.arange(10.0)[::2]})
    meta = json.loads(enc[input_store.VALUES].tobytes())
    meta["strided"]["x"]["shape"] = [50]
    enc[input_store.VALUES] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with pytest.raises(ValueError, match="does not fit its stored bytes"):
        input_store.decode(enc)


def test_noncontiguous_cache_case_is_stored_with_its_strides(tmp_path):
    spec = registry.op("dequant_rope_quant_kvcache")
    case = next(c for c in spec.cases("smoke") if c.params.get("cache_contiguous") is False)
    store = GoldenStore(tmp_path)
    drawn, again = (input_store.make_inputs(spec, case, 0, store) for _ in range(2))
    assert store.counts["write"] == 1 and store.counts["hit"] == 1 and store.counts["unstorable"] == 0
    assert not all(v.flags.c_contiguous for v in again.values() if isinstance(v, np.ndarray))
    for name, x in drawn.items():
        if isinstance(x, np.ndarray):
            y = again[name]
            assert (y.shape, y.strides, y.dtype, y.flags.writeable) == (x.shape, x.strides, x.dtype,
                                                                         x.flags.writeable), name
            assert np.array_equal(bits(y), bits(x)), name


def test_key_follows_the_input_builder_and_seed():
    spec = registry.op("paged_cache_load")
    case = _first_cases("paged_cache_load", 1)[0]
    k0, k1 = input_store.inputs_key(spec, case, 0), input_store.inputs_key(spec, case, 1)
    assert k0.digest != k1.digest and k0.as_dict()["kind"] == "inputs"
    assert k0.digest != golden_store.golden_key(spec, case, 0).digest
    assert k0.as_dict()["code"] == golden_store.code_hash("cases.paged_cache_load")


def test_run_through_a_warm_store_reads_inputs_and_gives_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setenv(golden_store.ENV, "")  # restored afterwards: run names its store there
    sel = ["--ops", "paged_cache_load", "--case", "edge-*", "--no-timing", "--backends", "numpy"]
    rows = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        assert main(["run", *sel, "--golden-store", str(tmp_path / "store"), "--out", str(out)]) == 0
        rows.append([json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()])
        summary = json.loads((out / "run.json").read_text())["golden_store"]
        if i == 1:
            assert summary["miss"] == 0 and summary["hit"] > 0
    drop = ("run_id", "golden_source", "baseline_source", "repro")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows[0]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows[1]]


def test_a_negative_case_the_references_reject_on_params_builds_no_inputs(monkeypatch):
    """numpy and torch reject a case breaking a constraint on its params before they read a tensor:
    run_case hands them inputs built on first use, and none is built; the rows are the ones eager
    inputs give. A backend that does not validate params first gets them built before it runs."""
    from harness import runner
    from harness.timing import TimingConfig

    spec = registry.op("incre_flash_attention")
    case = next(c for c in spec.cases("smoke") if c.negative)
    built = []
    real = input_store.make_inputs
    monkeypatch.setattr(input_store, "make_inputs", lambda *a: built.append(a) or real(*a))
    refs = [registry.backend("numpy"), registry.backend("torch")]
    lazy_rows = runner.run_case(spec, case, refs, "smoke", 0, TimingConfig(enabled=False)).rows
    assert built == [] and {r["verdict"] for r in lazy_rows} == {"rejected"}

    class Device(type(refs[0])):                    # a backend that may read the tensors first
        name = "device-like"
        params_first = False

    eager_rows = runner.run_case(spec, case, refs + [Device()], "smoke", 0, TimingConfig(enabled=False)).rows
    assert len(built) == 1
    assert [r for r in eager_rows if r["backend"] != "device-like"] == lazy_rows


def test_lazy_inputs_build_once_on_any_access():
    calls = []
    lazy = input_store.LazyInputs(lambda: calls.append(1) or {"x": np.ones(2), "n": 3})
    assert not lazy.loaded and calls == []
    assert lazy["n"] == 3 and sorted(lazy) == ["n", "x"] and len(lazy) == 2 and dict(lazy.items())["n"] == 3
    assert lazy.loaded and calls == [1]

"""The golden store's entry file (harness.golden_store, layout v3): float64 outputs stored narrow with a
residual come back bit for bit (NaN payloads, -0.0, infinities, subnormals included), other dtypes are
stored as they are, and a flipped byte anywhere, a truncation or another key's entry is detected,
counted and recomputed through the public API."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from harness import golden_store
from harness.golden_store import PREFIX, BadEntry, GoldenStore, Key, read_entry

N = 4096  # elements of the test arrays: above NARROW_MIN_ELEMENTS, small enough to flip every byte of an entry


def _key(**kw):
    fields = {"kind": "golden", "op": "x", "params": "{}", "seed": 0, **kw}
    return Key(tuple(sorted(fields.items())))


def _bits(*words) -> np.ndarray:
    return np.array(words, np.uint64).view(np.float64)


#: float64 values no narrow float keeps bitwise (or that the store keeps in the residual on purpose)
SPECIAL = _bits(
    0x7FF8000000000000,  # the canonical NaN
    0xFFF8000000000123,  # a negative quiet NaN with a payload
    0x7FF0000000000001,  # a signalling NaN: quieted by any float operation
    0x0000000000000001,  # the smallest float64 subnormal
    0x800FFFFFFFFFFFFF,  # the largest negative float64 subnormal
)
#: float64 values that every narrow float keeps exactly (and that come back with their sign)
EXACT_EVERYWHERE = np.array([-0.0, 0.0, np.inf, -np.inf, 1.0, -2.5, 0.75])


def _with_residual(rng, n=N):
    """Mostly zeros, 2% random (inexact in every narrow float), every SPECIAL and EXACT_EVERYWHERE value."""
    a = np.zeros(n)
    hit = rng.random(n) < 0.02
    a[hit] = rng.standard_normal(int(hit.sum()))
    a[:EXACT_EVERYWHERE.size] = EXACT_EVERYWHERE
    a[100:100 + SPECIAL.size] = SPECIAL
    a[200] = 2.0 ** -20  # subnormal in float16 (the residual there), normal in bfloat16
    a[201] = 1e300  # overflows every narrow float
    return a.reshape(16, 1, n // 16)


def _normal_in_float16(x):
    # a float16 subnormal goes to the residual on purpose (see test_residual_takes_what_the_narrow_dtype_loses)
    return np.where(np.abs(x) < np.finfo(np.float16).tiny, 1.0, x)


FLOAT64_CASES = {
    "zeros": lambda rng: np.zeros((64, 1, 64)),
    "bf16_exact": lambda rng: rng.standard_normal(N).astype(ml_dtypes.bfloat16).astype(np.float64),
    "f16_exact": lambda rng: _normal_in_float16(rng.standard_normal(N)).astype(np.float16).astype(np.float64),
    "f32_exact": lambda rng: rng.standard_normal((8, N // 8)).astype(np.float32).astype(np.float64),
    "residual": _with_residual,
    "random": lambda rng: rng.standard_normal(N),
    "mostly_inexact": lambda rng: np.where(rng.random(N) < 0.5, 0.0, rng.standard_normal(N)),
    "fortran": lambda rng: np.asfortranarray(np.zeros((64, 64))),
    "big_endian": lambda rng: np.zeros(N, ">f8"),
    "small": lambda rng: np.zeros(golden_store.NARROW_MIN_ELEMENTS - 1),
}


def _header(path: Path) -> dict:
    raw = path.read_bytes()
    _, length, _ = PREFIX.unpack_from(raw)
    return json.loads(raw[PREFIX.size:PREFIX.size + length])


def _stored_as(path: Path, name: str) -> tuple[str, int | None]:
    """(the dtype an output's data is stored as, its residual's length or None)."""
    m = _header(path)["outputs"][name]
    return m["data"]["dtype"], (m["index"]["count"] if "index" in m else None)


def _assert_bitwise(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()


@pytest.mark.parametrize("which, stored, residual", [
    ("zeros", "bfloat16", 0),
    ("bf16_exact", "bfloat16", 0),
    ("f16_exact", "<f2", 0),
    ("f32_exact", "<f4", 0),
    ("residual", "bfloat16", None),  # checked below: the random 2% plus every SPECIAL value
    ("random", "<f8", None),
    ("mostly_inexact", "<f8", None),  # half inexact: over the residual limit, stored plain
    ("fortran", "bfloat16", 0),
    ("big_endian", ">f8", None),  # not native float64: stored as it is
    ("small", "<f8", None),  # under NARROW_MIN_ELEMENTS
])
def test_float64_round_trip_is_bitwise(tmp_path, which, stored, residual):
    store, k = GoldenStore(tmp_path), _key()
    a = FLOAT64_CASES[which](np.random.default_rng(3))
    assert store.put(k, {"y": a})
    got = store.get(k)["y"]
    _assert_bitwise(got, a)
    dtype, n_residual = _stored_as(store.path(k), "y")
    assert dtype == stored
    if residual is not None:
        assert n_residual == residual
    if which == "residual":
        # the random 2%, every SPECIAL value and the overflow are in the residual
        assert n_residual >= SPECIAL.size + 1
        assert got.reshape(-1)[100:100 + SPECIAL.size].view(np.uint64).tolist() == \
            SPECIAL.view(np.uint64).tolist()
        assert np.signbit(got.reshape(-1)[0]) and not np.signbit(got.reshape(-1)[1])
    if stored != "<f8" and stored != ">f8":
        assert store.path(k).stat().st_size < a.nbytes / 1.5


def test_residual_takes_what_the_narrow_dtype_loses(tmp_path):
    """float16 keeps more of float16-valued data than bfloat16: the store picks the smaller encoding,
    and NaN / subnormal values are in the residual even where they round-trip."""
    rng = np.random.default_rng(5)
    a = _normal_in_float16(rng.standard_normal(N)).astype(np.float16).astype(np.float64)
    a[7] = SPECIAL[0]  # a canonical NaN round-trips through float16, but the store keeps it aside
    a[8] = 2.0 ** -24  # the smallest float16 subnormal
    n = golden_store.narrowed(a)
    assert n.narrow.dtype == np.float16
    assert n.index.tolist() == [7, 8] and n.index.dtype == np.uint32
    assert n.values.view(np.uint64).tolist() == a[[7, 8]].view(np.uint64).tolist()
    assert golden_store.widened(n.narrow, n.index, n.values).tobytes() == a.tobytes()


@pytest.mark.parametrize("a", [
    np.arange(-64, 64, dtype=np.int8).reshape(8, 16),
    np.arange(1000, dtype=np.uint16),
    np.array([[True, False], [False, True]]),
    np.random.default_rng(1).standard_normal((15, 16, 8)).astype(np.float16),
    np.random.default_rng(1).standard_normal(N).astype(ml_dtypes.bfloat16),
    np.random.default_rng(1).standard_normal(N).astype(np.float32),
    np.arange(N, dtype=np.int64),
    np.zeros((0, 4), np.float64),
    np.float64(-0.0),
    np.array(["ab", "c"]),
], ids=["int8", "uint16", "bool", "float16", "bfloat16", "float32", "int64", "empty", "scalar", "str"])
def test_other_dtypes_are_stored_as_they_are(tmp_path, a):
    store, k = GoldenStore(tmp_path), _key()
    assert store.put(k, {"y": a, "z": np.zeros(N)})
    got = store.get(k)
    _assert_bitwise(got["y"], np.asarray(a))
    _assert_bitwise(got["z"], np.zeros(N))
    dtype, n_residual = _stored_as(store.path(k), "y")
    assert n_residual is None and dtype == golden_store.dtype_tag(np.asarray(a).dtype)


def test_two_writers_write_the_same_bytes():
    outs = {"y": _with_residual(np.random.default_rng(2)), "c": np.arange(5, dtype=np.int8)}
    assert b"".join(golden_store.encode_entry(_key(), outs)) == b"".join(golden_store.encode_entry(_key(), outs))


def _entry(tmp_path) -> tuple[GoldenStore, Key, dict]:
    """A small entry (1.6 KB: every byte can be flipped) with a narrowed output and a plain one."""
    store, k = GoldenStore(tmp_path), _key()
    outs = {"y": _with_residual(np.random.default_rng(4), n=512), "c": np.arange(-3, 3, dtype=np.int8)}
    assert store.put(k, outs)
    return store, k, outs


def test_every_flipped_byte_is_detected(tmp_path):
    """One flipped bit in any byte of the file (prefix, header, padding, narrow data, residual) fails the read."""
    store, k, _ = _entry(tmp_path)
    p = store.path(k)
    good = p.read_bytes()
    undetected = []
    for at in range(len(good)):
        raw = bytearray(good)
        raw[at] ^= 0x10
        p.write_bytes(bytes(raw))
        try:
            read_entry(p, k)
            undetected.append(at)
        except BadEntry:
            pass
    assert undetected == []


def _segment_bytes(path: Path, name: str, role: str) -> int:
    """A file offset inside the bytes of one output's segment."""
    raw = path.read_bytes()
    _, length, _ = PREFIX.unpack_from(raw)
    start = -(-(PREFIX.size + length) // golden_store.ALIGN) * golden_store.ALIGN
    seg = _header(path)["outputs"][name][role]
    return start + seg["at"] + 1


@pytest.mark.parametrize("role", ["data", "index", "values"])
def test_flipped_byte_is_counted_reported_and_recomputed(tmp_path, caplog, role):
    store, k, outs = _entry(tmp_path)
    p = store.path(k)
    raw = bytearray(p.read_bytes())
    raw[_segment_bytes(p, "y", role)] ^= 0x01
    p.write_bytes(bytes(raw))
    calls = []
    with caplog.at_level(logging.WARNING, logger="harness.golden_store"):
        out, source = golden_store.through(store, lambda *a: k, None, None, 0, lambda: calls.append(1) or outs)
    assert source == "computed" and calls == [1]
    assert store.counts["corrupt"] == 1 and store.counts["hit"] == 0
    assert str(p) in caplog.text and f"'y' {role} fails its checksum" in caplog.text
    _assert_bitwise(store.get(k)["y"], outs["y"])  # the recomputed entry replaced the bad one
    assert store.counts["hit"] == 1


@pytest.mark.parametrize("keep", [0, 10, PREFIX.size, 100, 0.5, -1, "appended"])
def test_truncated_or_grown_entry_is_corrupt(tmp_path, caplog, keep):
    store, k, outs = _entry(tmp_path)
    p = store.path(k)
    raw = p.read_bytes()
    if keep == "appended":
        p.write_bytes(raw + b"\0")
    else:
        p.write_bytes(raw[:int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)])
    with caplog.at_level(logging.WARNING, logger="harness.golden_store"):
        out, source = golden_store.through(store, lambda *a: k, None, None, 0, lambda: outs)
    assert source == "computed" and store.counts["corrupt"] == 1
    assert str(p) in caplog.text and "corrupt entry" in caplog.text
    assert store.get(k) is not None


def test_entry_of_another_key_is_stale_and_recomputed(tmp_path, caplog):
    store, k, outs = _entry(tmp_path)
    other = _key(seed=7)
    store.path(other).parent.mkdir(parents=True, exist_ok=True)
    store.path(other).write_bytes(store.path(k).read_bytes())
    with caplog.at_level(logging.WARNING, logger="harness.golden_store"):
        out, source = golden_store.through(store, lambda *a: other, None, None, 0, lambda: outs)
    assert source == "computed" and store.counts["stale"] == 1
    assert str(store.path(other)) in caplog.text and "differs in seed" in caplog.text
    assert read_entry(store.path(other), other)["c"].tobytes() == outs["c"].tobytes()


def test_old_layout_and_unfinished_writes_are_not_entries(tmp_path):
    store, k, _ = _entry(tmp_path)
    v1 = tmp_path / "v1" / store.path(k).parent.name / f"{k.digest}.npz"
    v1.parent.mkdir(parents=True)
    v1.write_bytes(b"PK\x03\x04 an old entry")
    (store.path(k).parent / ".tmp-abc.part").write_bytes(b"half written")
    assert golden_store.entries(tmp_path) == [store.path(k)]
    assert GoldenStore(tmp_path / "empty").get(k) is None

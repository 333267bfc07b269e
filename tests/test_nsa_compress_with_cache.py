"""nsa_compress_with_cache: trigger rule, page-crossing windows, RNE cast, bitwise untouched rows,
case coverage of the tiers, and rejection of every negative case by both references."""
from __future__ import annotations

import numpy as np
import pytest

from backends.numpy.nsa_compress_with_cache import golden
from backends.torch import TorchBackend, to_numpy, to_torch
from backends.torch.nsa_compress_with_cache import reference
from cases.nsa_compress_with_cache import BUDGET, LEGAL_PAIRS, SPEC, triggered, written_rows
from harness import registry
from harness.dtypes import bits, cast
from harness.errors import ConstraintViolation
from harness.runner import run_case
from harness.timing import TimingConfig

NO_TIMING = TimingConfig(enabled=False)


def _inputs(dtype="float16", page=64, cbs=32, stride=16, act=(48,), n=2, d=16, nb=4, rows=None, seed=0):
    """Hand-built inputs: batch b reads blocks [b*mb, (b+1)*mb) in reverse order, so logical order
    differs from physical order and a wrong page lookup shows."""
    rng = np.random.default_rng(seed)
    B = len(act)
    mb = nb // B
    bt = np.stack([np.arange(b * mb, (b + 1) * mb)[::-1] for b in range(B)]).astype(np.int32)
    rows = rows or ((nb * page - cbs) // stride + 1)
    return {
        "input": cast(rng.uniform(-5, 5, (nb, page, n, d)), dtype),
        "weight": cast(rng.uniform(-1, 1, (cbs, n)), dtype),
        "slot_mapping": rng.permutation(rows)[:B].astype(np.int32),
        "compress_block_size": cbs, "compress_stride": stride, "page_block_size": page,
        "block_table": bt, "actual_seq_len": list(act), "cache": cast(rng.uniform(-5, 5, (rows, n, d)), dtype),
    }


def _loop_golden(inputs):
    """Per batch, per token: the doc formula written as plainly as possible (ops.md#1 Golden)."""
    out = inputs["cache"].astype(np.float64)
    cbs, st, page = inputs["compress_block_size"], inputs["compress_stride"], inputs["page_block_size"]
    for b, s in enumerate(inputs["actual_seq_len"]):
        if s < cbs or (s - cbs) % st:
            continue
        acc = 0.0
        for j, p in enumerate(range(s - cbs, s)):
            tok = inputs["input"][inputs["block_table"][b, p // page], p % page].astype(np.float64)
            acc = acc + tok * inputs["weight"][j].astype(np.float64)[:, None]
        out[inputs["slot_mapping"][b]] = acc
    return out


def _torch_ref(inputs):
    dev = {k: to_torch(v, "cpu") for k, v in inputs.items()}
    return to_numpy(reference({}, dev, "cpu")["cache"])


def test_trigger_rule():
    lens = [0, 15, 31, 32, 33, 47, 48, 64, 80, 81, 96]
    got = triggered(lens, 32, 16)
    want = [s >= 32 and (s - 32) % 16 == 0 for s in lens]
    assert got.tolist() == want
    assert triggered([64, 112, 128, 160], 64, 48).tolist() == [True, True, False, True]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("page,cbs,stride,act", [
    (64, 64, 48, (160, 112, 64, 10)),     # windows [96,160) and [48,112) cross page 64/128 boundaries
    (128, 48, 16, (176, 48, 47, 100)),    # [128,176) page-aligned, [0,48) first page, two idle batches
    (64, 32, 16, (80, 96, 128, 33)),      # [48,80) crosses 64; [64,96) and [96,128) do not
])
def test_golden_and_torch_match_a_plain_loop(dtype, page, cbs, stride, act):
    inputs = _inputs(dtype, page, cbs, stride, act, nb=16)
    want = _loop_golden(inputs)
    g = golden({}, inputs)["cache"]
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)
    t = _torch_ref(inputs).astype(np.float64)
    trig = triggered(act, cbs, stride)
    rows = inputs["slot_mapping"][trig]
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    # fp32 accumulation then one RNE cast: within one output ulp of the exact sum
    assert np.all(np.abs(t[rows] - want[rows]) <= ulp * np.maximum(np.abs(want[rows]), 2.0**-14))
    untouched = np.setdiff1d(np.arange(want.shape[0]), rows)
    assert np.array_equal(bits(_torch_ref(inputs)[untouched]), bits(inputs["cache"][untouched]))


def test_page_lookup_goes_through_block_table():
    """Swapping two block-table entries moves the window to other physical blocks: the result changes."""
    inputs = _inputs(page=64, cbs=64, stride=48, act=(112,), nb=2)
    a = golden({}, inputs)["cache"]
    inputs["block_table"] = inputs["block_table"][:, ::-1].copy()
    b = golden({}, inputs)["cache"]
    slot = inputs["slot_mapping"][0]
    assert not np.allclose(a[slot], b[slot])


@pytest.mark.parametrize("dtype,lo,hi,want", [
    # 1 + 2^-11 is halfway between fp16 1 and 1 + 2^-10: even mantissa wins (1.0); away-from-zero would not
    ("float16", 1.0, 2.0**-11, 1.0),
    ("float16", 1.0 + 2.0**-10, 2.0**-11, 1.0 + 2.0**-9),
    ("bfloat16", 1.0, 2.0**-8, 1.0),
    ("bfloat16", 1.0 + 2.0**-7, 2.0**-8, 1.0 + 2.0**-6),
])
def test_cast_back_rounds_to_nearest_even(dtype, lo, hi, want):
    inputs = _inputs(dtype, page=64, cbs=16, stride=16, act=(16,), n=1, d=16, nb=1)
    x = np.zeros((1, 64, 1, 16))
    x[0, 0], x[0, 1] = lo, hi                      # two window tokens; the rest are zero
    inputs["input"] = cast(x, dtype)
    inputs["weight"] = cast(np.ones((16, 1)), dtype)
    slot = inputs["slot_mapping"][0]
    t = _torch_ref(inputs)[slot].astype(np.float64)
    n = registry.backend("numpy").fetch({"spec": SPEC, "case": SPEC.case(dtype=dtype),
                                         "out": golden({}, inputs)})["cache"][slot].astype(np.float64)
    assert np.all(t == want) and np.all(n == want)


def test_torch_reference_leaves_its_inputs_alone():
    inputs = _inputs(act=(48, 64))
    dev = {k: to_torch(v, "cpu") for k, v in inputs.items()}
    before = dev["cache"].clone()
    reference({}, dev, "cpu")
    assert bool((dev["cache"] == before).all())


class _Corrupting(TorchBackend):
    """The torch reference with one element of one output row nudged by its lowest bit."""

    def __init__(self, pick):
        super().__init__("cpu")
        self.name, self.pick = "corrupt", pick

    def fetch(self, prepared):
        out = super().fetch(prepared)["cache"].copy()
        finite = np.isfinite(out[:, 0, 0].astype(np.float64))   # a flipped NaN bit would still be NaN
        row = next(r for r in self.pick(prepared["case"].params, prepared["inputs"], out.shape[0]) if finite[r])
        u = out.view(np.uint16)
        u[row, 0, 0] ^= 1
        return {"cache": out}


def _written(params, inputs) -> set:
    return set(written_rows(params, {k: (to_numpy(v) if hasattr(v, "detach") else v) for k, v in inputs.items()}))


def _untouched_rows(params, inputs, rows):
    return [r for r in range(rows) if r not in _written(params, inputs)]


def _written_row(params, inputs, rows):
    return min(_written(params, inputs))


def _verdicts(res):
    return {r["output"]: r["verdict"] for r in res.rows}


def test_one_bit_in_an_untouched_row_fails_the_untouched_region():
    case = SPEC.case(dtype="bfloat16", trigger="mixed", batch=3, num_heads=2, head_dim=16)
    clean = run_case(SPEC, case, [registry.backend("torch")], "smoke", 0, NO_TIMING)
    assert _verdicts(clean) == {"cache[written]": "pass", "cache[untouched]": "pass"}
    bad = run_case(SPEC, case, [_Corrupting(_untouched_rows)], "smoke", 0, NO_TIMING)
    v = _verdicts(bad)
    # a one-ulp change would pass an elementwise rule; the untouched rows are judged bitwise
    assert v["cache[untouched]"] == "fail" and v["cache[written]"] == "pass"
    row = next(r for r in bad.rows if r["output"] == "cache[untouched]")
    assert row["mismatch_count"] == 1 and "bitwise" in row["reason"]


def test_garbage_in_a_written_row_fails_the_written_region():
    case = SPEC.case(dtype="float16", trigger="all", batch=2, num_heads=2, head_dim=16)

    class _Zeroing(TorchBackend):
        name = "zeroing"

        def fetch(self, prepared):
            out = super().fetch(prepared)["cache"].copy()
            out[_written_row(prepared["case"].params, prepared["inputs"], out.shape[0])] += 1
            return {"cache": out}

    v = _verdicts(run_case(SPEC, case, [_Zeroing()], "smoke", 0, NO_TIMING))
    assert v == {"cache[written]": "fail", "cache[untouched]": "pass"}


def test_no_trigger_returns_the_cache_bit_for_bit():
    case = SPEC.case(trigger="none", batch=4)
    inputs = SPEC.make_inputs(case)
    assert not triggered(inputs["actual_seq_len"], case.params["compress_block_size"],
                         case.params["compress_stride"]).any()
    out = registry.backend("torch").run(SPEC, case, inputs)["cache"]
    assert np.array_equal(bits(out), bits(inputs["cache"]))        # NaN payloads, -0.0 and infs included
    assert np.isnan(inputs["cache"].astype(np.float64)).any()


def _crosses(case) -> bool:
    p = case.params
    inputs = SPEC.make_inputs(case)
    s = np.asarray(inputs["actual_seq_len"])[triggered(inputs["actual_seq_len"], p["compress_block_size"],
                                                        p["compress_stride"])]
    return bool(((s - p["compress_block_size"]) // p["page_block_size"] != (s - 1) // p["page_block_size"]).any())


@pytest.mark.parametrize("tier", ["smoke", "nightly"])
def test_tier_covers_the_required_cases(tier):
    pos = [c.params for c in SPEC.cases(tier) if not c.negative]
    assert {p["trigger"] for p in pos} == {"none", "mixed", "all"}
    assert {p["dtype"] for p in pos} == {"float16", "bfloat16"}
    assert {p["page_block_size"] for p in pos} == {64, 128}
    assert any(p["num_heads"] % 2 and p["num_heads"] <= 50 for p in pos)
    assert any(p["num_heads"] % 2 == 0 and 51 <= p["num_heads"] <= 64 for p in pos)
    assert any(p["num_heads"] == 64 for p in pos) and any(p["head_dim"] == 256 for p in pos)
    assert any(_crosses(c) for c in SPEC.cases(tier) if not c.negative)
    if tier == "nightly":
        assert {(p["compress_block_size"], p["compress_stride"]) for p in pos} == set(LEGAL_PAIRS)
        assert any(p["num_heads"] == 64 and p["head_dim"] == 256 and p["trigger"] == "all" for p in pos)


def test_every_constraint_has_an_edge_and_a_negative_case():
    from harness.derive import exercised

    for name, (pos, neg) in exercised(SPEC, SPEC.cases("nightly")).items():
        assert pos >= 1 and neg >= 1, name


def test_smoke_cases_stay_small():
    for c in SPEC.cases("smoke"):
        if c.negative:
            continue
        x = SPEC.make_inputs(c)["input"]
        # one block of the largest head shape (64 x 256) at page 128 is the floor of a valid case
        assert x.size <= max(BUDGET["smoke"], 128 * 64 * 256), c.id


@pytest.mark.parametrize("case", [c for c in SPEC.cases("nightly") if c.negative], ids=lambda c: c.id)
def test_references_reject_negative_cases_naming_the_constraint(case):
    inputs = SPEC.make_inputs(case)
    with pytest.raises(ConstraintViolation) as e:
        registry.backend("numpy").golden(SPEC, case, inputs)
    assert e.value.constraint == case.violates
    with pytest.raises(ConstraintViolation) as e:
        registry.backend("torch").prepare(SPEC, case, inputs)
    assert e.value.constraint == case.violates

"""Official shapes and kernel pins (issue 19): named cases are validated data, and each pin fails
when the numpy golden adopts the official golden's behaviour that it guards against.

The official-golden variants below are written from real_interfaces.md section 3 (what Huawei's
published goldens do where the kernel does otherwise); each wraps or replaces one piece of the numpy
golden, the torch reference keeps the kernel's behaviour, so the pinned case must then fail.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.numpy import dequant_rope_quant_kvcache as drqk
from backends.numpy import incre_flash_attention as ifa
from backends.numpy import nsa_selected_attention_grad as nsag
from harness import derive, registry
from harness.errors import SpecError
from harness.runner import run_case
from harness.spec import official
from harness.timing import TimingConfig

NO_TIMING = TimingConfig(enabled=False)
IFA_GOLDEN = ifa.golden          # the real one: a variant wraps it while the module's is replaced
PER_OP_MIN = {"paged_cache_load": 18, "dequant_rope_quant_kvcache": 3, "incre_flash_attention": 5,
              "nsa_compress_with_cache": 10, "nsa_selected_attention_grad": 7}


def _case(op: str, case_id: str, tier: str = "smoke"):
    spec = registry.op(op)
    return spec, next(c for c in spec.cases(tier) if c.id == case_id)


def _verdicts(spec, case, seed: int = 0) -> dict:
    res = run_case(spec, case, [registry.backend("torch")], "smoke", seed, NO_TIMING)
    return {r["output"] + ("" if r["ok"] else "!"): r["verdict"] for r in res.rows}


def _ok(spec, case) -> bool:
    verdicts = _verdicts(spec, case)
    assert "error" not in verdicts.values(), verdicts     # a pin must fail on values, never by crashing
    return all(not k.endswith("!") for k in verdicts)


# ---- named cases are data, validated once ----------------------------------------------------
@pytest.mark.parametrize("op", sorted(PER_OP_MIN))
def test_every_named_case_runs_in_every_tier_with_its_cited_source(op):
    spec = registry.op(op)
    n_official = sum(n.kind == "official" for n in spec.named)
    assert n_official >= PER_OP_MIN[op]
    for tier in ("smoke", "nightly"):
        named = [c for c in spec.cases(tier) if c.origin in ("official", "pin")]
        assert len(named) == len(spec.named)
        assert len({c.id for c in spec.cases(tier)}) == len(spec.cases(tier))       # ids stay unique
    by_name = {n.name: n for n in spec.named}
    for case in spec.cases("nightly"):
        if case.origin in ("official", "pin"):
            n = by_name[case.id.split("-", 1)[1]]
            assert all(case.params[k] == v for k, v in n.params.items())           # nightly: the full shape
            assert case.violates == n.violates and n.source


def test_smoke_runs_the_reduced_form():
    spec, case = _case("nsa_selected_attention_grad", "official-ut_decode_b64_dv192_sparse0-reduced")
    assert case.params["q_lens"] == [1, 1] and case.params["select_block_count"] == 4
    _, full = _case("nsa_selected_attention_grad", "official-ut_decode_b64_dv192_sparse0", "nightly")
    assert len(full.params["q_lens"]) == 64


def _with(spec, *named):
    return dataclasses.replace(spec, named=named)


def test_an_official_shape_breaking_a_constraint_is_a_spec_error():
    spec = registry.op("dequant_rope_quant_kvcache")
    bad = _with(spec, official("too_wide", "a made-up doc", num_q_heads=63, num_kv_heads=1, head_dim=64))
    with pytest.raises(SpecError, match=r"too_wide.*breaks \['hidden_max_4096'\]"):
        derive.named_cases(bad, "nightly")
    wrong = _with(spec, official("wrong_claim", "a made-up doc", violates="cache_int8", note="n",
                                 num_q_heads=63, num_kv_heads=1, head_dim=64))
    with pytest.raises(SpecError, match="declared \\['cache_int8'\\]"):
        derive.named_cases(wrong, "smoke")
    typo = _with(spec, official("typo", "a made-up doc", head_dims=64))
    with pytest.raises(SpecError, match="unknown params \\['head_dims'\\]"):
        derive.named_cases(typo, "smoke")
    with pytest.raises(SpecError, match="needs a note"):
        official("no_note", "doc", violates="cache_int8")


def test_a_documented_but_rejected_shape_runs_as_a_negative_of_its_constraint():
    spec, case = _case("incre_flash_attention", "official-v4_doc_antiquant_scale_fp32")
    assert case.negative and case.violates == "antiquant_dtype" and case.params["antiquant_dtype"] == "float32"
    res = run_case(spec, case, [registry.backend("numpy"), registry.backend("torch")], "smoke", 0, NO_TIMING)
    assert {r["verdict"] for r in res.rows} == {"rejected"} and all("antiquant_dtype" in r["reason"] for r in res.rows)


def test_the_flat_quant_scales_of_the_seed_example_are_valid():
    spec, case = _case("dequant_rope_quant_kvcache", "official-seed_example_b320-reduced")
    inputs = spec.make_inputs(case)
    assert inputs["scale_k"].shape == (128,) and inputs["offset_v"].shape == (128,)
    spec.validate(case.params, inputs)
    neg = next(c for c in spec.cases("smoke") if c.violates == "quant_param_shape")
    with pytest.raises(Exception, match="quant_param_shape"):
        spec.validate(neg.params, spec.make_inputs(neg))


def test_list_shows_official_counts(capsys):
    from harness.cli import main

    assert main(["list", "--op", "paged_cache_load"]) == 0
    out = capsys.readouterr().out
    assert "official shapes: 18 (nightly 18, smoke 18, 17 reduced)" in out and "atb_csv_nz_int8" in out


# ---- kernel pins: the official golden's behaviour, adopted by the numpy golden, fails them -----
def _lone_offset_applied(params, inputs):
    """ST executor: a lone offset is applied (the tiling drops it, tiling.cpp:263-266)."""
    given = {k: inputs.get(k) for k in ("offset_k", "offset_v")}
    zero = np.zeros_like(next(v for v in given.values() if v is not None))
    return drqk.compute(params, dict(inputs, **{k: zero if v is None else v for k, v in given.items()}))


def _negative_index_written(params, inputs):
    """ST executor: cache.view(-1, Nkv, D)[i] = quant[t] token by token, Python negative indexing."""
    out = drqk.compute(params, inputs)
    y, (_, _, _, nkv, d) = drqk.quant_inputs(inputs), drqk.dims(inputs)
    idx = np.asarray(inputs["indices"]).astype(np.int64).ravel()
    for name in ("k", "v"):
        flat = np.array(inputs[f"{name}_cache"], copy=True).reshape(-1, nkv, d)
        q = drqk.quantize(y[name])
        for t, i in enumerate(idx):
            flat[i] = q[t]            # IndexError below -C1*C2, as in the executor
        out[f"{name}_cache"] = flat.reshape(np.asarray(inputs[f"{name}_cache"]).shape)
    return out


def _whole_output_zeroed(params, inputs):
    """FIA ST executor (IFA branch): any batch's left padding overflowing zeroes the whole output."""
    out = IFA_GOLDEN(params, inputs)
    if (ifa.geometry(inputs).lo < 0).any():
        out = {k: np.zeros_like(v) for k, v in out.items()}
    return out


def _unscaled(params, inputs):
    """IFA V4 ST executor: scale_value is never applied."""
    return IFA_GOLDEN(params, dict(inputs, scale_value=1.0))


PINS = [
    ("dequant_rope_quant_kvcache", "pin-lone_offset_k", _lone_offset_applied),
    ("dequant_rope_quant_kvcache", "pin-lone_offset_v", _lone_offset_applied),
    ("dequant_rope_quant_kvcache", "pin-page_negative_indices", _negative_index_written),
    ("incre_flash_attention", "pin-kv_pad_overflow_one_batch", _whole_output_zeroed),
    ("incre_flash_attention", "pin-kv_pad_overflow_int8_out", _whole_output_zeroed),
]


def test_v4_executor_pin_fails_with_its_scale_and_its_multiplicative_mask(monkeypatch):
    spec, case = _case("incre_flash_attention", "pin-v4_executor_scale_and_mask")
    assert _ok(spec, case), _verdicts(spec, case)
    inputs = spec.make_inputs(case)
    mask = np.asarray(inputs["atten_mask"])
    assert mask.any() and not mask.all() and case.params["scale_value"] != 1.0
    real = IFA_GOLDEN(case.params, inputs)["attention_out"]
    assert np.abs(_unscaled(case.params, inputs)["attention_out"] - real).max() > 1e-2
    monkeypatch.setattr(ifa, "golden", _unscaled)
    assert not _ok(spec, case), _verdicts(spec, case)
    monkeypatch.setattr(ifa, "golden", IFA_GOLDEN)
    monkeypatch.setattr(ifa, "MASK_FILL", 0.0)          # qk *= (1 - mask): a masked score becomes 0
    assert np.abs(ifa.golden(case.params, inputs)["attention_out"] - real).max() > 1e-2
    assert not _ok(spec, case), _verdicts(spec, case)


@pytest.mark.parametrize("op,case_id,variant", PINS, ids=[p[1] for p in PINS])
def test_pin_fails_when_the_golden_adopts_the_official_behaviour(op, case_id, variant, monkeypatch):
    spec, case = _case(op, case_id)
    assert _ok(spec, case), _verdicts(spec, case)                      # the kernel's behaviour passes
    inputs = spec.make_inputs(case)
    real = registry.backend("numpy").golden(spec, case, inputs)
    changed = variant(case.params, inputs)
    assert any(not np.array_equal(np.asarray(real[k]), np.asarray(changed[k])) for k in real)   # not vacuous
    mod = __import__(f"backends.numpy.{op}", fromlist=["golden"])
    monkeypatch.setattr(mod, "golden", variant)
    assert not _ok(spec, case), _verdicts(spec, case)


def test_nsa_late_query_pin_fails_with_the_op_plugin_test_mask(monkeypatch):
    spec, case = _case("nsa_selected_attention_grad", "pin-late_queries_causal")
    p = case.params
    sel = p["select_block_count"] * p["select_block_size"]
    assert max(p["q_lens"]) > sel + p["select_block_size"]                     # queries well past count*bs
    assert _ok(spec, case), _verdicts(spec, case)
    inputs = spec.make_inputs(case)
    real = nsag.golden(p, inputs)

    def op_plugin_mask(rel, s1):    # s1 >= count*bs: natural positions > count*bs masked (test file, atten_msk)
        return rel > np.where(s1 < sel, s1, sel)[:, None, None]

    monkeypatch.setattr(nsag, "causal_mask", op_plugin_mask)
    assert np.abs(nsag.golden(p, inputs)["dq"] - real["dq"]).max() > 1e-3
    assert not _ok(spec, case), _verdicts(spec, case)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(PER_OP_MIN))
def test_every_nightly_named_case_passes_on_numpy_and_torch(op):
    spec = registry.op(op)
    backends = [registry.backend("numpy"), registry.backend("torch")]
    for case in [c for c in spec.cases("nightly") if c.origin in ("official", "pin")]:
        res = run_case(spec, case, backends, "nightly", 0, NO_TIMING)
        assert all(r["ok"] for r in res.rows), (case.id, [(r["backend"], r["verdict"], r["reason"]) for r in res.rows])

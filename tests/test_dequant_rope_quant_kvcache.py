"""dequant_rope_quant_kvcache: semantics pinned by hand-made inputs, the rounding mode, the one-offset
rule, bias order, page padding, the precision path of the torch reference, and the constraints."""
from __future__ import annotations

import numpy as np
import pytest

from backends.numpy.dequant_rope_quant_kvcache import compute, dequant, quant_inputs
from cases.dequant_rope_quant_kvcache import write_rows
from backends.torch import to_numpy, to_torch
from backends.torch.dequant_rope_quant_kvcache import reference
from harness import derive, registry
from harness.compare import compare
from harness.dtypes import cast
from harness.errors import ConstraintViolation

OP = "dequant_rope_quant_kvcache"
SPEC = registry.op(OP)


def make(seed=0, **params):
    case = SPEC.case(**params)
    return case, SPEC.make_inputs(case, seed)


def torch_out(case, inputs):
    return registry.backend("torch").run(SPEC, case, inputs)


def torch_direct(inputs):
    return {k: to_numpy(v) for k, v in reference({}, {k: to_torch(v, "cpu") for k, v in inputs.items()}, "cpu").items()}


def hand_inputs(k_vals, cos_val, sin_val, dtype="float16"):
    """B=1, 2-D x, Nq=2, Nkv=1, D=16 (H=64); q = 0..31 / 8, k = k_vals, v = -k_vals; scale 0.5."""
    d = 16
    q = np.arange(32) / 8.0
    x = np.concatenate([q, k_vals, -k_vals])[None, :]
    return {
        "x": cast(x, dtype), "cos": cast(np.full((1, d), cos_val), dtype), "sin": cast(np.full((1, d), sin_val), dtype),
        "k_cache": np.full((2, 2, 1, d), 7, np.int8), "v_cache": np.full((2, 2, 1, d), 7, np.int8),
        "indices": np.array([1], np.int32), "scale_k": np.full((1, d), 0.5, np.float32),
        "scale_v": np.full((1, d), 0.5, np.float32), "size_splits": [32, 16, 16],
        "offset_k": None, "offset_v": None, "weight_scale": None, "activation_scale": None, "bias": None,
        "quant_mode": 0, "input_layout": "BSND", "kv_output": True, "cache_mode": "contiguous",
    }


# k/0.5 = 2.5 3.5 -2.5 -3.5 0.5 1.5 200 -200 1 0 -0.5 4.5 5.5 -1.5 127.5 -128.5
K_VALS = np.array([1.25, 1.75, -1.25, -1.75, 0.25, 0.75, 100, -100, 0.5, 0, -0.25, 2.25, 2.75, -0.75, 63.75, -64.25])
K_INT8 = np.array([2, 4, -2, -4, 0, 2, 127, -128, 1, 0, 0, 4, 6, -2, 127, -128], np.int8)  # ties to even, saturated


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("impl", ["golden", "torch"])
def test_hand_example_identity_rotation(impl, dtype):
    inputs = hand_inputs(K_VALS, 1.0, 0.0, dtype)
    out = compute({}, inputs) if impl == "golden" else torch_direct(inputs)
    np.testing.assert_array_equal(np.asarray(out["q_out"], np.float64).ravel(), np.arange(32) / 8.0)
    np.testing.assert_array_equal(out["k_cache"][0, 1, 0], K_INT8)          # contiguous: cache[b, idx[b]]
    np.testing.assert_array_equal(out["v_cache"][0, 1, 0], [-2, -4, 2, 4, 0, -2, -128, 127, -1, 0, 0, -4, -6, 2, -128, 127])
    untouched = np.ones((2, 2), bool)
    untouched[0, 1] = False
    assert (out["k_cache"][untouched] == 7).all() and (out["v_cache"][untouched] == 7).all()


@pytest.mark.parametrize("impl", ["golden", "torch"])
def test_hand_example_quarter_turn_is_neox_rotate_half(impl):
    inputs = hand_inputs(K_VALS, 0.0, 1.0)
    out = compute({}, inputs) if impl == "golden" else torch_direct(inputs)
    q = (np.arange(32) / 8.0).reshape(2, 16)
    want = np.concatenate([-q[:, 8:], q[:, :8]], -1)   # rotate_half, not interleaved pairs
    np.testing.assert_array_equal(np.asarray(out["q_out"], np.float64).reshape(2, 16), want)
    k_rot = np.concatenate([-K_VALS[8:], K_VALS[:8]])
    np.testing.assert_array_equal(out["k_out"].astype(np.float64).ravel(), k_rot)


TIE_PATHS = [dict(x_dtype="float16"), dict(x_dtype="bfloat16"), dict(x_dtype="int32", cos_dtype="float16"),
             dict(x_dtype="int32", cos_dtype="bfloat16", bias_dtype="float16", has_activation_scale=True)]


@pytest.mark.parametrize("path", TIE_PATHS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_ties_away_rounding_is_caught(path):
    case, inputs = make(ties=True, offsets="both", x_rank=3, batch=2, seq_len=3, cache_mode="contiguous", **path)
    g = compute(case.params, inputs)
    away = compute(case.params, inputs, rounding="away")
    tok, _ = write_rows(inputs)
    for name in ("k", "v"):   # build_inputs makes every written element an exact .5 tie
        y = quant_inputs(inputs)[name][tok]
        assert y.size > 20 and np.all(np.abs(y - np.floor(y)) == 0.5)
    verdicts, written = {}, {}
    for out in ("k_cache", "v_cache"):
        for region in SPEC.output_regions(case.params, inputs, out):
            verdicts[region.label] = compare(away[out][region.mask], g[out][region.mask], region.rule).verdict
            written[region.label] = region.mask
    assert verdicts == {"k_cache[untouched]": "pass", "k_cache[ties]": "fail",
                        "v_cache[untouched]": "pass", "v_cache[ties]": "fail"}
    # quant_int8 alone (|diff| <= 1) would let ties-away through: the ties rule is what catches it
    m = written["k_cache[ties]"]
    assert compare(away["k_cache"][m], g["k_cache"][m], SPEC.rules["k_cache"]).verdict != "fail"
    t = torch_out(case, inputs)
    for out in ("k_cache", "v_cache"):                  # every path is exact on tie inputs: bitwise
        np.testing.assert_array_equal(t[out], g[out])


@pytest.mark.parametrize("offsets", ["k_only", "v_only"])
def test_a_single_offset_is_ignored(offsets):
    case, inputs = make(offsets=offsets, x_dtype="float16", kv_output=True)
    none = dict(inputs, offset_k=None, offset_v=None)
    both_case, both = make(offsets="both", x_dtype="float16", kv_output=True)
    for impl in (compute, lambda p, i: torch_out(case, i)):
        a, b = impl(case.params, inputs), impl(case.params, none)
        np.testing.assert_array_equal(a["k_cache"], b["k_cache"])
        np.testing.assert_array_equal(a["v_cache"], b["v_cache"])
    # and both offsets together do shift the result (the check above is not vacuous)
    g_both = compute(both_case.params, both)
    g_none = compute(both_case.params, dict(both, offset_k=None, offset_v=None))
    assert (g_both["k_cache"] != g_none["k_cache"]).any() and (g_both["v_cache"] != g_none["v_cache"]).any()


def test_int32_bias_is_added_before_the_cast_float_bias_after_scaling():
    case, inputs = make(x_dtype="int32", bias_dtype="int32", has_activation_scale=True, kv_output=True)
    folded = dict(inputs, x=(inputs["x"] + inputs["bias"]).astype(np.int32), bias=None)
    np.testing.assert_array_equal(dequant(inputs), dequant(folded))
    t1, t2 = torch_out(case, inputs), torch_out(case, folded)
    for k in ("q_out", "k_out", "k_cache", "v_cache"):
        np.testing.assert_array_equal(t1[k], t2[k])
    case, inputs = make(x_dtype="int32", bias_dtype="bfloat16", has_activation_scale=True)
    plain = dequant(dict(inputs, bias=None))
    np.testing.assert_allclose(dequant(inputs), plain + inputs["bias"].astype(np.float64), rtol=0, atol=1e-12)
    assert not np.allclose(dequant(inputs), (inputs["x"] + inputs["bias"].astype(np.float64)).reshape(plain.shape)
                           * inputs["weight_scale"] * inputs["activation_scale"].reshape(-1, 1))


def test_float_x_ignores_dequant_arguments():
    case, inputs = make(x_dtype="bfloat16", bias_dtype="float32", has_weight_scale=True, has_activation_scale=True)
    assert inputs["bias"] is not None and inputs["weight_scale"] is not None
    bare = dict(inputs, bias=None, weight_scale=None, activation_scale=None)
    for k in SPEC.outputs:
        np.testing.assert_array_equal(compute(case.params, inputs)[k], compute(case.params, bare)[k])
        np.testing.assert_array_equal(torch_out(case, inputs)[k], torch_out(case, bare)[k])


def test_page_mode_skips_negative_indices():
    case, inputs = make(cache_mode="page", x_rank=3, batch=2, seq_len=4, pad_tokens=3, cache_batch=2, cache_seq=4)
    idx = inputs["indices"].astype(np.int64)
    assert (idx < 0).sum() == 3
    tok, rows = write_rows(inputs)
    assert sorted(rows) == sorted(idx[idx >= 0]) and len(tok) == 5
    for out in (compute(case.params, inputs), torch_out(case, inputs)):
        flat_in = inputs["k_cache"].reshape(8, -1)
        flat = out["k_cache"].reshape(8, -1)
        changed = np.nonzero((flat != flat_in).any(-1))[0]
        assert set(changed) <= set(idx[idx >= 0])
        keep = np.setdiff1d(np.arange(8), idx[idx >= 0])
        np.testing.assert_array_equal(flat[keep], flat_in[keep])


def test_kv_output_false_returns_empty_k_and_v():
    case, inputs = make(kv_output=False, x_dtype="float16")
    for out in (compute(case.params, inputs), torch_out(case, inputs)):
        assert out["k_out"].shape == (0,) and out["v_out"].shape == (0,)
        assert out["q_out"].shape == inputs["x"].shape[:-1] + (case.params["num_q_heads"], case.params["head_dim"])


def _off_by_one(a, b):
    return float(np.mean(np.abs(a.astype(int) - b.astype(int)) == 1))


def test_bf16_path_quantizes_k_from_fp32_not_from_bf16_kout():
    case, inputs = make(x_dtype="bfloat16", kv_output=True, offsets="none", cache_mode="page", x_rank=3,
                        batch=4, seq_len=8, num_q_heads=2, num_kv_heads=2, head_dim=64)
    g, t = compute(case.params, inputs), torch_out(case, inputs)
    tok, rows = write_rows(inputs)
    d = case.params["head_dim"]
    tk = t["k_cache"].reshape(-1, 2, d)[rows]
    from_bf16 = np.clip(np.rint(t["k_out"].astype(np.float64).reshape(-1, 2, d)[tok]
                                / inputs["scale_k"].astype(np.float64)), -128, 127)
    assert _off_by_one(tk, g["k_cache"].reshape(-1, 2, d)[rows]) < 0.002     # fp32 path: near-ties only
    assert _off_by_one(tk, from_bf16) > 0.05        # the bf16-rounded kOut would quantize differently


def test_fp16_path_quantizes_k_from_fp16_kout():
    case, inputs = make(x_dtype="float16", kv_output=True, offsets="none", cache_mode="page", x_rank=3,
                        batch=4, seq_len=8, num_q_heads=2, num_kv_heads=2, head_dim=64)
    t = torch_out(case, inputs)
    tok, rows = write_rows(inputs)
    d = case.params["head_dim"]
    y = t["k_out"].astype(np.float32).reshape(-1, 2, d)[tok] / inputs["scale_k"]
    np.testing.assert_array_equal(t["k_cache"].reshape(-1, 2, d)[rows], np.clip(np.rint(y), -128, 127).astype(np.int8))
    assert _off_by_one(t["k_cache"], compute(case.params, inputs)["k_cache"]) > 0   # fp16 RoPE rounding shows


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_every_negative_case_is_rejected_naming_its_constraint(backend):
    b = registry.backend(backend)
    negatives = [c for c in SPEC.cases("smoke") if c.negative]
    assert {c.violates for c in negatives} == {c.name for c in SPEC.constraints}
    for case in negatives:
        with pytest.raises(ConstraintViolation) as exc:
            b.run(SPEC, case, SPEC.make_inputs(case, 0))
        assert exc.value.constraint == case.violates, case.id


def test_every_constraint_has_edges_and_a_negative_in_smoke():
    counts = derive.exercised(SPEC, SPEC.cases("smoke"))
    assert all(pos > 0 and neg > 0 for pos, neg in counts.values()), counts


def test_data_level_checks_catch_faults_the_params_do_not_name():
    case, inputs = make(cache_mode="page", x_rank=3, batch=2, seq_len=2, pad_tokens=0)
    idx = inputs["indices"].copy()
    idx[1] = idx[0]
    with pytest.raises(ConstraintViolation, match="page_index_unique"):
        SPEC.validate(case.params, dict(inputs, indices=idx))
    case, inputs = make(cache_mode="contiguous", x_rank=3, batch=2, seq_len=2, cache_seq=5)
    with pytest.raises(ConstraintViolation, match="contiguous_index_bounds"):
        SPEC.validate(case.params, dict(inputs, indices=np.array([4, 0], np.int32)))
    SPEC.validate(case.params, dict(inputs, indices=np.array([3, 0], np.int32)))      # C2 - S is allowed

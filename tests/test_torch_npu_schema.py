"""The torch_npu backend against the real torch_npu schemas, without an NPU.

The schemas come from the installed torch-npu wheel (never imported; tests/npu_schemas.py), are
defined in a private torch.library namespace on CPU and implemented by the torch references. The
backend runs the smoke matrix through torch.ops against that namespace: the dispatcher checks every
positional argument, keyword, type and default of our calls, and the outputs are judged against the
numpy golden by the ordinary runner.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.op_modules import module_names, op_module
from backends.torch_npu._adapters import adapter, adapters, api_functions
from backends.torch_npu import TorchNpuBackend
from harness import ledger as ledger_mod
from harness import registry
from harness.runner import run_case
from harness.timing import TimingConfig
from tests.npu_schemas import SchemaNamespace, atb_paged_cache_load_schemas, real_schemas, wheel_dir

NO_TIMING = TimingConfig(enabled=False)
LEDGER = ledger_mod.load(backends=["torch_npu"])   # the shipped known issues of torch_npu
ROOT = wheel_dir()
pytestmark = pytest.mark.skipif(ROOT is None, reason="torch-npu wheel not installed (pip install '.[npu-schemas]')")


@pytest.fixture(scope="module")
def ns():
    return SchemaNamespace(ROOT)


@pytest.fixture(scope="module")
def backend(ns):
    return TorchNpuBackend(api=ns.api)


def _run(ns, backend, spec, case, seed=0):
    with ns.case(case.params):
        return run_case(spec, case, [backend], "smoke", seed, NO_TIMING)


def _explain(rows):
    return "\n".join(f"{r['case_id']} {r['output']}: {r['verdict']}: {r['reason']}" for r in rows)


# ---- the schemas themselves ------------------------------------------------------------------------------------
def test_schemas_come_from_the_wheel():
    schemas = real_schemas(ROOT)
    assert set(schemas) == set(api_functions())
    (compress,) = schemas["npu_nsa_compress_infer"]
    # the in-place overload, keyword-only cache (acl_abi.md section 4)
    assert compress.startswith("npu_nsa_compress_infer.cache(") and "*, Tensor? block_table=None" in compress
    assert compress.endswith("Tensor(a!) cache) -> Tensor(a!)")
    (grad,) = schemas["npu_nsa_select_attention_grad"]
    assert "sparse_mode" not in grad  # the wrapper hard-codes it (ops.md section 3)
    (ifa,) = schemas["npu_incre_flash_attention"]  # the yaml lists it twice, identically
    assert "SymInt[]? actual_seq_lengths=None" in ifa and 'str input_layout="BSH"' in ifa


def test_atb_schema_built_from_doc_and_header():
    functional, out = atb_paged_cache_load_schemas(ROOT)
    assert functional == ("npu_paged_cache_load(Tensor key_cache, Tensor value_cache, Tensor block_table, "
                          "Tensor context_lens, *, Tensor? seq_starts=None, bool cumsum=False) -> (Tensor, Tensor)")
    assert out == ("npu_paged_cache_load.out(Tensor key_cache, Tensor value_cache, Tensor block_table, "
                   "Tensor context_lens, *, Tensor? seq_starts=None, bool cumsum=False, Tensor(a!) key, "
                   "Tensor(b!) value) -> (Tensor(a!), Tensor(b!))")


def test_every_adapter_module_calls_only_functions_with_a_real_schema():
    """So no backends/torch_npu/<op>.py runs untested (tests/test_op_modules.py: each is a registered op)."""
    schemas = real_schemas(ROOT)   # raises LookupError for a function the wheel's yaml lacks
    called = [name for op in module_names("torch_npu") for name in (adapter(op).api, *adapter(op).also_calls)]
    assert called and all(schemas.get(name) for name in called), called


# ---- the smoke matrix through the dispatcher ---------------------------------------------------------------------
DEFAULT_CASES_PER_OP = 4  # the default run keeps every op's share of this file to a few seconds


def _check_matrix(ns, backend, op, limit=None):
    spec = registry.op(op)
    ad = adapter(op)
    ran, bad = 0, []
    for case in spec.cases("smoke"):
        if case.negative:
            continue
        if ad.case_decline is not None and ad.case_decline(case.params, spec.make_inputs(case, 0)):
            # a documented quirk (e.g. sparse_mode=0 under the select-grad wrapper): must come back skipped
            res = _run(ns, backend, spec, case)
            assert {r["verdict"] for r in res.rows} == {"skipped"}, _explain(res.rows)
            assert res.rows[0]["reason"].startswith("declined: ")
            continue
        before = len(ns.calls)
        res = _run(ns, backend, spec, case)
        known = LEDGER.match(spec, case, "torch_npu")   # e.g. ATB refusing ND without seq_starts (a real defect)
        if known is not None:
            ledger_mod.apply_entry(known, res.rows)
        bad += [r for r in res.rows if not r["ok"] or r["verdict"] == "skipped"]  # no undocumented declines
        called = {path for path, _ in ns.calls[before:]}
        assert called & {ad.api, "npu_rope_quant_kvcache"}, f"{case.id}: the backend never called {ad.api}"
        ran += 1
        if limit and ran >= limit:
            break
    assert not bad, _explain(bad)
    assert ran > 0, f"{op}: no smoke case ran through torch_npu"


@pytest.mark.parametrize("op", sorted(adapters()))
def test_smoke_cases_through_real_schemas(ns, backend, op):
    _check_matrix(ns, backend, op, limit=DEFAULT_CASES_PER_OP)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(adapters()))
def test_smoke_matrix_through_real_schemas(ns, backend, op):
    _check_matrix(ns, backend, op)


def test_nz_caches_are_format_cast_to_fractal_nz(ns, backend):
    spec = registry.op("paged_cache_load")
    nz = [c for c in spec.cases("smoke") if not c.negative and c.params["layout"] == "NZ"]
    assert nz
    before = len(ns.calls)
    res = _run(ns, backend, spec, nz[0])
    assert all(r["ok"] for r in res.rows), _explain(res.rows)
    casts = [b for p, b in ns.calls[before:] if p == "npu_format_cast"]
    assert [b["acl_format"] for b in casts] == [29, 29]  # key_cache and value_cache


def test_in_place_cache_leaves_the_case_inputs_alone(ns, backend):
    spec = registry.op("nsa_compress_with_cache")
    case = next(c for c in spec.cases("smoke") if not c.negative)
    inputs = spec.make_inputs(case, 0)
    cache_before = inputs["cache"].copy()
    with ns.case(case.params):
        out = backend.run(spec, case, inputs)
    assert np.array_equal(inputs["cache"].view(np.uint16), cache_before.view(np.uint16))
    (path, bound), = [(p, b) for p, b in ns.calls[-1:]]
    assert path == "npu_nsa_compress_infer"
    # what came back is the cache tensor the op was handed, read after the call
    assert np.array_equal(out["cache"].view(np.uint16), _as_np(bound["cache"]).view(np.uint16))


def _as_np(t):
    from backends.torch import to_numpy

    return to_numpy(t)


# ---- calls that do not fit the schema must fail ------------------------------------------------------------------
def _first_positive(op):
    spec = registry.op(op)
    return spec, next(c for c in spec.cases("smoke") if not c.negative)


class _Tamper(TorchNpuBackend):
    """The injected backend with a tampered inputs dict."""

    def __init__(self, api, tamper):
        super().__init__(api=api)
        self._tamper = tamper

    def prepare(self, spec, case, inputs):
        return super().prepare(spec, case, self._tamper(dict(inputs)))


@pytest.mark.parametrize("op", ["paged_cache_load", "nsa_compress_with_cache"])
def test_argument_the_schema_lacks_fails(ns, op):
    spec, case = _first_positive(op)
    bad = _Tamper(ns.api, lambda d: {**d, "layout_hint": "TND"})
    with ns.case(case.params):
        with pytest.raises(RuntimeError, match=r"expected at most \d+ argument\(s\) but received|Unknown keyword argument 'layout_hint'"):
            bad.run(spec, case, spec.make_inputs(case, 0))
    res = _run(ns, bad, spec, case)
    assert {r["verdict"] for r in res.rows} == {"error"} and not any(r["ok"] for r in res.rows)


@pytest.mark.parametrize("op, drop", [("paged_cache_load", "context_lens"),
                                      ("nsa_compress_with_cache", "page_block_size"),
                                      ("nsa_compress_with_cache", "cache")])
def test_missing_required_argument_fails(ns, op, drop):
    spec, case = _first_positive(op)
    bad = _Tamper(ns.api, lambda d: {k: v for k, v in d.items() if k != drop})
    with ns.case(case.params):
        with pytest.raises(RuntimeError, match=f"missing value for argument '{drop}'"):
            bad.run(spec, case, spec.make_inputs(case, 0))
    res = _run(ns, bad, spec, case)
    assert not any(r["ok"] for r in res.rows), _explain(res.rows)


def test_wrong_type_fails(ns):
    spec, case = _first_positive("nsa_compress_with_cache")
    bad = _Tamper(ns.api, lambda d: {**d, "compress_stride": float(d["compress_stride"])})
    with ns.case(case.params):
        with pytest.raises(RuntimeError, match="Expected a value of type 'int' for argument 'compress_stride'"):
            bad.run(spec, case, spec.make_inputs(case, 0))


def test_schema_error_on_negative_case_is_not_a_rejection(ns):
    """A call that misses the schema must not pass for a correct rejection of a negative case."""
    spec = registry.op("paged_cache_load")
    neg = next(c for c in spec.cases("smoke") if c.negative and c.violates == "cache_dtype")
    bad = _Tamper(ns.api, lambda d: {**d, "bogus": 1})
    res = _run(ns, bad, spec, neg)
    assert {r["verdict"] for r in res.rows} == {"error"} and not any(r["ok"] for r in res.rows)


def test_wrong_positional_order_is_caught(ns, monkeypatch):
    """Swapping two positional arguments of the same type slips past the dispatcher; the golden catches it."""
    spec = registry.op("paged_cache_load")
    case = next(c for c in spec.cases("smoke") if not c.negative and c.params["layout"] == "ND"
                and c.params["head_size_k"] != c.params["head_size_v"])
    module = op_module("torch_npu", "paged_cache_load")
    ad = module.ADAPTER
    monkeypatch.setattr(module, "ADAPTER", dataclasses.replace(ad, positional=("value_cache", "key_cache")
                                                               + ad.positional[2:]))
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert not any(r["ok"] for r in res.rows), _explain(res.rows)


# ---- documented quirks ----------------------------------------------------------------------------------------
def test_select_grad_sparse_mode_0_is_declined_with_the_reason(ns, backend):
    spec = registry.op("nsa_selected_attention_grad")
    case = spec.case(sparse_mode=0)
    res = _run(ns, backend, spec, case)
    assert {r["verdict"] for r in res.rows} == {"skipped"}
    assert "hard-codes sparse_mode=2" in res.rows[0]["reason"]


def test_rope_variant_for_float_x(ns, backend):
    spec = registry.op("dequant_rope_quant_kvcache")
    floats = [c for c in spec.cases("smoke") if not c.negative
              and spec.make_inputs(c, 0)["x"].dtype != np.int32]
    assert floats
    before = len(ns.calls)
    res = _run(ns, backend, spec, floats[0])
    assert all(r["ok"] for r in res.rows), _explain(res.rows)
    assert [p for p, _ in ns.calls[before:]] == ["npu_rope_quant_kvcache"]


def test_ascend950_declines_incre_flash_attention():
    ad = adapter("incre_flash_attention")
    assert "Ascend950" in ad.device_decline("Ascend950PR")
    assert ad.device_decline("Ascend910B3") is None


def test_data_fault_negative_cases_are_declined_not_run(ns, backend):
    spec = registry.op("paged_cache_load")
    neg = next(c for c in spec.cases("smoke") if c.negative and c.violates == "block_ids_in_range")
    res = _run(ns, backend, spec, neg)
    assert {r["verdict"] for r in res.rows} == {"skipped"}
    assert "out-of-bounds" in res.rows[0]["reason"]


def test_float_x_with_dequant_arguments_is_declined(ns, backend):
    """npu_rope_quant_kvcache (the float-x entry point) has no weight_scale / activation_scale / bias."""
    spec = registry.op("dequant_rope_quant_kvcache")
    case = next(c for c in spec.cases("smoke") if not c.negative and c.params["x_dtype"] != "int32"
                and c.params["bias_dtype"] != "none")
    before = len(ns.calls)
    res = _run(ns, backend, spec, case)
    assert {r["verdict"] for r in res.rows} == {"skipped"}
    assert "npu_rope_quant_kvcache, which has no" in res.rows[0]["reason"] and "bias" in res.rows[0]["reason"]
    assert len(ns.calls) == before  # nothing was called

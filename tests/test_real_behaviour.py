"""The device backends against stand-ins that behave like the real stack (shared/reference/real_interfaces.md).

torch_npu: the real schemas of the wheel (tests/npu_schemas.py) with the real stack's behaviour around them
(tests/npu_fake_runtime.py): task-queue deferral, ATB's checks, the functional wrapper's NZ allocation.
aclnn: the C double (tests/aclnn_double), which models ATB's in-tensor count and shape checks.

What is asserted: NZ PagedCacheLoad passes through torch_npu (the .out overload) while the functional form is
refused; ND without seq_starts is a positive case rejected (ATB status 5 on aclnn, the wrapper's text on
torch_npu), matched by the shipped known-issue entry as a strict xfail, and passes in the workaround mode;
a refusal raised at synchronize is `rejected`, a device fault there is `error`; every negative smoke case of
every op on both backends is rejected or declined with a reason.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest

from backends.torch_npu import TorchNpuBackend
from harness import ledger as ledger_mod
from harness import registry
from harness.runner import run_case
from harness.timing import TimingConfig
from tests import npu_fake_runtime as runtime
from tests.aclnn_double.support import built_or_skip, cann_env
from tests.npu_schemas import SchemaNamespace, wheel_dir

NO_TIMING = TimingConfig(enabled=False)
ROOT = wheel_dir()
needs_wheel = pytest.mark.skipif(ROOT is None, reason="torch-npu wheel not installed (pip install '.[npu-schemas]')")
PCL = "paged_cache_load"
ATB_ENTRY = "paged_cache_load_operation.cpp:93-99"


def _pcl_case(**params):
    spec = registry.op(PCL)
    return spec, next(c for c in spec.cases("smoke") if not c.negative
                      and all(c.params[k] == v for k, v in params.items()))


def _explain(rows):
    return "\n".join(f"{r['case_id']} {r['output']}: {r['verdict']}: {r['reason']}" for r in rows)


# ---- torch_npu through the schema stand-in ---------------------------------------------------------------------
@pytest.fixture(scope="module", params=[True, False], ids=["task_queue_on", "task_queue_off"])
def ns(request):
    if ROOT is None:
        pytest.skip("torch-npu wheel not installed (pip install '.[npu-schemas]')")
    return SchemaNamespace(ROOT, task_queue=request.param)


def _run(ns, backend, spec, case):
    with ns.case(case.params):
        return run_case(spec, case, [backend], "smoke", 0, NO_TIMING)


def test_nz_paged_cache_load_passes_through_the_out_overload(ns):
    spec, case = _pcl_case(layout="NZ")
    before = len(ns.calls)
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert {r["verdict"] for r in res.rows} == {"pass"}, _explain(res.rows)
    (bound,) = [b for p, b in ns.calls[before:] if p == "atb.npu_paged_cache_load"]
    kc = bound["key_cache"]
    assert tuple(bound["key"].shape) == (int(bound["context_lens"].sum()), kc.shape[1] * kc.shape[3])
    assert ns.queue.pending is None


def test_nz_through_the_functional_form_is_refused_by_atb(ns):
    """The finding behind the .out overload: the functional wrapper's [T, bs, C0] outputs fail ATB's NZ check."""
    spec, case = _pcl_case(layout="NZ")
    inputs = spec.make_inputs(case, 0)
    import torch

    kc, vc = (ns.api.npu_format_cast(torch.from_numpy(inputs[k]), 29) for k in ("key_cache", "value_cache"))

    with ns.case(case.params):
        if ns.queue.enabled:
            key, _ = ns.api.atb.npu_paged_cache_load(kc, vc, torch.from_numpy(inputs["block_table"]),
                                                     torch.from_numpy(inputs["context_lens"]))
            assert tuple(key.shape[1:]) == (kc.shape[2], kc.shape[3])   # [T, bs, C0], as the wrapper allocates
            with pytest.raises(RuntimeError, match="current working operator name is AtbPagedCacheLoad") as info:
                ns.api.npu.synchronize()
        else:
            with pytest.raises(RuntimeError) as info:
                ns.api.atb.npu_paged_cache_load(kc, vc, torch.from_numpy(inputs["block_table"]),
                                                torch.from_numpy(inputs["context_lens"]))
    assert "call AtbPagedCacheLoadGetWorkspaceSize failed" in str(info.value)
    status, _ = ns.atb_statuses[-1]
    assert status in (runtime.ATB_INVALID_TENSOR_DIM, runtime.ATB_INVALID_TENSOR_DIM_NUM)


def test_nd_without_seq_starts_is_a_positive_case_rejected_and_a_strict_xfail(ns):
    spec, case = _pcl_case(layout="ND", has_seq_starts=False)
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert {r["verdict"] for r in res.rows} == {"rejected"} and not any(r["ok"] for r in res.rows)
    reason = res.rows[0]["reason"]
    assert reason.startswith("positive case rejected: ") and "call AtbPagedCacheLoadGetWorkspaceSize failed" in reason
    assert ("raised at synchronize" in reason) == ns.queue.enabled
    assert ns.atb_statuses[-1][0] == runtime.ATB_INVALID_IN_TENSOR_NUM
    ledger = ledger_mod.load(backends=["torch_npu"])
    entry = ledger.match(spec, case, "torch_npu")
    assert entry is not None and entry.kind == "xfail" and ATB_ENTRY in entry.issue
    ledger_mod.apply_entry(entry, res.rows)   # rows name the injected backend; the entry is torch_npu's
    assert all(r["ok"] and r["known_issue"] == entry.label for r in res.rows)
    (mark,) = ledger_mod.pytest_marks(entry)
    assert mark.name == "xfail" and mark.kwargs["strict"] is True


def test_workaround_mode_passes_and_is_not_xfailed(ns):
    spec, case = _pcl_case(layout="ND", has_seq_starts=False)
    backend = TorchNpuBackend("pcl_zero_seq_starts", api=ns.api)
    assert backend.name == "torch_npu[injected]:pcl_zero_seq_starts"
    before = len(ns.calls)
    res = _run(ns, backend, spec, case)
    assert {r["verdict"] for r in res.rows} == {"pass"}, _explain(res.rows)
    (bound,) = [b for p, b in ns.calls[before:] if p == "atb.npu_paged_cache_load"]
    assert bound["seq_starts"] is not None and int(bound["seq_starts"].abs().sum()) == 0
    ledger = ledger_mod.load(backends=["torch_npu"])
    assert ledger.match(spec, case, "torch_npu:pcl_zero_seq_starts") is None
    assert ledger.match(spec, case, "torch_npu:1") is not None


def test_an_aclnn_refusal_is_rejected_with_the_wrappers_text(ns):
    spec = registry.op("nsa_compress_with_cache")
    case = next(c for c in spec.cases("smoke") if c.negative and c.violates == "cbs_stride_multiple_of_16")
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert {r["verdict"] for r in res.rows} == {"rejected"} and all(r["ok"] for r in res.rows)
    assert "call aclnnNsaCompressWithCache failed, detail:EZ1001: constraint 'cbs_stride_multiple_of_16'" \
        in res.rows[0]["reason"]
    assert ("raised at synchronize" in res.rows[0]["reason"]) == ns.queue.enabled


def test_act_seq_len_type_0_is_declined_not_run(ns):
    spec = registry.op("nsa_compress_with_cache")
    case = next(c for c in spec.cases("smoke") if c.negative and c.violates == "act_seq_len_type_1")
    before = len(ns.calls)
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert {r["verdict"] for r in res.rows} == {"skipped"}
    assert "hard-codes actSeqLenType=1" in res.rows[0]["reason"] and len(ns.calls) == before


def test_kv_output_false_returns_empty_k_and_v(ns):
    spec = registry.op("dequant_rope_quant_kvcache")
    case = next(c for c in spec.cases("smoke") if not c.negative and not spec.make_inputs(c, 0)["kv_output"]
                and TorchNpuBackend(api=ns.api).supports(spec, c) is None
                and not torch_npu_declines(spec, c))
    with ns.case(case.params):
        out = TorchNpuBackend(api=ns.api).run(spec, case, spec.make_inputs(case, 0))
    assert out["k_out"].shape == (0,) and out["v_out"].shape == (0,) and out["q_out"].size > 0


def torch_npu_declines(spec, case):
    from backends.torch_npu._adapters import adapter

    ad = adapter(spec.name)
    return ad.case_decline is not None and ad.case_decline(case.params, spec.make_inputs(case, 0))


@needs_wheel
def test_a_device_fault_at_synchronize_stays_an_error():
    """The queue's generic text (ERR00100) ends device faults too: only the inner message makes a refusal."""
    class Faulty:
        def synchronize(self):
            raise RuntimeError(runtime.QUEUE_TEXT.format(op="aclnnNsaCompressWithCache",
                                                         inner="EZ9999: 507015 ACL_ERROR_RT_AICORE_EXCEPTION"))

    ns = SchemaNamespace(ROOT, task_queue=True)
    ns.api.npu = Faulty()
    spec = registry.op("nsa_compress_with_cache")
    case = next(c for c in spec.cases("smoke") if not c.negative)
    res = _run(ns, TorchNpuBackend(api=ns.api), spec, case)
    assert {r["verdict"] for r in res.rows} == {"error"}, _explain(res.rows)
    bare = RuntimeError(runtime.QUEUE_TEXT.format(op="AtbPagedCacheLoad", inner=""))
    from backends.torch_npu import classify

    assert classify(bare) == "error"


def _sweep_negatives(backend, run):
    """Every negative smoke case of every op: (op, case id, verdict, reason) of those neither rejected nor
    declined with a reason, and the counts per verdict."""
    bad, counts = [], collections.Counter()
    for spec in registry.ops():
        for case in spec.cases("smoke"):
            if not case.negative:
                continue
            res = run(spec, case)
            row = res.rows[0]
            counts[row["verdict"]] += 1
            # declined with a reason: "declined: " and more than a word after it
            reason = row["reason"]
            declined = row["verdict"] == "skipped" and reason.startswith("declined: ") and len(reason) > 20
            if not (row["verdict"] == "rejected" or declined) or not res.ok:
                bad.append((spec.name, case.id, row["verdict"], row["reason"][:200]))
    return bad, counts


def test_every_negative_case_is_rejected_or_declined_through_torch_npu(ns):
    backend = TorchNpuBackend(api=ns.api)
    bad, counts = _sweep_negatives(backend, lambda spec, case: _run(ns, backend, spec, case))
    assert not bad, "\n".join(map(str, bad))
    assert counts["rejected"] > 100 and set(counts) <= {"rejected", "skipped"}, counts


# ---- aclnn through the C double ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aclnn(tmp_path_factory):
    from backends.aclnn import AclnnBackend

    double = built_or_skip(tmp_path_factory)
    with cann_env(double.env()):
        backends = {}

        def make(option="0"):
            if option not in backends:
                backends[option] = AclnnBackend(option)
                assert backends[option].available(), backends[option].available().reason
            return backends[option]

        yield make
        for b in backends.values():
            b.close()


def test_nd_without_seq_starts_on_aclnn_is_rejected_with_atb_status_5(aclnn):
    spec, case = _pcl_case(layout="ND", has_seq_starts=False)
    res = run_case(spec, case, [aclnn()], "smoke", 0, NO_TIMING)
    assert {r["verdict"] for r in res.rows} == {"rejected"} and not any(r["ok"] for r in res.rows)
    reason = res.rows[0]["reason"]
    assert reason.startswith("positive case rejected: AtbPagedCacheLoadGetWorkspaceSize rejected the case: "
                             "status 5 ERROR_INVALID_IN_TENSOR_NUM: ")
    assert "is not equal GetInputNum: 7" in reason
    ledger = ledger_mod.load(backends=["aclnn"])
    entry = ledger.match(spec, case, "aclnn")
    assert entry is not None and entry.kind == "xfail" and ATB_ENTRY in entry.issue
    ledger.apply(spec, case, res.rows)
    assert all(r["ok"] and r["reason"].startswith(f"xfail, known issue {entry.issue}") for r in res.rows)
    (mark,) = ledger_mod.pytest_marks(entry)
    assert mark.kwargs["strict"] is True
    # a negative ND case without seq_starts is refused too, but it is not what the entry is about
    neg = next(c for c in spec.cases("smoke") if c.negative and c.params["layout"] == "ND"
               and not c.params["has_seq_starts"])
    assert ledger.match(spec, neg, "aclnn") is None


def test_the_xfail_says_unexpected_pass_when_atb_is_fixed(aclnn):
    """Strictness: the same entry against rows that pass (the workaround mode, standing in for a fixed ATB)."""
    spec, case = _pcl_case(layout="ND", has_seq_starts=False)
    backend = aclnn("pcl_zero_seq_starts")
    assert backend.name == "aclnn:pcl_zero_seq_starts"
    res = run_case(spec, case, [backend], "smoke", 0, NO_TIMING)
    assert {r["verdict"] for r in res.rows} == {"pass"}, _explain(res.rows)
    ledger = ledger_mod.load(backends=["aclnn"])
    assert ledger.match(spec, case, backend.name) is None   # the mode avoids the issue: no xfail there
    entry = ledger.match(spec, case, "aclnn")
    ledger_mod.apply_entry(entry, res.rows)
    assert not any(r["ok"] for r in res.rows) and "unexpected pass" in res.rows[0]["reason"]


def test_skipped_rows_are_not_an_unexpected_pass(aclnn):
    spec, case = _pcl_case(layout="ND", has_seq_starts=False)
    from harness.runner import verdict_rows

    rows = verdict_rows(spec, case, "aclnn", "skipped", "unavailable: no CANN", "smoke", 0)
    ledger = ledger_mod.load(backends=["aclnn"])
    ledger.apply(spec, case, rows)
    assert all(r["ok"] and r["verdict"] == "skipped" and "known_issue" not in r for r in rows)


def test_kv_output_false_passes_empty_k_and_v_on_aclnn(aclnn):
    spec = registry.op("dequant_rope_quant_kvcache")
    case = next(c for c in spec.cases("smoke") if not c.negative and not spec.make_inputs(c, 0)["kv_output"])
    out = aclnn().run(spec, case, spec.make_inputs(case, 0))
    gold = registry.backend("numpy").run(spec, case, spec.make_inputs(case, 0))
    assert out["k_out"].shape == (0,) == gold["k_out"].shape and out["v_out"].shape == (0,)
    res = run_case(spec, case, [aclnn()], "smoke", 0, NO_TIMING)
    assert all(r["ok"] for r in res.rows), _explain(res.rows)


def test_every_negative_case_is_rejected_or_declined_on_aclnn(aclnn):
    backend = aclnn()
    bad, counts = _sweep_negatives(backend, lambda spec, case: run_case(spec, case, [backend], "smoke", 0, NO_TIMING))
    assert not bad, "\n".join(map(str, bad))
    assert counts["rejected"] > 100 and set(counts) <= {"rejected", "skipped"}, counts


def test_absent_actual_seq_len_is_an_empty_int_array_on_aclnn(aclnn):
    """torch_npu passes an empty aclIntArray (OP yaml:7330, 7406-7407): the kernel sees 0 lengths, not NULL."""
    from harness.errors import Rejected

    spec = registry.op("nsa_compress_with_cache")
    case = next(c for c in spec.cases("smoke") if not c.negative)
    inputs = {**spec.make_inputs(case, 0), "actual_seq_len": None}
    with pytest.raises(Rejected, match=r"status 161002 .*actSeqLen 0"):
        aclnn().run(spec, case, inputs)


def test_quant_mode_other_than_0_or_1_is_declined_on_torch_npu():
    from backends.torch_npu._adapters import adapter

    why = adapter("dequant_rope_quant_kvcache").case_decline({}, {"quant_mode": 2})
    assert "into \"static\"" in why
    assert adapter("dequant_rope_quant_kvcache").case_decline({}, {"quant_mode": 1}) is None


def test_aclnn_option_errors_name_the_choices():
    from backends.aclnn import parse_option

    assert parse_option("1+pcl_zero_seq_starts") == (1, frozenset({"pcl_zero_seq_starts"}))
    with pytest.raises(TypeError, match="neither a device id .* nor a mode"):
        parse_option("zeros")
    assert np.array_equal([parse_option("")[0], parse_option("2")[0]], [0, 2])


def test_functional_mode_is_a_row_and_a_known_issue(ns):
    """Mode pcl_functional calls the functional form as a user writes it: NZ is refused, and the shipped entry
    (which applies only in that mode) makes it a strict xfail."""
    spec, case = _pcl_case(layout="NZ")
    backend = TorchNpuBackend("pcl_functional", api=ns.api)
    res = _run(ns, backend, spec, case)
    assert {r["verdict"] for r in res.rows} == {"rejected"}, _explain(res.rows)
    assert "call AtbPagedCacheLoadGetWorkspaceSize failed" in res.rows[0]["reason"]
    ledger = ledger_mod.load(backends=["torch_npu"])
    entry = ledger.match(spec, case, "torch_npu:pcl_functional")
    assert entry is not None and "PagedCacheLoadAtb.cpp:69-70" in entry.issue
    assert ledger.match(spec, case, "torch_npu") is None   # the default backend uses .out and passes
    ledger_mod.apply_entry(entry, res.rows)
    assert all(r["ok"] for r in res.rows)
    nd_spec, nd = _pcl_case(layout="ND", has_seq_starts=True)   # ND is fine through the functional form
    assert {r["verdict"] for r in _run(ns, backend, nd_spec, nd).rows} == {"pass"}


def test_task_queue_setting_is_read_like_torch_npu(monkeypatch):
    from backends.torch_npu._env import task_queue_enabled, task_queue_note

    monkeypatch.delenv("TASK_QUEUE_ENABLE", raising=False)
    assert task_queue_enabled() and "default 1" in task_queue_note() and runtime.TaskQueue().enabled
    monkeypatch.setenv("TASK_QUEUE_ENABLE", "2")
    assert task_queue_enabled() and "TASK_QUEUE_ENABLE=2" in task_queue_note()
    monkeypatch.setenv("TASK_QUEUE_ENABLE", "0")
    assert not task_queue_enabled() and "raise at the call" in task_queue_note() and not runtime.TaskQueue().enabled


def test_torch_npu_options_split_device_and_modes():
    from backends.torch_npu import parse_option
    from harness.errors import UsageError

    assert parse_option("1+pcl_zero_seq_starts") == ("npu:1", frozenset({"pcl_zero_seq_starts"}))
    assert parse_option("pcl_functional") == ("npu:0", frozenset({"pcl_functional"}))
    with pytest.raises(UsageError, match="or a mode"):
        parse_option("zeros")

"""The aclnn backend against the C double of CANN (tests/aclnn_double), compiled here with gcc/g++.

What is asserted: results of every bound op equal the golden's verdicts through ctypes; negatives are
`rejected` at GetWorkspaceSize with the status name and the double's message; faults (allocation,
launch, sync timeout, crash) give the right verdict and leave nothing behind (the double counts every
create and destroy); executors and ATB operations are destroyed exactly once; discovery explains what
is missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backends.aclnn._binding import binding_of, bindings
from harness import ledger as ledger_mod
from harness import registry
from harness.errors import Rejected
from harness.runner import run_case
from harness.timing import TimingConfig
from tests.aclnn_double.support import Counters, built_or_skip, cann_env

ROOT = Path(__file__).resolve().parents[1]
NO_TIMING = TimingConfig(enabled=False)
RESOURCES = ("tensor", "int_array", "tensor_list", "executor", "device_mem", "atb_operation")
LEDGER = ledger_mod.load(backends=["aclnn"])   # the shipped known issues of aclnn


@pytest.fixture(scope="session")
def double(tmp_path_factory):
    return built_or_skip(tmp_path_factory)


@pytest.fixture(scope="session")
def counters(double):
    with cann_env(double.env()):
        return Counters(double.ascend_home / "lib64")


@pytest.fixture
def backend(double, counters):
    """A fresh backend on the double; afterwards nothing it created may be left, nothing destroyed twice."""
    from backends.aclnn import AclnnBackend

    bad = counters.bad_calls()
    with cann_env(double.env()):
        b = AclnnBackend()
        assert b.available(), b.available().reason
        yield b
        b.close()
    counters.fault("")
    assert {k: v for k, v in counters.live().items() if v} == {}
    assert counters.bad_calls() == bad


def _cases(op: str, negative: bool, n: int):
    """The first n smoke cases; positives under a known issue (ATB refusing ND without seqStarts,
    cases/known_issues/aclnn.toml) are refused by the double as by the real library, so they are left out."""
    spec = registry.op(op)
    return spec, [c for c in spec.cases("smoke") if c.negative == negative
                  and (negative or LEDGER.match(spec, c, "aclnn") is None)][:n]


def _held(counters) -> dict:
    live = counters.live()
    return {k: live[k] for k in RESOURCES if live[k]}


# registered ops with a backends/aclnn/<op>.py (tests/test_aclnn_binding.py: each has its C double)
BOUND_OPS = sorted(bindings())


@pytest.mark.parametrize("op", BOUND_OPS)
def test_positive_cases_match_the_golden_and_release_everything(op, backend, counters):
    spec, cases = _cases(op, negative=False, n=40)
    cases = [c for c in cases if backend.supports(spec, c) is None][:4]
    assert cases
    for case in cases:
        res = run_case(spec, case, [backend], "smoke", 0, NO_TIMING)
        assert {r["verdict"] for r in res.rows} <= {"pass", "warn"}, [r["reason"] for r in res.rows]
        assert _held(counters) == {}, case.id


@pytest.mark.parametrize("op", BOUND_OPS)
def test_negative_cases_are_rejected_at_get_workspace_size(op, backend, counters):
    spec, cases = _cases(op, negative=True, n=40)
    cases = [c for c in cases if backend.supports(spec, c) is None][:3]
    family_code = {"paged_cache_load": None}.get(op, 161002)   # ATB returns its own ErrorType codes
    for case in cases:
        with pytest.raises(Rejected) as info:
            backend.run(spec, case, spec.make_inputs(case, 0))
        exc = info.value
        assert str(exc).startswith(backend_symbol(op) + "GetWorkspaceSize rejected the case: status ")
        assert exc.code_name in str(exc) and exc.code_name != "" and "UNKNOWN" not in exc.code_name
        if case.violates == "layout_tnd":   # real_interfaces.md: a non-TND layout fails with 561103, not 161002
            assert (exc.code, exc.code_name) == (561103, "ACLNN_ERR_INNER_NULLPTR")
        elif family_code is not None:
            assert exc.code == family_code and exc.code_name == "ACLNN_ERR_PARAM_INVALID"
        assert "GetWorkspaceSize: " in str(exc)        # the double's aclGetRecentErrMsg text is quoted
        assert _held(counters) == {}, case.id


def backend_symbol(op: str) -> str:
    return binding_of(op).symbol


def test_rejection_message_read_once(backend):
    """aclGetRecentErrMsg clears the text: a second read right after a rejection is empty."""
    spec, (case,) = _cases("nsa_compress_with_cache", negative=True, n=1)
    with pytest.raises(Rejected):
        backend.run(spec, case, spec.make_inputs(case, 0))
    assert backend._cann.rt.aclGetRecentErrMsg() is None


def test_pcl_nd_and_nz_bitwise(backend):
    """PagedCacheLoad through the ATB C API (context stream set via vtable slot 2): both layouts, exact."""
    spec = registry.op("paged_cache_load")
    for params in (dict(layout="ND", k_dtype="int8", cumsum=True, has_seq_starts=True),
                   dict(layout="NZ", k_dtype="int8", v_dtype="bfloat16")):
        case = spec.case(**params)
        inputs = spec.make_inputs(case, 3)
        out = backend.run(spec, case, inputs)
        gold = registry.backend("numpy").run(spec, case, inputs)
        for k in ("key", "value"):
            assert out[k].dtype == gold[k].dtype and out[k].shape == gold[k].shape
            assert np.array_equal(out[k].view(np.uint8), gold[k].view(np.uint8))


@pytest.mark.parametrize("fault, code_text, op", [
    ("malloc:3", "207001 ACL_ERROR_RT_MEMORY_ALLOCATION", "nsa_compress_with_cache"),
    ("launch", "361001 ACLNN_ERR_RUNTIME_ERROR", "dequant_rope_quant_kvcache"),
    ("launch", "4 ERROR_RT_FAIL", "paged_cache_load"),
    ("sync_timeout", "507046 ACL_ERROR_RT_STREAM_SYNC_TIMEOUT", "nsa_compress_with_cache"),
    ("sync_timeout", "507046 ACL_ERROR_RT_STREAM_SYNC_TIMEOUT", "paged_cache_load"),
])
def test_faults_are_errors_leak_nothing_and_the_run_continues(fault, code_text, op, backend, counters):
    spec, (case, nxt) = _cases(op, negative=False, n=2)
    counters.fault(fault)
    res = run_case(spec, case, [backend], "smoke", 0, NO_TIMING)
    verdicts = {r["verdict"] for r in res.rows}
    assert verdicts == {"error"}, [r["reason"] for r in res.rows]
    reason = res.rows[0]["reason"]
    assert code_text in reason and "fault injected by the double" in reason, reason
    assert _held(counters) == {}
    res = run_case(spec, nxt, [backend], "smoke", 0, NO_TIMING)   # one-shot fault: the next case runs
    assert {r["verdict"] for r in res.rows} <= {"pass", "warn"}, [r["reason"] for r in res.rows]
    assert _held(counters) == {}


def test_crash_kills_only_a_subprocess(double):
    """A crash inside phase 2 (abort) takes its process down; the parent sees the signal."""
    spec, (case,) = _cases("nsa_compress_with_cache", negative=False, n=1)
    code = ("from harness import registry\nfrom backends.aclnn import AclnnBackend\n"
            "spec = registry.op('nsa_compress_with_cache')\n"
            f"case = [c for c in spec.cases('smoke') if c.id == {case.id!r}][0]\n"
            "AclnnBackend().run(spec, case, spec.make_inputs(case, 0))\nprint('survived')\n")
    env = {**os.environ, **double.env(), "OPDIFF_ACLNN_DOUBLE_FAULT": "crash"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGABRT, proc.stderr[-2000:]
    assert "survived" not in proc.stdout


def test_crash_becomes_a_crash_verdict_in_the_cli(double, tmp_path):
    spec, (case,) = _cases("paged_cache_load", negative=False, n=1)
    env = {**os.environ, **double.env(), "OPDIFF_ACLNN_DOUBLE_FAULT": "crash"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--ops", "paged_cache_load", "--backends", "aclnn",
                           "--case", case.id, "--no-timing", "--out", str(tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "crash" in proc.stdout and "SIGABRT" in proc.stdout, proc.stdout


def test_unused_executor_is_destroyed_once_and_relaunch_requeries(backend, counters):
    """prepare without launch: the phase-1 executor goes through aclDestroyAclOpExecutor; two launches of
    one prepared call (the timing path) each run phase 1 again (a non-repeatable executor is consumed)."""
    spec, (case,) = _cases("nsa_compress_with_cache", negative=False, n=1)
    inputs = spec.make_inputs(case, 0)
    before = counters.created("executor")
    call = backend.prepare(spec, case, inputs)
    assert counters.live()["executor"] == 1
    backend._release(call)
    assert counters.live()["executor"] == 0
    call = backend.prepare(spec, case, inputs)
    backend.launch(call)
    backend.launch(call)
    backend.synchronize()
    backend._release(call)
    assert counters.created("executor") - before == 3
    assert _held(counters) == {}


def test_atb_operation_reused_across_launches_and_destroyed_once(backend, counters):
    spec, (case,) = _cases("paged_cache_load", negative=False, n=1)
    before = counters.created("atb_operation")
    call = backend.prepare(spec, case, spec.make_inputs(case, 0))
    for _ in range(3):
        backend.launch(call)
    backend.synchronize()
    backend._release(call)
    assert counters.created("atb_operation") - before == 1     # *op != NULL is passed back to ATB
    assert counters.live()["atb_context"] == 1                  # one context per runtime, until close


def test_event_timer(backend, counters):
    spec, (case,) = _cases("dequant_rope_quant_kvcache", negative=False, n=1)
    call = backend.prepare(spec, case, spec.make_inputs(case, 0))
    timer = backend.timer()
    assert timer.mode == "acl_event"
    samples = [timer.elapsed_us(lambda: backend.launch(call)) for _ in range(3)]
    assert all(np.isfinite(s) and s > 0 for s in samples)
    assert counters.live()["event"] == 2                        # created once, reused
    backend._release(call)


def test_timing_through_the_runner_records_the_event_mode(backend):
    spec, (case,) = _cases("paged_cache_load", negative=False, n=1)
    res = run_case(spec, case, [backend], "smoke", 0)
    assert {r["verdict"] for r in res.rows} == {"pass"}
    assert res.rows[0]["timing_mode"] == "acl_event/cold" and res.rows[0]["latency_median_us"] > 0   # cold by default


def test_device_is_set_in_every_calling_thread(backend):
    """The double returns ACL_ERROR_RT_CONTEXT_NULL to a thread that never called aclrtSetDevice."""
    spec, (case,) = _cases("nsa_compress_with_cache", negative=False, n=1)
    inputs = spec.make_inputs(case, 0)
    out, errors = {}, []

    def work():
        try:
            out.update(backend.run(spec, case, inputs))
        except Exception as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors and "cache" in out


def test_device_name_names_the_soc(backend):
    assert backend.device_name().startswith("Ascend910B1")


def test_ifa_cases_for_another_product_are_declined_with_the_reason(backend):
    spec = registry.op("incre_flash_attention")
    card = next(c for c in spec.cases("smoke") if c.params["product"] == "310P")
    a2 = next(c for c in spec.cases("smoke") if c.params["product"] == "A2")
    assert "targets product 310P" in backend.supports(spec, card) and "Ascend910B1 (A2)" in backend.supports(spec, card)
    assert backend.supports(spec, a2) is None


# ---- discovery ---------------------------------------------------------------------------------------------
def test_no_cann_is_unavailable_with_the_reason(tmp_path):
    from backends.aclnn import AclnnBackend

    with cann_env({}, home=tmp_path):
        avail = AclnnBackend().available()
    assert not avail
    assert "libascendcl.so" in avail.reason and "ASCEND_HOME_PATH" in avail.reason and "set_env.sh" in avail.reason


def test_cli_without_cann_skips_aclnn_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "ATB_HOME_PATH")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--ops", "paged_cache_load", "--backends",
                           "aclnn,numpy", "--no-timing", "--out", str(tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend aclnn skipped every case" in proc.stdout


def test_missing_atb_declines_only_paged_cache_load(double, tmp_path):
    from backends.aclnn import AclnnBackend

    with cann_env({"ASCEND_HOME_PATH": str(double.ascend_home), "ATB_HOME_PATH": str(tmp_path)}):
        b = AclnnBackend()
        try:
            assert b.available()
            pcl = registry.op("paged_cache_load")
            why = b.supports(pcl, pcl.cases("smoke")[0])
            assert "libatb.so" in why and "ATB_HOME_PATH" in why
            ncwc = registry.op("nsa_compress_with_cache")
            assert b.supports(ncwc, ncwc.cases("smoke")[0]) is None
        finally:
            b.close()


def test_missing_op_library_declines_with_the_symbol(double, tmp_path):
    """A toolkit whose lib64 lacks the transformer op library: the op is declined naming what was searched."""
    from backends.aclnn import AclnnBackend

    lib64 = tmp_path / "cann" / "lib64"
    lib64.mkdir(parents=True)
    for name in ("libascendcl.so", "libnnopbase.so", "libopapi.so"):
        (lib64 / name).symlink_to(double.ascend_home / "lib64" / name)
    with cann_env({"ASCEND_HOME_PATH": str(tmp_path / "cann")}):
        b = AclnnBackend()
        try:
            spec = registry.op("nsa_compress_with_cache")
            why = b.supports(spec, spec.cases("smoke")[0])
            assert "aclnnNsaCompressWithCache" in why and "libopapi.so" in why
        finally:
            b.close()


def test_device_not_visible_is_unavailable_and_takes_no_device(double, counters):
    from backends.aclnn import AclnnBackend

    streams = counters.created("stream")
    with cann_env(double.env()):
        b = AclnnBackend("3")
        avail = b.available()
        b.close()
    assert not avail and "device 3 is not visible" in avail.reason and "1 device(s)" in avail.reason
    assert counters.created("stream") == streams      # asking holds no device context


# ---- cold-cache timing: the L2 flush (issue 9) ----------------------------------------------------------------
# 1 estimate-of-first-call + 3 estimate + 2 warm-up + 3 samples = 9 timed calls, whatever the clock says
EXACT = TimingConfig(warmup_s=0, warmup_calls=2, warmup_max_s=0, min_samples=3, max_samples=3, budget_s=0)
EXACT_CALLS = 9
SMALL_FLUSH = 1 << 20   # the tests' flush buffer: same code path as 192 MiB, a thousandth of the memset work


def _timed_call(backend, op: str):
    spec, cases = _cases(op, negative=False, n=40)
    case = next(c for c in cases if backend.supports(spec, c) is None)
    return backend.prepare(spec, case, spec.make_inputs(case, 0))


def _measure(backend, counters, call, cache: str):
    """measure_run with EXACT; returns the measurement and what the double saw during it."""
    from harness.timing import measure_run

    counters.take_trace()
    memsets, allocs = counters.calls("aclrtMemsetAsync"), counters.created("device_mem")
    m = measure_run(backend.timer(), lambda: backend.launch(call), EXACT.with_cache(cache))
    return m, counters.calls("aclrtMemsetAsync") - memsets, counters.created("device_mem") - allocs, \
        counters.take_trace()


@pytest.mark.parametrize("op", ["dequant_rope_quant_kvcache", "paged_cache_load"])   # aclnn two-phase, ATB
def test_cold_timing_flushes_once_per_sample_before_the_start_event(op, backend, counters):
    backend.flush_bytes = SMALL_FLUSH
    call = _timed_call(backend, op)
    assert backend.timer().cache_bytes == SMALL_FLUSH
    m, memsets, allocs, trace = _measure(backend, counters, call, "cold")
    assert m.mode == "acl_event/cold" and len(m.samples) == 3 and all(s > 0 for s in m.samples)
    assert memsets == EXACT_CALLS and counters.last_memset_bytes() == SMALL_FLUSH
    # stream order of every timed call: memset, start event, kernel, end event -> the flush is never timed
    assert trace == "MRKR" * EXACT_CALLS, trace
    assert allocs == 1                                    # the flush buffer, allocated once
    m, memsets, allocs, trace = _measure(backend, counters, call, "cold")
    assert (memsets, allocs, trace) == (EXACT_CALLS, 0, "MRKR" * EXACT_CALLS)   # reused, not re-allocated
    backend._release(call)
    assert counters.live()["device_mem"] == 1             # only the flush buffer is left ...
    backend.close()
    assert counters.live()["device_mem"] == 0             # ... and the backend's teardown frees it


def test_hot_timing_never_flushes_nor_allocates(backend, counters):
    backend.flush_bytes = SMALL_FLUSH
    call = _timed_call(backend, "dequant_rope_quant_kvcache")
    m, memsets, allocs, trace = _measure(backend, counters, call, "hot")
    assert m.mode == "acl_event/hot" and len(m.samples) == 3
    assert (memsets, allocs, trace) == (0, 0, "RKR" * EXACT_CALLS)
    backend._release(call)


def test_default_flush_is_the_ascend_l2_and_auto_is_cold(backend, counters):
    from harness.timing import ASCEND_L2_BYTES

    call = _timed_call(backend, "nsa_compress_with_cache")
    assert ASCEND_L2_BYTES == 192 * 1024 * 1024 and backend.timer().cache_bytes == ASCEND_L2_BYTES
    m, memsets, allocs, trace = _measure(backend, counters, call, "auto")
    assert m.mode == "acl_event/cold" and memsets == EXACT_CALLS and allocs == 1
    assert counters.last_memset_bytes() == ASCEND_L2_BYTES and trace == "MRKR" * EXACT_CALLS
    backend._release(call)


def test_close_with_a_flush_still_queued_frees_after_the_stream_ran_it(backend, counters):
    """The double reports a bad call if a queued memset runs on freed memory: close must synchronize first."""
    backend.flush_bytes = SMALL_FLUSH
    call = _timed_call(backend, "nsa_compress_with_cache")
    backend._release(call)
    counters.take_trace()
    bad = counters.bad_calls()
    backend.timer().flush()                               # queued, never synchronized by the timer
    backend.close()
    assert counters.take_trace() == "M" and counters.bad_calls() == bad
    assert counters.live()["device_mem"] == 0


def test_cache_option_reaches_the_timer_through_the_runner(backend, counters):
    from harness.timing import TIER_TIMING

    backend.flush_bytes = SMALL_FLUSH
    spec, (case,) = _cases("paged_cache_load", negative=False, n=1)
    for cache, flushes in (("hot", False), ("cold", True)):
        before = counters.calls("aclrtMemsetAsync")
        res = run_case(spec, case, [backend], "smoke", 0, TIER_TIMING["smoke"].with_cache(cache))
        row = res.rows[0]
        assert row["timing_mode"] == f"acl_event/{cache}" and row["latency_median_us"] > 0
        assert (counters.calls("aclrtMemsetAsync") > before) == flushes

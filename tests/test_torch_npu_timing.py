"""torch_npu backend timing without an NPU: a stand-in torch_npu module whose events log to a trace.

What is asserted: cold mode (the default, `auto`) zeroes a 192 MiB NPU buffer once per timed call, before
the start event is recorded (so never inside the timed span); hot mode never touches or allocates it; the
buffer is allocated once on the backend's device and dropped by `close()`.
"""
from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

import pytest
import torch

import backends.torch_npu as tn
from backends.torch_npu import TorchNpuBackend
from harness.timing import ASCEND_L2_BYTES, TimingConfig, measure_run

# 1 first call + 3 estimate + 2 warm-up + 3 samples = 9 timed calls, whatever the clock says
EXACT = TimingConfig(warmup_s=0, warmup_calls=2, warmup_max_s=0, min_samples=3, max_samples=3, budget_s=0)
EXACT_CALLS = 9


class _Buffer:
    def __init__(self, trace):
        self.trace = trace

    def zero_(self):
        self.trace.append("M")
        return self


class _Event:
    def __init__(self, trace, clock):
        self.trace, self.clock, self.t = trace, clock, None

    def record(self):
        self.trace.append("R")
        self.t = len(self.trace)   # position in the stream as the event's timestamp

    def synchronize(self):
        assert self.t is not None

    def elapsed_time(self, end):
        return float(end.t - self.t) * self.clock   # ms


@pytest.fixture
def fake(monkeypatch):
    """A stand-in torch_npu (events) and torch.empty for npu devices (the flush buffer); both log to `trace`."""
    state = SimpleNamespace(trace=[], allocs=[], buffers=[])

    def event(enable_timing=False):
        assert enable_timing
        return _Event(state.trace, 0.001)

    npu = SimpleNamespace(Event=event, synchronize=lambda: None)
    monkeypatch.setattr(tn, "load", lambda: SimpleNamespace(npu=npu))
    real_empty = torch.empty

    def empty(*size, dtype=None, device=None, **kw):
        if not str(device).startswith("npu"):
            return real_empty(*size, dtype=dtype, device=device, **kw)
        state.allocs.append((size, dtype, device))
        buf = _Buffer(state.trace)
        state.buffers.append(weakref.ref(buf))
        return buf

    monkeypatch.setattr(torch, "empty", empty)
    return state


def _measure(backend, fake, cache):
    del fake.trace[:]
    m = measure_run(backend.timer(), lambda: fake.trace.append("K"), EXACT.with_cache(cache))
    return m, "".join(fake.trace)


def test_cold_by_default_flushes_once_per_sample_before_the_start_event(fake):
    b = TorchNpuBackend("1")
    timer = b.timer()
    assert timer.mode == "npu_event" and timer.cache_bytes == ASCEND_L2_BYTES == 192 * 1024 * 1024
    m, trace = _measure(b, fake, "auto")
    assert m.mode == "npu_event/cold" and len(m.samples) == 3
    # per timed call: flush, start event, kernel, end event -> the flush is outside the timed span
    assert trace == "MRKR" * EXACT_CALLS
    assert m.samples == [pytest.approx(2 * 1e-3 * 1e3)] * 3   # start..end spans the kernel only (2 trace steps)
    assert fake.allocs == [((ASCEND_L2_BYTES,), torch.int8, "npu:1")]   # once, on the backend's device
    m, trace = _measure(b, fake, "cold")
    assert trace == "MRKR" * EXACT_CALLS and len(fake.allocs) == 1       # reused across cases
    assert b.timer() is timer


def test_hot_never_flushes_nor_allocates(fake):
    b = TorchNpuBackend()
    m, trace = _measure(b, fake, "hot")
    assert m.mode == "npu_event/hot" and trace == "RKR" * EXACT_CALLS and fake.allocs == []


def test_close_drops_the_flush_buffer(fake):
    b = TorchNpuBackend()
    _measure(b, fake, "cold")
    assert len(fake.buffers) == 1 and fake.buffers[0]() is not None
    b.close()
    gc.collect()
    assert fake.buffers[0]() is None
    _measure(b, fake, "cold")                      # a later timer allocates afresh
    assert len(fake.allocs) == 2


def test_injected_api_keeps_the_host_timer():
    b = TorchNpuBackend(api=SimpleNamespace(), device="cpu")
    assert b.timer().mode == "host_perf_counter"

"""Timer interface, measurement protocol (warm-up, stopping rule, cold/hot cache), statistics and
roofline figures."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from harness import roofline, stats
from harness.timing import (ASCEND_L2_BYTES, DeviceFlusher, EventTimer, HostTimer, TimingConfig, measure,
                            measure_run, should_stop, warmup_budget, TIER_TIMING)


class ScriptedTimer:
    """A timer returning scripted sample values; records flushes and calls in order."""

    def __init__(self, values, mode="fake_event", flushable=True):
        self.mode = mode
        self.values = iter(values)
        self.log = []
        self.cache_bytes = 1024 if flushable else 0

    def flush(self):
        self.log.append("flush")

    def elapsed_us(self, launch):
        self.log.append("time")
        launch()
        return next(self.values)


def test_constant_samples_stop_on_noise_after_min_samples_and_min_time():
    cfg = TimingConfig(warmup_s=0.0, warmup_calls=1, min_samples=10, min_time_s=0.0, budget_s=5.0)
    m = measure_run(ScriptedTimer(itertools.repeat(50.0)), lambda: None, cfg)
    assert m.stop == "noise" and len(m.samples) == 10


def test_noisy_samples_stop_when_noise_estimate_stabilises_or_at_the_cap():
    rng = np.random.default_rng(0)
    vals = list(100 + 20 * rng.standard_normal(100_000))
    cfg = TimingConfig(warmup_s=0.0, warmup_calls=1, min_samples=10, budget_s=5.0, max_samples=5000)
    m = measure_run(ScriptedTimer(vals), lambda: None, cfg)
    assert m.stop == "stable" and 32 < len(m.samples) < 5000  # 20% noise never reaches 0.5%: stabilised
    cfg = TimingConfig(warmup_s=0.0, warmup_calls=1, min_samples=3, max_samples=40, stable_window=10_000)
    assert measure_run(ScriptedTimer(vals), lambda: None, cfg).stop == "max_samples"
    assert should_stop([1.0, 2.0, 3.0], [0.5, 0.5], elapsed_s=10.0, config=TimingConfig(budget_s=1.0)) == "budget"
    assert should_stop([1.0, 2.0], [0.5], elapsed_s=10.0, config=TimingConfig(min_samples=3)) == ""


def test_warmup_is_time_based_adaptive_and_longer_than_do_bench():
    nightly = TIER_TIMING["nightly"]
    assert warmup_budget(10e-6, nightly) == pytest.approx(0.1) and 0.1 > 0.025  # do_bench warms up 25 ms
    assert warmup_budget(20e-3, nightly) == pytest.approx(0.4)          # 20 estimated calls of a slow kernel
    assert warmup_budget(1.0, nightly) == nightly.warmup_max_s          # capped
    calls = []
    m = measure_run(HostTimer(), lambda: calls.append(1), TimingConfig(warmup_s=0.01, budget_s=0.005))
    assert m.warmup_s >= 0.01 and m.warmup_calls >= 5 and m.estimate_us > 0


def test_cold_cache_flushes_before_every_sample_outside_the_timed_call():
    cfg = TimingConfig(warmup_s=0.0, warmup_calls=1, min_samples=5, max_samples=5)
    t = ScriptedTimer(itertools.repeat(10.0))
    m = measure_run(t, lambda: None, cfg)  # auto: a device timer that can flush is cold
    assert m.mode == "fake_event/cold"
    assert t.log[-10:] == ["flush", "time"] * 5
    t = ScriptedTimer(itertools.repeat(10.0))
    assert measure_run(t, lambda: None, cfg.with_cache("hot")).mode == "fake_event/hot" and "flush" not in t.log
    assert measure_run(HostTimer(), lambda: None, cfg).mode == "host_perf_counter/hot"  # CPU: hot by default
    flushed = []
    host = HostTimer(flusher=DeviceFlusher(4096, lambda: flushed.append(1)))
    assert measure_run(host, lambda: None, cfg.with_cache("cold")).mode == "host_perf_counter/cold" and flushed
    with pytest.raises(ValueError):
        cfg.with_cache("lukewarm")


class FakeEvent:
    clock = [0.0]

    def record(self):
        self.t = FakeEvent.clock[0]

    def synchronize(self):
        pass

    def elapsed_time(self, other):  # milliseconds, like torch events
        return other.t - self.t


def test_event_timer_reports_device_time_in_microseconds_and_flush_precedes_start():
    order = []

    def launch():
        order.append("launch")
        FakeEvent.clock[0] += 0.25  # the "device" spends 0.25 ms

    t = EventTimer("fake_event", FakeEvent, lambda: None, DeviceFlusher(ASCEND_L2_BYTES, lambda: order.append("flush")))
    assert t.cache_bytes == 192 * 1024 * 1024
    t.flush()
    assert t.elapsed_us(launch) == pytest.approx(250.0)
    assert order == ["flush", "launch"]


def test_measure_keeps_the_old_signature_and_disabled_config():
    assert measure(HostTimer(), lambda: None, TimingConfig(enabled=False)) == []
    assert len(measure(HostTimer(), lambda: None, TimingConfig(warmup_s=0.0, budget_s=0.002, min_samples=3))) >= 3


def test_summary_statistics():
    x = list(range(1, 101))
    s = stats.summarize(x)
    assert s["median_us"] == 50.5 and s["min_us"] == 1 and s["n_samples"] == 100
    assert s["p20_us"] == pytest.approx(20.8) and s["p80_us"] == pytest.approx(80.2) and s["iqr_us"] == 49.5
    assert stats.stdrel([10, 10, 10]) == 0.0 and stats.stdrel([1]) == float("inf")
    lo, hi = stats.median_ci(x)
    assert lo < 50.5 < hi and hi - lo < 30
    assert stats.summarize([])["median_us"] is None


def test_roofline_table_and_override(tmp_path, monkeypatch):
    assert roofline.peak_for("NVIDIA H100 80GB HBM3").name == "NVIDIA H100 SXM"
    assert roofline.peak_for("NVIDIA H100 PCIe").gbps == 2000
    assert roofline.peak_for("NVIDIA H200").gbps == 4800
    assert roofline.peak_for("Ascend910B3").name.startswith("Atlas A2")
    assert roofline.peak_for("Ascend910_9382").name.startswith("Atlas A3")
    assert roofline.peak_for("some gpu") is None
    pct = roofline.percent_of_peak(roofline.peak_for("NVIDIA H200"), 2400.0, 98.9, "bfloat16")
    assert pct["pct_peak_bw"] == pytest.approx(50.0) and pct["pct_peak_flops"] == pytest.approx(10.0)
    f = tmp_path / "peaks.json"
    f.write_text(json.dumps([{"match": "Ascend910B3", "name": "measured B3", "gbps": 1234, "tflops": {"float16": 300}}]))
    monkeypatch.setenv("OPDIFF_DEVICE_PEAKS", str(f))
    assert roofline.peak_for("Ascend910B3").gbps == 1234


def test_host_memcpy_probe_and_percent_of_peak_in_results():
    from harness import registry
    from harness.runner import run_case

    assert roofline.memcpy_gbps(nbytes=8 * 1024 * 1024, repeats=2) > 0.1
    spec = registry.op("paged_cache_load")
    case = next(c for c in spec.cases("smoke") if not c.negative)
    res = run_case(spec, case, [registry.backend("numpy")], "smoke", 0, TimingConfig(warmup_s=0.0, budget_s=0.003))
    r = res.rows[0]
    assert r["timing_mode"] == "host_perf_counter/hot" and r["gbps"] > 0
    assert r["peak_device"] == "host CPU (memcpy probe)" and 0 < r["pct_peak_bw"]
    assert r["timing_stop"] in ("noise", "stable", "budget", "max_samples") and res.samples

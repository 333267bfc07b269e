"""Latency measurement through a backend-provided timer.

A Timer times one call of a launch function and returns elapsed microseconds:

    mode: str                                 e.g. "host_perf_counter", "cuda_event", "npu_event", "acl_event"
    elapsed_us(launch) -> float               one timed call; anything it does before starting the clock
                                              (a synchronize, a cache flush) is outside the timed region
    flush() -> None                 optional  evict the device's last-level cache (cold-cache timing)
    cache_bytes: int                optional  the size the flush covers (0: no flush available)

`HostTimer` wraps `perf_counter_ns` around launch + synchronize (CPU, and any device without events).
`EventTimer` records a start/end device event pair around the launch; the device backends (torch
on cuda/npu here; torch_npu and aclnn in their own modules) build one from their event class.
`DeviceFlusher` zeroes a buffer sized to the device's L2 (192 MiB on Ascend, the queried L2 size
on CUDA) before each cold sample, as nvbench and triton's do_bench do.

`measure()` runs the protocol: an untimed estimate of the per-call time, an adaptive time-based
warm-up, then samples until a stopping rule says stop (see `TimingConfig`). Input copies and
workspace allocation happen in `Backend.prepare`, never inside the timed call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from .stats import stdrel

ASCEND_L2_BYTES = 192 * 1024 * 1024  # what triton-ascend's get_empty_cache_for_benchmark allocates (benchmarking.md §3)
CUDA_L2_FALLBACK_BYTES = 256 * 1024 * 1024  # do_bench / Inductor fallback when L2_cache_size is not reported


class Timer(Protocol):
    mode: str

    def elapsed_us(self, launch: Callable[[], object]) -> float: ...


class HostTimer:
    """perf_counter_ns around launch + synchronize (synchronize before, too, so queued work is excluded)."""

    mode = "host_perf_counter"

    def __init__(self, synchronize: Callable[[], None] = lambda: None, flusher=None):
        self._sync = synchronize
        self._flusher = flusher
        self.cache_bytes = flusher.nbytes if flusher is not None else 0

    def flush(self) -> None:
        if self._flusher is not None:
            self._flusher.flush()

    def elapsed_us(self, launch):
        self._sync()
        t0 = time.perf_counter_ns()
        launch()
        self._sync()
        return (time.perf_counter_ns() - t0) / 1e3


class EventTimer:
    """Device events around one launch. `event_factory()` returns an event with `record()`,
    `synchronize()` and `elapsed_time(other) -> ms` (torch.cuda.Event / torch.npu.Event shape; an
    aclrtEvent wrapper can offer the same three methods)."""

    def __init__(self, mode: str, event_factory: Callable[[], object], synchronize: Callable[[], None],
                 flusher=None):
        self.mode = mode
        self._event = event_factory
        self._sync = synchronize
        self._flusher = flusher
        self.cache_bytes = flusher.nbytes if flusher is not None else 0

    def flush(self) -> None:
        if self._flusher is not None:
            self._flusher.flush()  # enqueued before the start event: on the stream, not in the timed span

    def elapsed_us(self, launch):
        start, end = self._event(), self._event()
        start.record()
        launch()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) * 1e3


class DeviceFlusher:
    """A buffer as large as the last-level cache, overwritten before each cold sample.
    `zero` is the in-place clear (torch: `buf.zero_`); allocation happens once, untimed."""

    def __init__(self, nbytes: int, zero: Callable[[], object]):
        self.nbytes = int(nbytes)
        self._zero = zero

    def flush(self) -> None:
        self._zero()

    @classmethod
    def torch(cls, device: str, nbytes: int) -> "DeviceFlusher":
        import torch

        buf = torch.empty(int(nbytes), dtype=torch.int8, device=device)
        return cls(nbytes, buf.zero_)


@dataclass(frozen=True)
class TimingConfig:
    """The measurement protocol (all times in seconds).

    warm-up:  lasts `warmup_s`, stretched for slow kernels to `warmup_per_call` estimated calls,
              capped at `warmup_max_s`, and never fewer than `warmup_calls` calls (DVFS: msprof
              uses 5). do_bench's 25 ms is reported too short (triton#2306), so nightly uses 100 ms.
    sampling: at least `min_samples` and `min_time_s`; stop when stdev/mean < `max_noise`
              (nvbench stdrel), or when the noise estimate has stabilised above it (relative
              stdev of the last `stable_window` estimates < `stable_rel`), or at `budget_s` /
              `max_samples`.
    cache:    "cold" flushes the cache before each sample, "hot" does not, "auto" is cold on a
              timer that can flush a device cache and hot on the host.
    """

    warmup_s: float = 0.005
    budget_s: float = 0.02        # sampling time cap (nvbench --timeout analogue, per case)
    min_samples: int = 3
    max_samples: int = 200
    enabled: bool = True
    max_noise: float = 0.005      # nvbench --max-noise 0.5%
    min_time_s: float = 0.0
    warmup_calls: int = 5
    warmup_per_call: int = 20
    warmup_max_s: float = 1.0
    stable_window: int = 32
    stable_rel: float = 0.05      # nvbench: noise estimates stable to 5% -> more samples will not help
    cache: str = "auto"

    def with_cache(self, cache: str) -> "TimingConfig":
        if cache not in ("auto", "cold", "hot"):
            raise ValueError(f"cache must be auto, cold or hot, not {cache!r}")
        return replace(self, cache=cache)


TIER_TIMING = {
    # smoke keeps CI fast: a short warm-up and cap; verdicts need nightly or --repeat.
    # smoke keeps CI fast: about 8 calls per case and backend (1 first call, 3 for the estimate,
    # 1 warm-up, 3 samples); its latencies are indicative only, verdicts need nightly or --repeat.
    "smoke": TimingConfig(warmup_s=0.0, budget_s=0.005, min_samples=3, max_samples=50, warmup_calls=1,
                          warmup_per_call=1, warmup_max_s=0.01, max_noise=0.02),
    "nightly": TimingConfig(warmup_s=0.1, budget_s=0.5, min_samples=10, max_samples=2000, min_time_s=0.05,
                            warmup_max_s=1.0),
    "full": TimingConfig(warmup_s=0.1, budget_s=1.0, min_samples=10, max_samples=5000, min_time_s=0.1,
                         warmup_max_s=3.0),
}


@dataclass
class Measurement:
    samples: list[float] = field(default_factory=list)
    mode: str = ""              # timer mode + cache, e.g. "cuda_event/cold"; never compare across modes
    estimate_us: float = 0.0
    warmup_s: float = 0.0
    warmup_calls: int = 0
    stop: str = ""              # why sampling stopped: noise, stable, budget, max_samples


def _cold(timer, config: TimingConfig) -> bool:
    can = getattr(timer, "cache_bytes", 0) > 0 and callable(getattr(timer, "flush", None))
    if config.cache == "cold":
        return can
    if config.cache == "hot":
        return False
    return can and getattr(timer, "mode", "") != HostTimer.mode


def warmup_budget(estimate_s: float, config: TimingConfig) -> float:
    """Warm-up seconds for a kernel of `estimate_s` per call (adaptive, tritonbench#1040 style)."""
    return min(config.warmup_max_s, max(config.warmup_s, config.warmup_per_call * estimate_s))


def should_stop(samples: list[float], noises: list[float], elapsed_s: float, config: TimingConfig) -> str:
    """'' to keep sampling, else the reason to stop."""
    n = len(samples)
    if n >= config.max_samples:
        return "max_samples"
    if n < config.min_samples:
        return ""
    if elapsed_s >= config.budget_s:
        return "budget"
    if elapsed_s < config.min_time_s:
        return ""
    if noises and noises[-1] < config.max_noise:
        return "noise"
    w = config.stable_window
    if len(noises) >= w and stdrel(noises[-w:]) < config.stable_rel:
        return "stable"
    return ""


def measure_run(timer: Timer, launch: Callable[[], object], config: TimingConfig) -> Measurement:
    cold = _cold(timer, config)
    m = Measurement(mode=f"{timer.mode}/{'cold' if cold else 'hot'}")
    if not config.enabled:
        return m

    def one() -> float:
        if cold:
            timer.flush()
        return timer.elapsed_us(launch)

    one()  # first call: lazy initialisation, allocator growth, code paths
    est = sorted(one() for _ in range(3))[1]
    m.estimate_us = est
    budget = warmup_budget(est * 1e-6, config)
    t0 = time.perf_counter()
    calls = 0
    while calls < config.warmup_calls or time.perf_counter() - t0 < budget:
        one()
        calls += 1
    m.warmup_s, m.warmup_calls = time.perf_counter() - t0, calls
    noises: list[float] = []
    t0 = time.perf_counter()
    while True:
        m.samples.append(one())
        if len(m.samples) >= 2:
            noises.append(stdrel(m.samples))
        m.stop = should_stop(m.samples, noises, time.perf_counter() - t0, config)
        if m.stop:
            return m


def measure(timer: Timer, launch: Callable[[], object], config: TimingConfig) -> list[float]:
    """Raw latency samples in microseconds (see measure_run for the protocol)."""
    return measure_run(timer, launch, config).samples

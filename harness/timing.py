"""Latency measurement through a backend-provided timer.

A Timer times one call of a launch function and returns elapsed microseconds. The host timer
wraps `perf_counter_ns` around a synchronize; device backends provide event-based timers.
`measure` warms up for a time budget, then samples until the time budget or the stopping rule
(relative spread below a threshold, after a minimum count) says stop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .stats import relative_spread


class Timer(Protocol):
    mode: str

    def elapsed_us(self, launch: Callable[[], object]) -> float: ...


class HostTimer:
    """perf_counter_ns around launch + synchronize (synchronize before, too, so queued work is excluded)."""

    mode = "host_perf_counter"

    def __init__(self, synchronize: Callable[[], None] = lambda: None):
        self._sync = synchronize

    def elapsed_us(self, launch):
        self._sync()
        t0 = time.perf_counter_ns()
        launch()
        self._sync()
        return (time.perf_counter_ns() - t0) / 1e3


@dataclass(frozen=True)
class TimingConfig:
    warmup_s: float = 0.005      # time-based warm-up (at least one call)
    budget_s: float = 0.02       # sampling time cap
    min_samples: int = 3
    max_samples: int = 200
    target_spread: float = 0.02  # stop early once IQR/median is below this (nvbench stdrel idea)
    enabled: bool = True


TIER_TIMING = {
    "smoke": TimingConfig(warmup_s=0.002, budget_s=0.01, min_samples=3, max_samples=50),
    "nightly": TimingConfig(warmup_s=0.05, budget_s=0.2, min_samples=10, max_samples=500),
    "full": TimingConfig(warmup_s=0.05, budget_s=0.2, min_samples=10, max_samples=500),
}


def measure(timer: Timer, launch: Callable[[], object], config: TimingConfig) -> list[float]:
    """Raw latency samples in microseconds."""
    if not config.enabled:
        return []
    t_end = time.perf_counter() + config.warmup_s
    timer.elapsed_us(launch)
    while time.perf_counter() < t_end:
        timer.elapsed_us(launch)
    samples: list[float] = []
    t_end = time.perf_counter() + config.budget_s
    while len(samples) < config.max_samples:
        samples.append(timer.elapsed_us(launch))
        if len(samples) >= config.min_samples:
            if time.perf_counter() >= t_end or relative_spread(samples) < config.target_spread:
                break
    return samples

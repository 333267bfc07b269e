"""Pure statistics over latency samples (microseconds)."""
from __future__ import annotations

import numpy as np

STAT_KEYS = ("median_us", "iqr_us", "p20_us", "p80_us", "min_us", "mean_us", "stdrel", "n_samples")


def summarize(samples_us) -> dict:
    """median, IQR, p20/p80, min, mean, relative std (std/mean) and count of a sample list."""
    x = np.asarray(list(samples_us), dtype=np.float64)
    if x.size == 0:
        return {k: None for k in STAT_KEYS} | {"n_samples": 0}
    q20, q25, q50, q75, q80 = np.percentile(x, [20, 25, 50, 75, 80])
    mean = float(x.mean())
    return {
        "median_us": float(q50), "iqr_us": float(q75 - q25), "p20_us": float(q20), "p80_us": float(q80),
        "min_us": float(x.min()), "mean_us": mean,
        "stdrel": float(x.std(ddof=1) / mean) if x.size > 1 and mean > 0 else 0.0,
        "n_samples": int(x.size),
    }


def stdrel(samples_us) -> float:
    """Sample standard deviation over mean (nvbench's `stdrel` noise estimate); inf below 2 samples."""
    x = np.asarray(list(samples_us), dtype=np.float64)
    if x.size < 2:
        return float("inf")
    mean = float(x.mean())
    return float(x.std(ddof=1) / mean) if mean > 0 else float("inf")


def median_ci(samples_us, confidence: float = 0.99) -> tuple[float, float] | tuple[None, None]:
    """Distribution-free confidence interval of the median from binomial order statistics (asv's
    approach). Valid for independent samples only: within one process they are not, so use this
    to describe a run, never to decide a regression (harness.regress decides on run medians)."""
    x = np.sort(np.asarray(list(samples_us), dtype=np.float64))
    n = x.size
    if n < 6:
        return (float(x[0]), float(x[-1])) if n else (None, None)
    z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}.get(confidence, 2.576)
    half = z * np.sqrt(n) / 2
    lo = int(max(0, np.floor(n / 2 - half)))
    hi = int(min(n - 1, np.ceil(n / 2 + half)))
    return float(x[lo]), float(x[hi])

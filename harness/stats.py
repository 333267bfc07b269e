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


def relative_spread(samples_us) -> float:
    """IQR over median: a robust relative spread used by the stopping rule."""
    x = np.asarray(list(samples_us), dtype=np.float64)
    if x.size < 2:
        return float("inf")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else float("inf")

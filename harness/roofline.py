"""Peak memory bandwidth and compute of the devices we time on, for "% of peak" columns.

A device name (what `Backend.device_name()` returns: torch.cuda.get_device_name(), the Ascend SoC
name, or "cpu") is matched against DEVICE_PEAKS by regular expression, first match wins. The host
CPU has no table row: its bandwidth is measured once per process by a memcpy probe.

The Ascend rows are nominal figures from public product material, which disagrees between sources
(910B HBM bandwidth is quoted anywhere from 0.4 to 1.8 TB/s); nothing here was measured on an NPU.
Override or extend the table with a JSON file named by OPDIFF_DEVICE_PEAKS:
    [{"match": "Ascend910B3", "name": "Atlas A2 910B3", "gbps": 1600, "tflops": {"float16": 313}}]
Peaks are dense (no structured sparsity); TFLOP/s per dtype of the math, float32 without TF32.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peak:
    name: str
    gbps: float | None                       # DRAM/HBM bandwidth, GB/s (1e9 bytes/s)
    tflops: dict = field(default_factory=dict)  # dtype -> dense TFLOP/s
    source: str = ""


DEVICE_PEAKS: list[tuple[str, Peak]] = [
    # NVIDIA datasheet values (dense; the datasheet's headline tensor figures are 2:4 sparse).
    (r"H200", Peak("NVIDIA H200", 4800, {"bfloat16": 989, "float16": 989, "float32": 67, "int8": 1979},
                   "NVIDIA H200 datasheet")),
    (r"H100.*NVL", Peak("NVIDIA H100 NVL", 3900, {"bfloat16": 835, "float16": 835, "float32": 60, "int8": 1670},
                        "NVIDIA H100 datasheet")),
    (r"H100.*PCIe", Peak("NVIDIA H100 PCIe", 2000, {"bfloat16": 756, "float16": 756, "float32": 51, "int8": 1513},
                         "NVIDIA H100 datasheet")),
    (r"H100", Peak("NVIDIA H100 SXM", 3350, {"bfloat16": 989, "float16": 989, "float32": 67, "int8": 1979},
                   "NVIDIA H100 datasheet")),
    # Atlas A3 (Ascend910_93xx): each die is one device to the runtime; nominal per-die figures.
    (r"910_?93|910C", Peak("Atlas A3 (Ascend910_93, per die)", 1600, {"bfloat16": 376, "float16": 376, "int8": 752},
                           "nominal, unverified: public product material")),
    # Atlas A2 (Ascend910B1..B4): nominal; B4 has half the HBM stacks.
    (r"910B4", Peak("Atlas A2 (Ascend910B4)", 800, {"bfloat16": 280, "float16": 280, "int8": 560},
                    "nominal, unverified: public product material")),
    (r"910B", Peak("Atlas A2 (Ascend910B1-B3)", 1600, {"bfloat16": 313, "float16": 313, "int8": 626},
                   "nominal, unverified: public product material (910B3 figures)")),
]


def _user_table() -> list[tuple[str, Peak]]:
    path = os.environ.get("OPDIFF_DEVICE_PEAKS")
    if not path:
        return []
    try:
        rows = json.loads(open(path, encoding="utf-8").read())
        return [(r["match"], Peak(r.get("name", r["match"]), r.get("gbps"), dict(r.get("tflops", {})),
                                  f"OPDIFF_DEVICE_PEAKS={path}")) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring OPDIFF_DEVICE_PEAKS=%s: %s", path, exc)
        return []


def peak_for(device_name: str | None) -> Peak | None:
    """The peak of a device by name; "cpu" (or a host backend) gets the memcpy probe."""
    if not device_name:
        return None
    for pattern, peak in _user_table() + DEVICE_PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    if device_name == "cpu":
        return host_peak()
    return None


@functools.lru_cache(maxsize=1)
def host_peak() -> Peak:
    gbps = _cached_memcpy_gbps()
    return Peak("host CPU (memcpy probe)", gbps, {}, f"memcpy probe: {gbps:.1f} GB/s read+write")


def _cached_memcpy_gbps() -> float:
    """The probe costs seconds; it is measured once per host and kept in the user's cache directory
    (OPDIFF_CACHE_DIR, else $XDG_CACHE_HOME/opdiff, else ~/.cache/opdiff). Delete the file to re-probe."""
    import json
    import os
    import socket
    from pathlib import Path

    from .envinfo import cpu_name

    root = os.environ.get("OPDIFF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "opdiff")
    path = Path(root) / "host_peak.json"
    key = f"{socket.gethostname()}|{cpu_name()}|{os.cpu_count()}"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key and float(cached["gbps"]) > 0:
            return float(cached["gbps"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    gbps = memcpy_gbps()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "gbps": gbps}))
        os.replace(tmp, path)
    except OSError:  # a read-only home is fine: the probe just runs again next time
        pass
    return gbps


def memcpy_gbps(nbytes: int = 256 * 1024 * 1024, repeats: int = 5) -> float:
    """Host memory bandwidth: best of `repeats` copies of a buffer far larger than any CPU cache,
    counting bytes read plus bytes written (the convention of `cost()`: bytes moved)."""
    import numpy as np

    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in, untimed
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def percent_of_peak(peak: Peak | None, gbps: float | None, tflops: float | None, dtype: str | None) -> dict:
    """{"pct_peak_bw": .., "pct_peak_flops": .., "peak_device": ..}; None where unknown."""
    out = {"pct_peak_bw": None, "pct_peak_flops": None, "peak_device": peak.name if peak else None}
    if peak is None:
        return out
    if gbps and peak.gbps:
        out["pct_peak_bw"] = 100.0 * gbps / peak.gbps
    tf = peak.tflops.get(dtype or "")
    if tflops and tf:
        out["pct_peak_flops"] = 100.0 * tflops / tf
    return out

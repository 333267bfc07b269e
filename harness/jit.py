"""numba compilation for the harness's few compiled loops (harness.error_stats, harness.half).

    compiled(fn, what, fastmath=False) -> fn compiled with nogil and error_model="numpy", cached on
                                         disk by numba (fastmath: numba's flags, e.g. {"reassoc"})

numba is imported here, on the first call: its import costs 0.2 s that `list` or `--help` need not
pay. error_model="numpy": a float division by zero gives inf/NaN instead of a checked branch per
division. Where numba finds no writable cache directory (a read-only install) it refuses cache=True
at decoration; the loop is then compiled without a disk cache, in every process (logged).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def compiled(fn, what: str, fastmath=False):
    from numba import njit

    try:
        return njit(cache=True, nogil=True, error_model="numpy", fastmath=fastmath)(fn)
    except RuntimeError as exc:
        log.info("numba cannot cache %s (%s); compiling it in every process", what, exc)
        return njit(nogil=True, error_model="numpy", fastmath=fastmath)(fn)

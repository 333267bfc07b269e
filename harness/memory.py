"""The process's allocator policy for large arrays: freed memory is kept for the next array.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mmap and gives
it back on free, so each large numpy temporary (a float64 copy of a cache, an error array) is faulted
in page by page, and the next one again. On the machines measured the faults cost more than the
arithmetic: a warm nightly run (bench/golden_store.py, profiled) took 29.1 s with glibc's defaults,
23.6 s with MALLOC_MMAP_MAX_=0 and a 64 GiB MALLOC_TRIM_THRESHOLD_, and 22.3 s with this function.
The price: the process keeps its peak heap until it exits, which a run does anyway.

keep_freed_memory() is called by the command-line entry points (python -m harness, the isolated
worker) and by bench scripts; a library import never changes the allocator. OPDIFF_MALLOC=default
leaves glibc's defaults. Not glibc (musl, macOS): nothing to do.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4      # mallopt parameters, <malloc.h>
# bytes of free heap top kept before giving it back: mallopt takes an int, so 2 GiB - 1 is the most
# (the largest nightly array is 1.5 GB: one of them stays cached)
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Turn glibc's mmap of large blocks off and keep freed heap; True when the allocator took it."""
    if os.environ.get("OPDIFF_MALLOC") == "default":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False                       # not glibc: its own policy stands
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        log.debug("mallopt refused; glibc's allocator defaults stand")
    return ok

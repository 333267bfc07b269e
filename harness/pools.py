"""Thread pools made on first use, and forgotten in a forked child: an isolated worker or an xdist
worker forked from a process that used one has the pool object but not its threads, and would wait
on them forever.

    pool = LazyPool("opdiff-fold", workers)   # workers: a number, or a function giving it at first use
    pool.get() -> ThreadPoolExecutor
    pool.forget()                              # the next get() makes a new one (a changed thread count)
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable


class LazyPool:
    def __init__(self, name: str, workers: int | Callable[[], int]):
        self.name, self.workers = name, workers
        self._executor: ThreadPoolExecutor | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.forget)

    def get(self) -> ThreadPoolExecutor:
        if self._executor is None:
            n = self.workers() if callable(self.workers) else self.workers
            self._executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix=self.name)
        return self._executor

    def forget(self) -> None:
        self._executor = None

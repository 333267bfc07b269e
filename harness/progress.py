"""A minimal terminal progress bar (only drawn when stderr is a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, stream=None, enabled: bool | None = None):
        self.total, self.done, self.failed = max(total, 1), 0, 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.t0 = time.monotonic()

    def step(self, label: str, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self.t0
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} fail={self.failed} {elapsed:5.1f}s {label[:40]:<40}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

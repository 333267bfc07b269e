"""pytest-xdist controller side: a worker that crashes (segfault, abort, OOM kill) costs one test,
never the session or a row.

  devices     each worker is handed its device through workerinput["opdiff_device"]: gwK gets the
              K-th of the pinned set; a replacement worker (xdist starts gw<N>, gw<N+1>, ... after
              a crash) gets the device its dead predecessor freed, else the next one round robin
  crash rows  the test a dead worker was running becomes rows with verdict `crash` for the
              --opdiff-out run directory (the worker died before it could write any), and
              run.json lists every crash under `crashes`

The hooks are xdist's (optionalhook: the plugin also loads where xdist is absent).
"""
from __future__ import annotations

import logging

import pytest

log = logging.getLogger(__name__)

DEVICE_KEY = "opdiff_device"


def matrix_id(nodeid: str) -> str | None:
    """The parametrize id of a matrix test node id (`...::test_x[<op>-<case id>-<backend>]`)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1:-1]


def next_device(devices: list[str], index: int, freed: list[str]) -> str:
    """Device for replacement worker number `index`: one freed by a dead worker, else round robin."""
    if freed:
        return freed.pop(0)
    return devices[index % len(devices)]


class Controller:
    """Registered on the xdist controller by harness.pytest_support."""

    def __init__(self, config, devices: list[str], workers: int):
        self.config, self.devices, self.workers = config, devices, workers
        self.freed: list[str] = []
        self.crashes: list[dict] = []
        self._ids = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        from .pytest_support import worker_index

        if not self.devices:  # no device set known here: each worker pins round robin itself
            return
        idx = worker_index(node.gateway.id)
        # the first `workers` ids are the initial set; later ids replace crashed workers
        dev = self.devices[idx] if idx < self.workers and idx < len(self.devices) else \
            next_device(self.devices, idx, self.freed)
        node.workerinput[DEVICE_KEY] = dev

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        dev = getattr(node, "workerinput", {}).get(DEVICE_KEY)
        if error is not None and dev is not None:
            self.freed.append(dev)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched) -> None:
        wid = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        reason = f"pytest-xdist worker {wid} died while running this test (segfault, abort or kill); " \
                 f"{report.longrepr}"
        rows = self._rows(crashitem, wid, reason)
        self.crashes.append({"nodeid": crashitem, "worker": wid, "reason": reason, "rows": rows})
        log.warning("worker %s crashed running %s: recorded as crash (%d row(s))", wid, crashitem, len(rows))

    def _rows(self, nodeid: str, wid: str, reason: str) -> list[dict]:
        from .engine import settled_rows

        state = self.config._opdiff
        hit = self._matrix().get(matrix_id(nodeid) or "")
        if hit is None:  # not a matrix test: listed in run.json, no result row to write
            return []
        spec, case, bname = hit
        # the known issues as the worker's engine would have applied them
        rows = settled_rows(state.ledger, spec, case, bname, "crash", reason, state.options.tier, state.options.seed)
        return [dict(r, worker=wid) for r in rows]

    def _matrix(self) -> dict:
        if self._ids is None:
            cases, backends = self.config._opdiff.matrix()
            self._ids = {f"{s.name}-{c.id}-{b}": (s, c, b) for s, c in cases for b in backends}
        return self._ids


def merge_crash_rows(rows: list[dict], crashes: list[dict]) -> tuple[list[dict], list[dict]]:
    """(crash rows to add, run.json `crashes` entries). A crash whose rows the worker already
    wrote (it died after the test, e.g. at teardown) adds none: no case is counted twice."""
    have = {(r.get("op"), r.get("case_id"), r.get("backend"), r.get("output")) for r in rows}
    add, listed = [], []
    for c in crashes:
        new = [r for r in c["rows"] if (r["op"], r["case_id"], r["backend"], r["output"]) not in have]
        add += new
        listed.append({"nodeid": c["nodeid"], "worker": c["worker"], "reason": c["reason"], "rows": len(new)})
    return add, listed

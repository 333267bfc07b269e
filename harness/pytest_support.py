"""pytest side of the matrix: one engine, one run directory, scale-out and known issues (wired in by conftest.py).

  one engine              every matrix test runs through the process's harness.engine.Engine (held on
                          `config._opdiff`, fixture `opdiff_run`), as `run` does: backends that may
                          crash (or all, with --isolate / --opdiff-timeout S) run in an isolated worker,
                          so a segfault or a hang is a `crash` / `timeout` row and a failed test, not a
                          dead pytest; the known issues are applied once, by the engine.
  --opdiff-out DIR        the rows go through the run-directory sink `run` uses (harness.sink): run.json
                          with the same keys (plus sink.PYTEST_KEYS, `source` "pytest"), results.jsonl,
                          samples.jsonl and done.jsonl flushed per test, the parquet files at session end;
                          the main process holds the directory's writer lock (harness.rundir) throughout.
                          Under xdist every worker appends to its own DIR/parts/<worker>.*.jsonl and the
                          controller feeds them through its sink at session end.
  one worker per device   `pytest -n 8` with pytest-xdist: worker gwK is pinned to device K of
                          --opdiff-devices (default: ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES
                          if set, else 0..N-1) by setting both variables in pytest_configure, before
                          any test module is imported, so before any device runtime starts. A worker
                          that crashes is replaced by xdist (gw<N>, ...); the replacement gets the dead
                          worker's device (harness.xdist_crash), and its test becomes a `crash` row.
  known issues            loaded at configure time; quarantine -> skip and xfail -> strict xfail marks
                          at collection (the test judges CaseResult.judged: the rows as they ran).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import pytest

from .errors import UsageError

log = logging.getLogger(__name__)

DEVICE_VARS = ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
#: worker-info keys that describe the backends as that process saw them: run.json top-level keys, not per worker
PROBE_KEYS = ("availability", "devices", "isolated_backends", "timeout_s")


def add_options(group) -> None:
    from .execute import positive_seconds

    group.addoption("--opdiff-out", metavar="DIR", default=None,
                    help="write the matrix results of this session (all xdist workers) into one run directory")
    group.addoption("--opdiff-devices", metavar="LIST", default=None,
                    help="devices for xdist workers, e.g. 0-7 or 0,2,4 (default: the visible-devices variable, "
                         "else 0..N-1); worker gwK gets the K-th")
    group.addoption("--known-issues", metavar="DIR", default=None,
                    help="known-issue directory (default cases/known_issues)")
    group.addoption("--isolate", action="store_true", default=False,
                    help="run every backend in an isolated worker (a crash or hang becomes a verdict); default: "
                         "only backends that may crash the process (torch_npu, aclnn), as `run` does")
    group.addoption("--no-isolate", action="store_true", default=False, help="run every backend in-process")
    # not --timeout: pytest-timeout owns that name (a whole-test limit that kills the session's process)
    group.addoption("--opdiff-timeout", type=positive_seconds, default=None, metavar="S",
                    help="seconds one case may take on an isolated backend before its worker is killed and the "
                         "case recorded as `timeout` (default 600); isolates every backend, as `run --timeout`")


def parse_devices(text: str) -> list[str]:
    out = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UsageError(f"--opdiff-devices {text!r}: expected ids like 0-7 or 0,1,2 ({part!r} is neither)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UsageError(f"--opdiff-devices {text!r}: empty range {part!r}")
        out += [str(i) for i in range(lo, hi + 1)]
    if len(set(out)) != len(out):
        raise UsageError(f"--opdiff-devices {text!r}: a device is listed twice")
    return out


def worker_index(wid: str) -> int:
    return int(re.sub(r"\D", "", wid) or 0)


def worker_info(config) -> tuple[str, int, int]:
    """(worker id, index, count); ('main', 0, 1) without xdist."""
    wi = getattr(config, "workerinput", None)
    if not wi:
        return "main", 0, 1
    wid = wi["workerid"]
    idx = worker_index(wid)
    return wid, idx, int(wi.get("workercount", idx + 1))


def pin_device(config) -> str | None:
    """On an xdist worker, restrict the visible devices to this worker's one. Returns it."""
    wid, idx, count = worker_info(config)
    if wid == "main":
        return None
    devices = device_list(config, count)
    started = [m for m in ("torch_npu", "acl") if m in sys.modules]
    if started:  # pinning after the runtime started would be silently ignored
        raise UsageError(f"worker {wid}: {', '.join(started)} already imported before device pinning")
    # the controller's choice (harness.xdist_crash); a replacement worker's index exceeds the
    # device count, so without one it wraps round robin rather than falling off the list
    dev = config.workerinput.get("opdiff_device") or devices[idx % len(devices)]
    for var in DEVICE_VARS:
        os.environ[var] = dev
    return dev


def device_list(config, count: int) -> list[str]:
    """The pinned device set for `count` workers (refused when it is smaller)."""
    text = config.getoption("--opdiff-devices")
    if text:
        devices = parse_devices(text)
    else:
        env = next((os.environ[v] for v in DEVICE_VARS if os.environ.get(v, "").strip()), None)
        devices = parse_devices(env) if env else [str(i) for i in range(count)]
    if count > len(devices):
        raise UsageError(f"{count} xdist workers but only {len(devices)} device(s) ({','.join(devices)}); "
                         f"use -n {len(devices)} (one worker per device)")
    return devices


# ---- configure / finish --------------------------------------------------------------------------

def configure(config) -> None:
    try:
        _configure(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def _configure(config) -> None:
    from . import ledger as ledger_mod
    from . import registry
    from .engine import Options, check_timeout, isolation_policy

    config._opdiff_device = pin_device(config)
    wid, _, _ = worker_info(config)
    backends = registry.parse_names(config.getoption("--backends"), "backend", registry.backend_names(),
                                    allow_options=True)
    ledger = ledger_mod.load(config.getoption("--known-issues"), backends)
    isolate = isolation_policy(config.getoption("--isolate"), config.getoption("--no-isolate"))
    timeout = config.getoption("--opdiff-timeout")
    check_timeout(isolate, timeout, "--opdiff-timeout")
    options = Options(tier=config.getoption("--tier"), seed=config.getoption("--seed"), isolate=isolate,
                      timeout=timeout)  # timing off: latency belongs to benchmarks, not tests
    state = config._opdiff = MatrixSession(config, backends, ledger, options)
    if wid == "main" and ledger.entries:
        config.pluginmanager.register(_UnmatchedCheck(ledger), "opdiff-known-issues-check")
    controller = _is_xdist_controller(config)
    if controller:
        _register_controller(config)
    out = config.getoption("--opdiff-out")
    if not out:
        return
    out = Path(out)
    if wid == "main":
        state.lock = _claim(out, parts=controller)
        try:
            state.open_sink(out, probe=not controller)  # the controller runs no backend: its workers probe
        except BaseException:
            state.lock.release()
            raise
    else:
        state.open_parts(out, wid)


class MatrixSession:
    """What the plugin holds on `config._opdiff`: the selection, the known issues, the engine that runs
    this process's matrix tests (built on first use) and the --opdiff-out sink (harness.sink)."""

    def __init__(self, config, backends: list[str], ledger, options):
        self.config, self.backend_names, self.ledger, self.options = config, backends, ledger, options
        self.sink = None       # RunSink in the main process (xdist: the controller's), PartSink on a worker
        self.lock = None       # the run directory's writer lock, held by the main process
        self.info = None       # this process in run.json `workers`
        self.unrun: dict[str, str] = {}  # matrix test id -> why collection skipped it (backend unavailable, declined)
        self._engine = None
        self._matrix = None

    @property
    def engine(self):
        if self._engine is None:
            from . import registry
            from .engine import Engine

            self._engine = Engine([registry.backend(n) for n in self.backend_names], self.options, self.ledger)
        return self._engine

    def matrix(self) -> tuple[list, list[str]]:
        """([(spec, case)] of the selected ops and tier, backend names), derived once."""
        if self._matrix is None:
            from . import registry

            specs = [registry.op(n) for n in self.ops()]
            self._matrix = ([(s, c) for s in specs for c in s.cases(self.options.tier)], self.backend_names)
        return self._matrix

    def ops(self) -> list[str]:
        """The selected op names (--ops)."""
        from . import registry

        return registry.parse_names(self.config.getoption("--ops"), "op", registry.op_names())

    def run(self, spec, case, backend_name: str):
        """One matrix test: the case on one backend through the engine; its rows into the sink."""
        res = self.engine.run_case(spec, case, [backend_name])
        if self.sink is not None:
            self.sink.add(spec.name, case.id, res.rows, res.samples, backend=backend_name)
        return res

    def record_unrun(self, spec, case, backend_name: str, why: str) -> None:
        """The rows `run` writes for a backend that is unavailable or declines the case, for a test
        collection skipped (the engine is not asked: nothing would be launched)."""
        from .engine import settled_rows

        if self.sink is not None:
            rows = settled_rows(self.ledger, spec, case, backend_name, "skipped", why, self.options.tier,
                                self.options.seed)
            self.sink.add(spec.name, case.id, rows, (), backend=backend_name)

    def plan_args(self) -> dict:
        """run.json `plan_args` with `run`'s keys (harness.resume.PLAN_DEFAULTS); the -k selection is in `command`."""
        from .resume import PLAN_DEFAULTS

        opt = self.config.getoption
        return dict(PLAN_DEFAULTS, ops=opt("--ops"), backends=opt("--backends"), tier=self.options.tier,
                    seed=self.options.seed, no_timing=True, isolate=self.options.isolate,
                    timeout=self.options.timeout, known_issues=opt("--known-issues"))

    def _probe(self) -> dict:
        from . import sink

        return dict(sink.backend_meta(self.engine.backends), **self.engine.describe())

    def open_sink(self, out: Path, probe: bool) -> None:
        from . import sink

        engine = {"isolated_backends": None, "timeout_s": None}
        probed = None
        if probe:
            probed = self._probe()
            engine = {k: probed[k] for k in engine}
            self.info = dict(sink.process_info(self.config._opdiff_device, DEVICE_VARS), worker="main")
        meta = sink.run_meta("pytest", self.ops(), self.backend_names, self.options.tier, self.options.seed,
                             self.plan_args(), engine, probed)
        self.sink = sink.RunSink(out, meta, self.lock)

    def open_parts(self, out: Path, wid: str) -> None:
        from . import sink

        info = dict(sink.process_info(self.config._opdiff_device, DEVICE_VARS), **self._probe())
        self.sink = sink.PartSink(out, wid, info)

    def close(self) -> None:
        """The engine's isolated worker, and a worker's part files (the main sink is finished by finish())."""
        if self._engine is not None:
            self._engine.close()
        if self.sink is not None and self.lock is None:
            self.sink.close()


def record_unrun(item) -> None:
    """At the setup of a matrix test that collection skipped for its backend: its rows into --opdiff-out."""
    state = getattr(item.config, "_opdiff", None)
    callspec = getattr(item, "callspec", None)
    why = state.unrun.get(callspec.id) if state is not None and callspec is not None else None
    if why is None:
        return
    spec, case = callspec.params.get("op_case") or callspec.params["negative_case"]
    state.record_unrun(spec, case, callspec.params["backend_name"], why)


class _UnmatchedCheck:
    """Entries matching no case: a warning locally, a usage error in CI. Runs at session start
    (deriving every tier's cases during configure would trip hypothesis' plugin-init check)."""

    def __init__(self, ledger):
        self.ledger = ledger

    @pytest.hookimpl(trylast=True)  # after hypothesis' own sessionstart ends its initialization phase
    def pytest_sessionstart(self, session):
        import warnings

        from . import registry

        try:
            specs = [registry.op(n) for n in session.config._opdiff.ops()]
            msgs = self.ledger.check_unmatched(specs)  # raises in CI
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        for msg in msgs:
            warnings.warn(msg, UserWarning, stacklevel=1)


def _is_xdist_controller(config) -> bool:
    return worker_info(config)[0] == "main" and config.getvalue("dist") not in (None, "no") \
        if config.pluginmanager.hasplugin("xdist") else False


def _register_controller(config) -> None:
    from .xdist_crash import Controller

    n = config.getoption("numprocesses", None)
    devices = None
    if isinstance(n, int) and n > 0:
        try:
            devices = device_list(config, n)
        except UsageError:
            devices = None  # each worker raises the same error itself, naming its id
    controller = Controller(config, devices or [], n if isinstance(n, int) else 0)
    config._opdiff_controller = controller
    config.pluginmanager.register(controller, "opdiff-xdist-controller")


def _claim(out: Path, parts: bool):
    """Create and lock the session's run directory (refusing one that holds a run or anything else)."""
    from . import rundir
    from .sink import PARTS

    if (out / PARTS).exists() and not (out / "run.json").exists():
        raise UsageError(f"--opdiff-out {out}: already holds a run (parts/, unfinished); choose a new directory")
    lock = rundir.claim_new(out, "--opdiff-out")
    if parts:
        (out / PARTS).mkdir()
    return lock


def finish(session) -> None:
    state = getattr(session.config, "_opdiff", None)
    if state is None:
        return
    state.close()
    if state.lock is None:  # no --opdiff-out, or an xdist worker: the main process writes the run directory
        return
    try:
        consolidate_parts(state.sink.dir, session.config, getattr(session, "exitstatus", None))
    finally:
        state.lock.release()


#: pytest exit statuses after which every selected test ran (0 passed, 1 failed, 5 none collected);
#: any other (interrupted, internal error, usage error) leaves the run directory `interrupted`.
COMPLETE_EXIT = (0, 1, 5)


def consolidate_parts(out: Path, config=None, exitstatus=None) -> dict:
    """Finish a session's run directory; returns its run.json. Every xdist worker's part files go
    through the sink (a truncated last line, left by a worker that died mid-write, is dropped and
    reported in run.json `problems`, never silently); the test a crashed worker was running becomes
    `crash` rows, listed in run.json `crashes`. Without `config` (a directory of parts alone) it
    writes a bare run.json of what the parts hold."""
    from . import rundir
    from .results import read_jsonl
    from .sink import RunSink, failures, read_parts
    from .xdist_crash import merge_crash_rows

    out = Path(out)
    workers, parts, problems = read_parts(out)  # a corrupt part is an error before anything is written
    for problem in problems:
        log.warning("%s", problem)
    state = getattr(config, "_opdiff", None) if config is not None else None
    own_lock = None
    if state is not None and state.sink is not None:
        sink = state.sink
    else:
        own_lock = rundir.RunLock(out).acquire()
        sink = RunSink(out, {"source": "pytest"}, own_lock)
    try:
        sink.add_rows(parts["results"], parts["samples"])
        for line in parts["done"]:
            sink.add_done(line)
        controller = getattr(config, "_opdiff_controller", None) if config is not None else None
        crash_rows, crashes = merge_crash_rows(parts["results"], controller.crashes if controller else [])
        sink.add_rows(crash_rows)
        _probed_by_workers(sink.meta, workers)
        rows = read_jsonl(out / "results.jsonl")
        if state is not None and state.info is not None:  # one process ran the tests and wrote directly
            workers = [dict(state.info, rows=len(rows))]
        cases = len({(r.get("op"), r.get("case_id")) for r in rows})
        fail_on = config.getoption("--fail-on") if config is not None else "fail"
        summary = {"cases": cases, "failed": len(failures(rows, fail_on)),
                   "known_issues": state.ledger.summary(rows) if state is not None else [],
                   "workers": workers, "problems": problems, "crashes": crashes,
                   "pytest_exitstatus": None if exitstatus is None else int(exitstatus)}
        if sink.meta.get("plan_total") is None:
            summary["plan_total"] = cases  # the tests selected (-k) are the plan
        status = "finished" if exitstatus is None or int(exitstatus) in COMPLETE_EXIT else "interrupted"
        sink.finish(summary, status)
    finally:
        if own_lock is not None:
            own_lock.release()
    return sink.meta


def _probed_by_workers(meta: dict, workers: list[dict]) -> None:
    """Under xdist the backends were asked in the workers: the first worker's answers become run.json's
    keys (the controller ran none); the worker entries keep only what is about the process."""
    probes = [{k: w.pop(k) for k in PROBE_KEYS if k in w} for w in workers]
    probe = next((p for p in probes if "availability" in p), None)
    if probe is None:
        return
    meta["availability"] = probe["availability"]
    meta.setdefault("env", {})["devices"] = probe.get("devices", {})
    meta.update(isolated_backends=probe.get("isolated_backends"), timeout_s=probe.get("timeout_s"))

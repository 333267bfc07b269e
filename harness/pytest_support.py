"""pytest side of scale-out and known issues (wired in by conftest.py).

  one worker per device   `pytest -n 8` with pytest-xdist: worker gwK is pinned to device K of
                          --opdiff-devices (default: ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES
                          if set, else 0..N-1) by setting both variables in pytest_configure, before
                          any test module is imported, so before any device runtime starts. A worker
                          that crashes is replaced by xdist (gw<N>, ...); the replacement gets the dead
                          worker's device (harness.xdist_crash), and its test becomes a `crash` row.
  --opdiff-out DIR        every process appends its rows, flushed per case, to DIR/parts/<worker>.*.jsonl
                          (no two processes share a file); at session end the controller consolidates
                          them into one run directory (run.json, results.jsonl -> results.parquet),
                          holding the directory's writer lock (harness.rundir) for the whole session.
  known issues            loaded at configure time; quarantine -> skip and xfail -> strict xfail marks
                          at collection; tolerance entries rewrite rows through runner.RESULT_HOOKS.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from .errors import UsageError

log = logging.getLogger(__name__)

DEVICE_VARS = ("ASCEND_RT_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
PARTS = "parts"


def add_options(group) -> None:
    group.addoption("--opdiff-out", metavar="DIR", default=None,
                    help="write the matrix results of this session (all xdist workers) into one run directory")
    group.addoption("--opdiff-devices", metavar="LIST", default=None,
                    help="devices for xdist workers, e.g. 0-7 or 0,2,4 (default: the visible-devices variable, "
                         "else 0..N-1); worker gwK gets the K-th")
    group.addoption("--known-issues", metavar="DIR", default=None,
                    help="known-issue directory (default cases/known_issues)")


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
    from .runner import RESULT_HOOKS

    config._opdiff_device = pin_device(config)
    wid, _, _ = worker_info(config)
    backends = registry.parse_names(config.getoption("--backends"), "backend", registry.backend_names(),
                                    allow_options=True)
    ledger = ledger_mod.load(config.getoption("--known-issues"), backends)
    config._opdiff_ledger = ledger
    if wid == "main" and ledger.entries:
        config.pluginmanager.register(_UnmatchedCheck(ledger), "opdiff-known-issues-check")
    hooks = []
    if any(e.kind == "tolerance" for e in ledger.entries):
        hooks.append(lambda spec, case, res: ledger.apply(spec, case, res.rows, kinds=("tolerance",)))
    if _is_xdist_controller(config):
        _register_controller(config)
    out = config.getoption("--opdiff-out")
    config._opdiff_out = Path(out) if out else None
    if out:
        if wid == "main":
            config._opdiff_lock = _claim(Path(out))
        if not _is_xdist_controller(config):  # the controller runs no tests
            rec = _Recorder(Path(out), wid, config._opdiff_device, ledger)
            config._opdiff_recorder = rec
            hooks.append(rec)
    RESULT_HOOKS.extend(hooks)
    config._opdiff_hooks = hooks


class _UnmatchedCheck:
    """Entries matching no case: a warning locally, a usage error in CI. Runs at session start
    (deriving every tier's cases during configure would trip hypothesis' plugin-init check)."""

    def __init__(self, ledger):
        self.ledger = ledger

    @pytest.hookimpl(trylast=True)  # after hypothesis' own sessionstart ends its initialization phase
    def pytest_sessionstart(self, session):
        import warnings

        from . import registry

        config = session.config
        try:
            specs = [registry.op(n) for n in registry.parse_names(config.getoption("--ops"), "op",
                                                                  registry.op_names())]
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


def _claim(out: Path):
    """Create and lock the session's run directory (refusing one that holds a run or anything else)."""
    from . import rundir

    if (out / PARTS).exists() and not (out / "run.json").exists():
        raise UsageError(f"--opdiff-out {out}: already holds a run (parts/, unfinished); choose a new directory")
    lock = rundir.claim_new(out, "--opdiff-out")
    (out / PARTS).mkdir()
    return lock


class _Recorder:
    """Appends one process's rows to its own part files, flushed per case."""

    def __init__(self, out: Path, wid: str, device: str | None, ledger):
        from . import rundir

        self.out, self.wid, self.ledger = out, wid, ledger
        (out / PARTS).mkdir(parents=True, exist_ok=True)
        self._rows = rundir.open_append(out / PARTS / f"{wid}.results.jsonl")
        self._samples = rundir.open_append(out / PARTS / f"{wid}.samples.jsonl")
        info = {"worker": wid, "device": device, "pid": os.getpid(), "host": socket.gethostname(),
                "visible_devices": {v: os.environ.get(v) for v in DEVICE_VARS}}
        rundir.atomic_write(out / PARTS / f"{wid}.json", json.dumps(info, indent=2))

    def __call__(self, spec, case, result) -> None:
        from .results import _json_safe

        rows = [dict(r, worker=self.wid) for r in result.rows]
        self.ledger.apply(spec, case, rows, kinds=("xfail",))  # the run directory reads like a CLI run
        for r in rows:
            self._rows.write(json.dumps(r, default=_json_safe) + "\n")
        for s in result.samples:
            self._samples.write(json.dumps(s, default=_json_safe) + "\n")
        self._rows.flush()
        self._samples.flush()

    def close(self) -> None:
        self._rows.close()
        self._samples.close()


def finish(session) -> None:
    config = session.config
    from .runner import RESULT_HOOKS

    for h in getattr(config, "_opdiff_hooks", []):
        if h in RESULT_HOOKS:
            RESULT_HOOKS.remove(h)
    rec = getattr(config, "_opdiff_recorder", None)
    if rec is not None:
        rec.close()
    out = getattr(config, "_opdiff_out", None)
    if out is not None and worker_info(config)[0] == "main":
        lock = getattr(config, "_opdiff_lock", None)
        try:
            consolidate_parts(out, config, getattr(session, "exitstatus", None))
        finally:
            if lock is not None:
                lock.release()


#: pytest exit statuses after which every selected test ran (0 passed, 1 failed, 5 none collected);
#: any other (interrupted, internal error, usage error) leaves the run directory `interrupted`.
COMPLETE_EXIT = (0, 1, 5)


def consolidate_parts(out: Path, config=None, exitstatus=None) -> dict:
    """Part files of every worker -> one run directory. A worker that died mid-write leaves a
    truncated last line: it is dropped and reported in run.json `problems`, never silently; the
    test a crashed worker was running becomes `crash` rows, listed in run.json `crashes`."""
    from . import rundir
    from .envinfo import fingerprint
    from .results import consolidate, new_run_id
    from .xdist_crash import merge_crash_rows

    run_id = new_run_id()
    workers, problems = [], []
    parts = {"results": [], "samples": []}
    for info_path in sorted((out / PARTS).glob("*.json")):
        info = json.loads(info_path.read_text())
        wid = info["worker"]
        counts = {}
        for stem in ("results", "samples"):
            rows, problem = _read_part(out / PARTS / f"{wid}.{stem}.jsonl")
            if problem:
                problems.append(problem)
                log.warning("%s", problem)
            parts[stem] += rows
            counts[stem] = len(rows)
        workers.append(dict(info, rows=counts["results"]))
    controller = getattr(config, "_opdiff_controller", None) if config is not None else None
    crash_rows, crashes = merge_crash_rows(parts["results"], controller.crashes if controller else [])
    parts["results"] += crash_rows
    for stem, rows in parts.items():
        rundir.atomic_write(out / f"{stem}.jsonl",
                            "".join(json.dumps(dict(r, run_id=run_id), allow_nan=True) + "\n" for r in rows))
    n = len(parts["results"])
    status = "finished" if exitstatus is None or int(exitstatus) in COMPLETE_EXIT else "interrupted"
    meta = {"run_id": run_id, "status": status, "source": "pytest", "workers": workers, "problems": problems,
            "crashes": crashes, "pytest_exitstatus": None if exitstatus is None else int(exitstatus),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "env": fingerprint(), "rows": n}
    if config is not None:
        meta.update(command=sys.argv, tier=config.getoption("--tier"), seed=config.getoption("--seed"),
                    plan_args={"ops": config.getoption("--ops"), "backends": config.getoption("--backends"),
                               "tier": config.getoption("--tier"), "seed": config.getoption("--seed")},
                    known_issues=[e.describe() for e in config._opdiff_ledger.entries])
    consolidate(out)
    rundir.atomic_write(out / "run.json", json.dumps(meta, indent=2, sort_keys=True, default=str))
    return meta


def _read_part(path: Path) -> tuple[list[dict], str | None]:
    if not path.exists():
        return [], None
    rows, problem = [], None
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines):  # no newline after it: a writer killed mid-line
                problem = f"{path}:{i}: truncated last line dropped (worker died while writing?)"
                continue
            raise UsageError(f"{path}:{i}: corrupt results line ({exc.msg})") from None
    return rows, problem

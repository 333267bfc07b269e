"""The one result sink: the run-directory format that `run` and `pytest --opdiff-out` both write.

    run_meta(...)             the run.json keys every run has, whoever ran it (RUN_KEYS), written
                              with status `running` before the first case
    RunSink(dir, meta, lock)  per unit of work (a case; under pytest a case on one backend): its
                              rows to results.jsonl, samples to samples.jsonl, then a line to
                              done.jsonl, all flushed (harness.resume); finish(summary) writes the
                              parquet files (harness.results) and run.json's final keys
    PartSink(dir, worker)     the same per-unit files of one pytest-xdist worker under DIR/parts/
                              (no two processes append to one file); at session end the controller
                              reads them back (read_parts) and feeds them through its RunSink

A pytest session's run.json has every key of a CLI run plus PYTEST_KEYS; `source` says which wrote it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import rundir
from .envinfo import fingerprint
from .results import RunWriter, json_safe, read_jsonl
from .resume import DoneLog
from .verdicts import is_failure

PARTS = "parts"
#: run.json keys of every run directory (a `run` may add replay, engine, golden_store, canary, resumed)
RUN_KEYS = ("source", "command", "ops", "backends", "tier", "seed", "env", "availability", "plan_args", "shard",
            "plan_total", "isolated_backends", "timeout_s", "run_id", "started", "status", "finished", "rows",
            "cases", "failed", "known_issues")
#: keys only a pytest session writes: its processes, part files dropped, crashed tests, exit status
PYTEST_KEYS = ("workers", "problems", "crashes", "pytest_exitstatus")
STEMS = ("results", "samples", "done")


def backend_meta(backends) -> dict:
    """availability and device names, asked of the backends in the process that runs them."""
    devices = {b.name: (b.device_name() if b.available() else "unavailable") for b in backends}
    return {"availability": {b.name: b.available().reason or "available" for b in backends}, "devices": devices}


def run_meta(source: str, ops, backends, tier: str, seed: int, plan_args: dict, engine: dict,
             probed: dict | None = None, shard=None, plan_total=None, env: dict | None = None) -> dict:
    """run.json at the start of a run. `engine`: Engine.describe(); `probed`: backend_meta() (an
    xdist controller runs no backend: its workers' probes fill it in at the end); `env`: the
    environment fingerprint (default harness.envinfo's, with the probed devices)."""
    probed = probed or {"availability": {}, "devices": {}}
    return {"source": source, "command": sys.argv, "ops": list(ops), "backends": list(backends), "tier": tier,
            "seed": seed, "env": fingerprint(probed["devices"]) if env is None else env,
            "availability": probed["availability"], "plan_args": plan_args, "shard": shard, "plan_total": plan_total,
            **engine}


def failures(rows, fail_on: str = "fail") -> list[dict]:
    """The first row not as expected of every (op, case, backend) that has one, in row order; a row
    that does not say it is as expected (no `ok`) is not."""
    seen, out = set(), []
    for r in rows:
        key = (r.get("op"), r.get("case_id"), r.get("backend"))
        if key not in seen and is_failure(dict(r, ok=r.get("ok", False)), fail_on):
            seen.add(key)
            out.append(r)
    return out


class RunSink:
    """Writes one run directory; the caller holds its lock (harness.rundir) until finish()."""

    def __init__(self, out_dir, meta: dict, lock: rundir.RunLock):
        self.writer = RunWriter(out_dir, meta, lock=lock)
        self.dir = self.writer.dir
        self._done = DoneLog(self.dir)

    @property
    def meta(self) -> dict:
        return self.writer.meta

    def add(self, op: str, case_id: str, rows: list[dict], samples=(), **done) -> None:
        """One finished unit of work: its rows and samples, then its done line (`done`: extra keys)."""
        self.writer.append(rows, samples)
        self._done.add(op, case_id, rows=len(rows), **done)

    def add_rows(self, rows: list[dict], samples=()) -> None:
        """Rows of no finished unit (a test whose worker died: its crash rows)."""
        self.writer.append(rows, samples)

    def add_done(self, line: dict) -> None:
        extra = {k: v for k, v in line.items() if k not in ("op", "case_id", "rows")}
        self._done.add(line["op"], line["case_id"], rows=line.get("rows"), **extra)

    def finish(self, summary: dict, status: str = "finished") -> None:
        self._done.close()
        self.writer.finish(summary, status)


class PartSink:
    """One pytest-xdist worker's share: DIR/parts/<worker>.{results,samples,done}.jsonl and <worker>.json."""

    def __init__(self, out_dir, worker: str, info: dict):
        self.worker = worker
        parts = Path(out_dir) / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        self._files = {stem: rundir.open_append(parts / f"{worker}.{stem}.jsonl") for stem in STEMS}
        rundir.atomic_write(parts / f"{worker}.json", json.dumps(dict(info, worker=worker), indent=2, default=str))

    def add(self, op: str, case_id: str, rows: list[dict], samples=(), **done) -> None:
        self._write("results", [dict(r, worker=self.worker) for r in rows])
        self._write("samples", samples)
        self._write("done", [dict({"op": op, "case_id": case_id, "rows": len(rows)}, **done)])

    def _write(self, stem: str, objs) -> None:
        f = self._files[stem]
        for o in objs:
            f.write(json.dumps(o, default=json_safe, allow_nan=True) + "\n")
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def read_parts(out_dir) -> tuple[list[dict], dict, list[str]]:
    """(worker infos with their row counts, {stem: rows of every worker}, problems). A worker that died
    mid-write leaves a truncated last line: dropped and named in `problems`, never silently; a corrupt
    line elsewhere is a UsageError naming file and line."""
    parts = Path(out_dir) / PARTS
    workers, problems = [], []
    merged = {stem: [] for stem in STEMS}
    for info_path in sorted(parts.glob("*.json")):
        info = json.loads(info_path.read_text())
        wid = info["worker"]
        for stem in STEMS:
            rows = read_jsonl(parts / f"{wid}.{stem}.jsonl", problems)
            merged[stem] += rows
            if stem == "results":
                info["rows"] = len(rows)
        workers.append(info)
    return workers, merged, problems


def process_info(device: str | None, visible_vars) -> dict:
    """What a pytest process that runs tests says about itself in run.json `workers`."""
    import socket

    return {"device": device, "pid": os.getpid(), "host": socket.gethostname(),
            "visible_devices": {v: os.environ.get(v) for v in visible_vars}}


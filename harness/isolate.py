"""Run backends that can take the process down in a worker process.

A kernel on an NPU can segfault, abort or hang. `IsolatedRunner` sends one (case, backend) at a
time to a long-lived worker (`python -m harness.isolate`) and reads the rows back as JSON:

  the worker dies on a signal or exits   -> verdict `crash` (signal name, stderr tail, repro)
  no answer within `timeout` seconds     -> verdict `timeout`; the worker is killed
  either way the worker is replaced lazily and the run continues with the next case.

The protocol is JSON lines (no pickle): requests on the worker's stdin, answers on a private
copy of its stdout; the worker points fd 1 at stderr so that library chatter on stdout (CANN
logs) cannot corrupt the protocol. The worker inherits the environment, so a device pinned
through ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES stays pinned.

The worker dies with its runner: on Linux it asks the kernel for SIGKILL when its parent goes
(prctl PR_SET_PDEATHSIG), elsewhere a watchdog thread polls the parent pid. A runner killed with
SIGKILL therefore never leaves a hung worker holding the device.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import UsageError
from .runner import CaseResult, verdict_rows

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: seconds a fresh worker may take to import its libraries (torch_npu + CANN init can be slow).
STARTUP_TIMEOUT_S = 300.0
#: characters of the worker's stderr quoted in a crash reason.
STDERR_TAIL = 600
#: environment variable naming the runner's pid, so that the worker can tell it has been orphaned.
PARENT_ENV = "OPDIFF_ISOLATE_PARENT"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def backend_ref(backend) -> dict:
    """How the worker rebuilds a backend instance: its class path and the option after the colon."""
    cls = type(backend)
    option = getattr(backend, "option", None)
    if option is None and ":" in getattr(backend, "name", ""):
        option = backend.name.partition(":")[2]
    return {"name": backend.name, "cls": f"{importable_module(cls)}:{cls.__qualname__}", "option": option or None}


def importable_module(cls) -> str:
    """The module a fresh interpreter imports to find `cls`. A class defined in the program run as
    `python -m pkg.mod` reports `__main__`, which in the worker is harness.isolate itself."""
    name = cls.__module__
    if name != "__main__":
        return name
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not spec.name or spec.name == "__main__":
        raise UsageError(f"backend class {cls.__qualname__} is defined in a script run as __main__; an isolated "
                         f"worker cannot import it: run it as `python -m package.module`, or use --no-isolate")
    return spec.name


def signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name} ({-returncode})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class WorkerDied(Exception):
    pass


class WorkerTimeout(Exception):
    pass


class _Worker:
    def __init__(self, env: dict | None = None):
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
        child_env.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
        child_env[PARENT_ENV] = str(os.getpid())
        # start_new_session: a timeout kills the worker's whole process group, helpers included
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.isolate"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=child_env, cwd=str(ROOT),
                                     start_new_session=True)
        self._buf = b""
        self.ready = False

    def request(self, msg: dict, timeout: float | None) -> dict:
        if not self.ready:
            hello = self._read(STARTUP_TIMEOUT_S)
            if hello.get("ready") is not True:
                raise WorkerDied(f"worker did not start: {hello}")
            self.ready = True
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self.death_reason()) from None
        return self._read(timeout)

    def _read(self, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WorkerTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise WorkerTimeout()
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(self.death_reason())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def death_reason(self) -> str:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        return f"worker process died with {signal_name(rc)}{self.stderr_tail()}"

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - STDERR_TAIL))
            tail = self.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; stderr tail: {tail[-STDERR_TAIL:]}" if tail else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        self._close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
                return
        self._close()

    def _close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass


class IsolatedRunner:
    """Runs cases of selected backends in a worker process; replaces the worker after a crash or timeout."""

    def __init__(self, backends: list, tier: str, seed: int, timing=None, timeout: float | None = None,
                 env: dict | None = None, checks=None):
        from .devcheck import Checks

        self.backends, self.tier, self.seed = list(backends), tier, seed
        self.checks = checks or Checks()  # repeated launches and front-end pairs run inside the worker
        self.timing = None if timing is None else dataclasses.asdict(timing)
        self.timeout = timeout
        self.env = env
        self._worker: _Worker | None = None
        self.crashes = self.timeouts = self.workers_started = 0
        for b in self.backends:  # a backend the worker could not rebuild: say so before the first case
            backend_ref(b)

    def run_case(self, spec, case) -> CaseResult:
        result = CaseResult()
        for b in self.backends:
            rows, samples = self._one(spec, case, b)
            result.rows += rows
            result.samples += samples
        if self.checks.pairs and not case.negative:
            result.rows += self._pairs(spec, case)
        return result

    def _pairs(self, spec, case) -> list[dict]:
        """Front-end pair rows (harness.devcheck), computed by the worker from the outputs it still holds."""
        from .devcheck import pair_groups, pair_rows

        members = {b.name: b for pair in pair_groups(self.backends) for b in pair}
        if not members:
            return []
        msg = self._message(spec, case, next(iter(members.values())))
        msg["pairs"] = [backend_ref(b) for b in members.values()]
        try:
            if self._worker is None:
                raise WorkerDied("no worker holds this case's outputs (the last one died)")
            answer = self._worker.request(msg, self.timeout)
        except (WorkerTimeout, WorkerDied) as exc:
            if isinstance(exc, WorkerTimeout):
                self._worker.kill()
                self._worker = None
            return pair_rows(spec, case, list(members.values()), {}, self.tier, self.seed,
                             {n: f"isolated worker: {str(exc) or type(exc).__name__}" for n in members})
        if "error" in answer:
            return pair_rows(spec, case, list(members.values()), {}, self.tier, self.seed,
                             {n: f"isolated worker: {answer['error']}" for n in members})
        return answer["rows"]

    def _message(self, spec, case, backend) -> dict:
        return {"op": spec.name, "case_id": case.id, "case_tier": case.tier, "params": case.params_json(),
                "origin": case.origin, "violates": case.violates, "backend": backend_ref(backend),
                "tier": self.tier, "seed": self.seed, "timing": self.timing,
                "determinism": self.checks.determinism}

    def _one(self, spec, case, backend):
        msg = self._message(spec, case, backend)
        if self._worker is None:
            self._worker = _Worker(self.env)
            self.workers_started += 1
        try:
            answer = self._worker.request(msg, self.timeout)
        except WorkerTimeout:
            self._worker.kill()
            self._worker = None
            self.timeouts += 1
            reason = (f"no result within --timeout {self.timeout:g}s; worker killed and replaced"
                      if self.timeout is not None else "worker did not answer")
            log.warning("%s on %s/%s: timeout", backend.name, spec.name, case.id)
            return verdict_rows(spec, case, backend.name, "timeout", reason, self.tier, self.seed), []
        except WorkerDied as exc:
            self._worker.kill()
            self._worker = None
            self.crashes += 1
            log.warning("%s on %s/%s: crash: %s", backend.name, spec.name, case.id, exc)
            return verdict_rows(spec, case, backend.name, "crash", str(exc), self.tier, self.seed), []
        if "error" in answer:  # the worker itself failed to set the case up
            return verdict_rows(spec, case, backend.name, "error", f"isolated worker: {answer['error']}",
                                 self.tier, self.seed), []
        return answer["rows"], answer["samples"]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- worker side ---------------------------------------------------------------------------------

def make_backend(ref: dict, cache: dict):
    """The backend instance `ref` (backend_ref) names, built once per cache."""
    key = (ref["cls"], ref["option"])
    if key not in cache:
        module, _, qual = ref["cls"].partition(":")
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        cache[key] = obj(ref["option"]) if ref["option"] else obj()
    return cache[key]


def find_case(spec, msg: dict, cache: dict):
    """The case a message names (op, case_id, tier, params, origin, violates, case_tier), from the tier's
    derived cases when it is one of them."""
    from .spec import Case

    key = (spec.name, msg["tier"])
    if key not in cache:
        cache[key] = {c.id: c for c in spec.cases(msg["tier"])}
    case = cache[key].get(msg["case_id"])
    if case is None:  # not derived from the tier (a hand-built case): rebuild it from its params
        case = Case(op=spec.name, id=msg["case_id"], params=json.loads(msg["params"]), origin=msg["origin"],
                    violates=msg["violates"], tier=msg["case_tier"])
    return case


def _serve(inp, out) -> None:
    from . import golden_store, input_store, registry
    from .devcheck import Checks, pair_rows
    from .runner import References, run_backend
    from .timing import TimingConfig

    backends, cases = {}, {}
    last = (None, None, None)  # (key, inputs, refs): reuse golden/baseline across backends of a case
    outputs: dict = {}         # backend name -> outputs of the case in `last`, for the front-end pairs
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in inp:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            spec = registry.op(msg["op"])
            case = find_case(spec, msg, cases)
            if "pairs" in msg:  # after every backend of the case ran: compare the outputs held here
                members = [make_backend(ref, backends) for ref in msg["pairs"]]
                held = outputs if last[0] == (spec.name, case.id, msg["seed"]) else {}
                _answer(out, {"rows": pair_rows(spec, case, members, held, msg["tier"], msg["seed"])})
                continue
            backend = make_backend(msg["backend"], backends)
            timing = TimingConfig(**msg["timing"]) if msg["timing"] else TimingConfig(enabled=False)
            key = (spec.name, case.id, msg["seed"])
            if last[0] != key:
                try:
                    inputs = input_store.make_inputs(spec, case, msg["seed"], golden_store.from_env())
                except Exception as exc:
                    rows = verdict_rows(spec, case, backend.name, "error",
                                         f"inputs could not be built: {type(exc).__name__}: {exc}",
                                         msg["tier"], msg["seed"])
                    _answer(out, {"rows": rows, "samples": []})
                    continue
                last = (key, inputs, References(spec, case, inputs, msg["seed"]))
                outputs = {}
            rows, samples = run_backend(spec, case, backend, last[1], last[2], msg["tier"], msg["seed"], timing,
                                     checks=Checks(determinism=msg.get("determinism"), pairs=False), sink=outputs)
            _answer(out, {"rows": rows, "samples": samples})
        except Exception as exc:  # keep serving: one bad request must not end the worker
            _answer(out, {"error": f"{type(exc).__name__}: {exc}"})


def _answer(out, obj) -> None:
    from .results import json_safe

    out.write(json.dumps(obj, default=json_safe) + "\n")
    out.flush()


def die_with_parent(parent_pid: int | None) -> str:
    """Arrange for this process to end when `parent_pid` (its runner) does. Returns how."""
    if parent_pid is None:
        return "not requested"
    how = "watchdog thread"
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                how = "prctl PR_SET_PDEATHSIG"
        except (OSError, AttributeError):
            pass  # no usable libc: fall back to polling
    # the parent may have died before prctl took effect: then we were already re-parented
    if os.getppid() != parent_pid:
        os._exit(1)
    if how == "watchdog thread":
        import threading

        def watch():
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="opdiff-parent-watchdog", daemon=True).start()
    return how


def worker_main() -> None:
    parent = os.environ.get(PARENT_ENV)
    # PR_SET_PDEATHSIG fires when the thread that started us exits; opdiff starts workers from the
    # thread that runs the cases (the main thread), which lives as long as the run
    die_with_parent(int(parent) if parent and parent.isdigit() else None)
    # The protocol gets a private copy of stdout; fd 1 then goes to stderr so that anything a
    # library prints cannot interleave with an answer.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="worker %(levelname)s %(name)s: %(message)s")
    _serve(sys.stdin, proto)


if __name__ == "__main__":
    from .memory import keep_freed_memory

    keep_freed_memory()  # the worker is an entry point (harness/memory.py)
    worker_main()

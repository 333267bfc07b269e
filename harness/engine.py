"""The one engine of a run: `run` (harness.commands.run), its Ray workers and the pytest matrix
(harness.pytest_support) all send a case through it.

    Engine(backends, Options(...), ledger)
      run_case(spec, case, names=None) -> CaseResult
          every backend (or the named ones) on one case: a quarantined one is not launched (skipped
          rows); an isolated one runs in a worker process (harness.isolate: a segfault or a hang is a
          `crash` / `timeout` row, never a dead runner); the rest run in this process
          (harness.runner); front-end pairs where both sides ran in one process (a pair split
          across the two is a skipped row saying so); then the known issues, applied once.
      unrun_rows(spec, case, backend, verdict, reason)
          rows for a case whose runner died before it answered (a pytest-xdist worker, a Ray task),
          the known issues applied the same way (settled_rows, for a process that holds no engine)

Isolation policy (`Options.isolate`): True every backend, False none, None (the default) the
backends that may crash the process (`may_crash`: torch_npu, aclnn), and every backend once a
timeout is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import ledger as ledger_mod
from .devcheck import Checks, pair_groups, pair_rows
from .errors import UsageError
from .runner import CaseResult, run_case, verdict_rows
from .timing import TimingConfig

#: per-case limit of an isolated backend when no timeout is given: a hung kernel must not stall a
#: nightly matrix for hours; generous enough for a cold first launch (op compilation).
DEFAULT_ISOLATED_TIMEOUT_S = 600.0


def isolation_policy(isolate: bool, no_isolate: bool) -> bool | None:
    """The two flags (`--isolate`, `--no-isolate`) as one tri-state: True / False / None (the default)."""
    if isolate and no_isolate:
        raise UsageError("--isolate and --no-isolate contradict each other; give one")
    return True if isolate else (False if no_isolate else None)


def check_timeout(isolate: bool | None, timeout: float | None, flag: str = "--timeout") -> None:
    if isolate is False and timeout is not None:
        raise UsageError(f"{flag} needs isolated workers; drop --no-isolate or {flag}")


@dataclass(frozen=True)
class Options:
    tier: str = "smoke"
    seed: int = 0
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(enabled=False))
    isolate: bool | None = None
    timeout: float | None = None      # seconds per case on an isolated backend (None: the default)
    determinism: int | None = None    # launches per positive case (harness.devcheck; None: the tier's)

    def isolates(self, backend) -> bool:
        if self.isolate is False or not backend.available():
            return False
        every = self.isolate is True or self.timeout is not None
        return every or bool(getattr(backend, "may_crash", False))


def settled_rows(ledger, spec, case, backend_name: str, verdict: str, reason: str, tier: str, seed: int) -> list[dict]:
    """Rows with one verdict for a case that gave none, the known issues applied as to any row."""
    rows = verdict_rows(spec, case, backend_name, verdict, reason, tier, seed)
    ledger.apply(spec, case, rows)
    return rows


class Engine:
    """Runs cases on a fixed set of backends: in-process or isolated, with the known issues applied once."""

    def __init__(self, backends, options: Options, ledger: ledger_mod.Ledger | None = None):
        from .isolate import IsolatedRunner

        self.backends = list(backends)
        self.options = options
        self.ledger = ledger if ledger is not None else ledger_mod.Ledger()
        self.checks = Checks(determinism=options.determinism)
        self.isolated = {b.name for b in self.backends if options.isolates(b)}
        self.pool = None
        if self.isolated:
            timeout = options.timeout if options.timeout is not None else DEFAULT_ISOLATED_TIMEOUT_S
            self.pool = IsolatedRunner([b for b in self.backends if b.name in self.isolated], options.tier,
                                       options.seed, options.timing, timeout, checks=self.checks)

    @classmethod
    def from_args(cls, backends, args, timing: TimingConfig) -> "Engine":
        """The engine `run`'s options describe (args of harness.commands.run, after execute.prepare)."""
        names = [b.name for b in backends]
        ledger = ledger_mod.load(getattr(args, "known_issues", None), names)
        return cls(backends, Options(tier=args.tier, seed=args.seed, timing=timing, isolate=args.isolate,
                                     timeout=args.timeout, determinism=getattr(args, "determinism", None)), ledger)

    def describe(self) -> dict:
        """run.json keys of the isolation policy."""
        return {"isolated_backends": [b.name for b in self.backends if b.name in self.isolated],
                "timeout_s": self.pool.timeout if self.pool else None}

    def unrun_rows(self, spec, case, backend_name: str, verdict: str, reason: str) -> list[dict]:
        return settled_rows(self.ledger, spec, case, backend_name, verdict, reason, self.options.tier,
                            self.options.seed)

    def run_case(self, spec, case, names=None) -> CaseResult:
        """`names`: the backends to run (default all), in the engine's order."""
        chosen = self._chosen(names)
        tier, seed = self.options.tier, self.options.seed
        quarantined = {}
        for b in chosen:
            e = self.ledger.quarantine(spec, case, b.name)
            if e is not None:
                quarantined[b.name] = self.ledger.quarantine_rows(spec, case, b.name, e, tier, seed)
        live = [b for b in chosen if b.name not in quarantined]
        inproc = [b for b in live if b.name not in self.isolated]
        isolated = [b for b in live if b.name in self.isolated]
        result = CaseResult()
        parts = {}
        for ran in self._run_inproc(spec, case, inproc), self._run_isolated(spec, case, isolated):
            if ran is None:
                continue
            result.samples += ran.samples
            for row in ran.rows:
                parts.setdefault(row["backend"], []).append(row)
        parts.update(quarantined)
        for b in chosen:  # rows in the order the backends were given, then determinism:/pair: rows
            result.rows += parts.pop(b.name, [])
        for rows in parts.values():
            result.rows += rows
        result.rows += self._split_pairs(spec, case, chosen, inproc, isolated, quarantined)
        self._settle(spec, case, result)
        return result

    def _chosen(self, names) -> list:
        if names is None:
            return self.backends
        wanted = set(names)
        unknown = wanted - {b.name for b in self.backends}
        if unknown:
            raise UsageError(f"backend(s) {', '.join(sorted(unknown))} not in this engine's "
                             f"{', '.join(b.name for b in self.backends)}")
        return [b for b in self.backends if b.name in wanted]

    def _run_inproc(self, spec, case, backends) -> CaseResult | None:
        if not backends:
            return None
        o = self.options
        return run_case(spec, case, backends, o.tier, o.seed, o.timing, checks=self.checks)

    def _run_isolated(self, spec, case, backends) -> CaseResult | None:
        if not backends:
            return None
        self.pool.backends = backends
        return self.pool.run_case(spec, case)

    def _settle(self, spec, case, result: CaseResult) -> None:
        """The known issues, applied once. Where an xfail entry matches, the rows as they ran are kept
        (CaseResult.as_run): pytest's strict xfail mark of the same entry judges those."""
        names = {r["backend"] for r in result.rows}
        if any(e is not None and e.kind == "xfail" for e in (self.ledger.match(spec, case, n) for n in names)):
            result.as_run = [dict(r) for r in result.rows]
        self.ledger.apply(spec, case, result.rows)

    def _split_pairs(self, spec, case, chosen, inproc, isolated, quarantined) -> list[dict]:
        """Skipped rows, with the reason, for front-end pairs whose two sides were not run in one process
        (pairs compare outputs held in memory, harness.devcheck) or of which one side was quarantined."""
        if not self.checks.pairs or case.negative:
            return []
        where = {b.name: "in-process" for b in inproc}
        where.update({b.name: "in an isolated worker" for b in isolated})
        rows = []
        for a, b in pair_groups(chosen):
            if a.name in where and b.name in where and where[a.name] == where[b.name]:
                continue   # compared where both ran
            why = {}
            for x in (a, b):
                if not x.available():
                    why[x.name] = f"unavailable: {x.available().reason}"
                elif x.name in quarantined:
                    why[x.name] = "quarantined by a known issue"
                elif x.name in where:
                    why[x.name] = (f"ran {where[x.name]}, its pair elsewhere: run both with --isolate or "
                                   f"--no-isolate to compare them")
                else:
                    why[x.name] = "not run"
            rows += pair_rows(spec, case, [a, b], {}, self.options.tier, self.options.seed, why)
        return rows

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

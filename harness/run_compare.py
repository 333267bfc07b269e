"""Two sets of runs compared per case x backend: a latency verdict and an accuracy status per row.

`compare_runs(BASE, NEW)` reads run directories (or folders of them) and returns one `Row` per case x
backend found on either side; `exit_code(rows)` is the status `compare` and the nightly report use
(0 no regression, 1 a regression, 3 ambiguous only). The command (harness.commands.compare) prints them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from . import canary, frames, regress
from .history import expand, run_medians

EXIT_OK, EXIT_REGRESSION, EXIT_AMBIGUOUS = 0, 1, 3


@dataclass
class Row:
    op: str
    case_id: str
    backend: str
    verdict: str
    ratio: float | None
    base_us: float | None
    new_us: float | None
    n_base: int
    n_new: int
    p_value: float | None
    ci_lo: float | None
    ci_hi: float | None
    floor: float
    reason: str
    accuracy: str
    acc_reason: str
    repro: str
    canary_ratio: float | None = None  # machine-speed canary NEW/BASE (None: a side has no canary)
    in_base: bool = True  # the case x backend has result rows in BASE
    in_new: bool = True

    @property
    def regressed(self) -> bool:
        return self.verdict == regress.SLOWER or self.accuracy in ("WORSE", "GREW")


def _spec_floor(op: str):
    try:
        from . import registry

        return getattr(registry.op(op), "perf_floor", None)
    except Exception:  # an op that no longer exists still gets the default floor
        return None


def compare_runs(base_paths, new_paths, floor=regress.DEFAULT_FLOOR, op_floors=None, alpha=regress.DEFAULT_ALPHA,
                 acc_growth=regress.ACC_GROWTH) -> list[Row]:
    base_runs, new_runs = expand(base_paths), expand(new_paths)
    bm, nm = run_medians(base_runs), run_medians(new_runs)
    cratio = regress.canary_ratio([v for r in base_runs for v in canary.run_values(r.meta)],
                                  [v for r in new_runs for v in canary.run_values(r.meta)])
    # the rows per case x backend come from the same typed frames the report and the README use
    brows = defaultdict(list, frames.by_case(frames.from_runs(base_runs)))
    nrows = defaultdict(list, frames.by_case(frames.from_runs(new_runs)))
    op_floors = op_floors or {}
    out = []
    for key in sorted(set(brows) | set(nrows)):
        op, case_id, backend = key
        f = op_floors.get(op)
        if f is None:
            f = _spec_floor(op)
        f = floor if f is None else f
        acc = regress.decide_accuracy(_first_run(brows[key]), _first_run(nrows[key]), acc_growth)
        b, n = bm.runs.get(key, []), nm.runs.get(key, [])
        if not b and not n:
            pv = regress.PerfVerdict("n/a", None, reason="no latency on either side")
        elif bm.modes.get(key) and nm.modes.get(key) and bm.modes[key] != nm.modes[key]:
            pv = regress.PerfVerdict(regress.AMBIGUOUS, None, n_base=len(b), n_new=len(n), floor=f,
                                     reason=f"timing modes differ: {sorted(bm.modes[key])} vs {sorted(nm.modes[key])}")
        else:
            pv = regress.apply_canary(regress.decide_latency(b, n, f, alpha), cratio)
        repro = next((r.get("repro") for r in nrows[key] or brows[key] if r.get("repro")), "")
        out.append(Row(op, case_id, backend, pv.verdict, pv.ratio, regress.median(b) if b else None,
                       regress.median(n) if n else None, len(b), len(n), pv.p_value, pv.ci[0], pv.ci[1],
                       f, pv.reason, acc.status, acc.reason, repro, cratio, bool(brows[key]), bool(nrows[key])))
    return out


def _first_run(rows):
    """Rows of one run_id (a folder of runs holds the same case once per run)."""
    if not rows:
        return rows
    rid = rows[0].get("run_id")
    return [r for r in rows if r.get("run_id") == rid]


def exit_code(rows: list[Row]) -> int:
    if any(r.regressed for r in rows):
        return EXIT_REGRESSION
    if any(r.verdict == regress.AMBIGUOUS for r in rows):
        return EXIT_AMBIGUOUS
    return EXIT_OK

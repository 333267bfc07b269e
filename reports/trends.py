"""Trends across a history of runs: per op x backend, latency per run relative to each case's median,
with detected steps (harness.regress.detect_steps) and the nightly rule (harness.regress.nightly_status).

The series come from harness.history.latency_series: per run, the median of its per-process medians
from the raw samples, the same evidence the nightly rule and `compare` decide on.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import charts

MAX_TRENDS = 12   # charts per report, the series with the most flags first; the table lists every flag
THRESHOLD = 0.10


def _f(v, fmt="{:.2f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else ""


def build(run_dir, history, threshold: float = THRESHOLD) -> dict:
    from harness import frames, regress
    from harness.history import expand, latency_series

    runs, seen = [], set()
    for r in expand(list(history) + [run_dir]):
        key = str(Path(r.path).resolve())
        if key not in seen:  # the run itself may also sit in the history folder
            seen.add(key)
            runs.append(r)
    runs, series = latency_series(runs)
    repro = {key: rows[0].get("repro") for key, rows in frames.by_case(frames.from_runs(runs[-1:])).items()}
    labels = [r.label for r in runs]
    groups, status = {}, {}
    for key, values in series.items():
        groups.setdefault((key[0], key[2]), {})[key[1]] = values
        status[key] = regress.nightly_status(values, threshold=threshold)

    def flags(group):
        (op, backend), lines = group
        return -sum(status[(op, c, backend)].status in ("regression", "suspicious") for c in lines)

    ordered = sorted(groups.items(), key=lambda g: (flags(g), g[0]))
    out_charts = []
    for (op, backend), lines in ordered[:MAX_TRENDS]:
        steps = {c: regress.detect_steps(vs) for c, vs in lines.items() if all(v is not None for v in vs)}
        viol = {c: status[(op, c, backend)].violations for c in lines}
        gaps = sum(1 for vs in lines.values() if any(v is None for v in vs))
        note = f"{len(lines)} cases" + (f"; {gaps} with runs missing (no step detection on them)" if gaps else "")
        out_charts.append(charts.trend(f"{op} [{backend}]", labels, lines, viol, steps, note))
    more = ""
    if len(ordered) > MAX_TRENDS:
        more = (f"{len(ordered) - MAX_TRENDS} more op x backend series not drawn (the {MAX_TRENDS} with the most "
                f"flags are); the nightly status table covers all of them.")
    flagged = []
    for (op, case, backend), s in sorted(status.items()):
        if s.status in ("regression", "suspicious"):
            flagged.append({"op": op, "case_id": case, "backend": backend, "status": s.status,
                            "baseline": _f(s.baseline), "last": _f(series[(op, case, backend)][-1]),
                            "reason": s.reason, "repro": repro.get((op, case, backend)) or ""})
    n_ok = sum(s.status == "ok" for s in status.values())
    n_short = sum(s.status == "insufficient_data" for s in status.values())
    return {"n_runs": len(runs), "threshold": f"{threshold:.0%}", "charts": out_charts, "more": more,
            "flagged": flagged,
            "summary": f"No regression or suspicious series ({n_ok} ok, {n_short} with too little history)."}

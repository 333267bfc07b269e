"""The HTML report of a run: `report DIR [--baseline DIR] [--history DIR...]`.

One self-contained page (inline SVG charts, inline style and script, a Content-Security-Policy
that lets it load nothing), rendered by jinja2 with autoescaping from templates/report.html.j2.
It reads top down:
  first screen   the run's verdict in one line, its identity, the op x backend matrix  (overview)
                 and every unexpected result with reason, worst element, known issue, repro
  regressions    against --baseline (harness.run_compare)
  trends         across --history (+ this run) with detected steps and the nightly rule (trends)
  per op         error distributions per output kind, latency against the roofline  (sections)
  all results    one row per case x backend, filterable and sortable
  skips, known issues applied
Every table is built from harness.frames DataFrames.
"""
from __future__ import annotations

import math

from harness import frames
from harness.verdicts import DISPLAY_ORDER as VERDICTS

from . import overview, page, sections, trends
from .overview import anchor

REASON_CHARS = 240   # reason text per row of the all-results table; the full text is in results.parquet


def _n(v, fmt="{:.3g}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and math.isfinite(v) else ""


def results_table(cases) -> list[dict]:
    rows = []
    order = cases.sort_values(["op", "case_id", "backend"], kind="stable") if len(cases) else cases
    names = ["op", "case_id", "backend", "dtype", "verdict", "ok", "reason", "baseline_ratio", "max_ulp",
             "latency_median_us", "pct_peak_bw", "repro"]
    for values in frames.tuples(order, names):
        r = dict(zip(names, values))
        reason = overview.text(r.get("reason"))
        if len(reason) > REASON_CHARS:
            reason = reason[:REASON_CHARS - 1] + "\u2026"
        verdict = str(r["verdict"])
        rows.append({"op": str(r["op"]), "case_id": str(r["case_id"]), "backend": str(r["backend"]),
                     "dtype": overview.text(r.get("dtype")), "verdict": verdict,
                     "cls": "" if r["ok"] and verdict != "warn" else ("warn" if r["ok"] else "unexpected"),
                     "ratio": _n(r.get("baseline_ratio")), "ulp": _n(r.get("max_ulp")),
                     "latency": _n(r.get("latency_median_us"), "{:.1f}"), "peak": _n(r.get("pct_peak_bw")),
                     "reason": reason, "repro": overview.text(r.get("repro"))})
    return rows


def devcheck_rows(cases) -> list[dict]:
    """One line per op x determinism:/pair: check (harness.devcheck): cases compared, bitwise identical,
    differing, and the first differing case's reason (the count and first index are in it)."""
    from harness.devcheck import DETERMINISM_PREFIX, PAIR_PREFIX

    out: dict = {}
    for op, case_id, backend, verdict, reason in frames.tuples(cases, ["op", "case_id", "backend", "verdict",
                                                                        "reason"]):
        backend = str(backend)
        if not backend.startswith((DETERMINISM_PREFIX, PAIR_PREFIX)):
            continue
        line = out.setdefault((str(op), backend), {"op": str(op), "check": backend, "cases": 0, "identical": 0,
                                                   "differ": 0, "not_compared": 0, "first": ""})
        line["cases"] += 1
        verdict = str(verdict)
        key = "identical" if verdict == "pass" else ("not_compared" if verdict in ("skipped", "error") else "differ")
        line[key] += 1
        if key == "differ" and not line["first"]:
            line["first"] = f"{case_id}: {overview.text(reason)[:REASON_CHARS]}"
    return [out[k] for k in sorted(out)]


def known_issue_rows(meta: dict) -> list[dict]:
    out = []
    for e in meta.get("known_issues") or []:
        if not isinstance(e, dict):
            continue
        sel = ", ".join(f"{k}={e.get(k)}" for k in ("dtype", "case") if e.get(k))
        if e.get("where"):
            sel = ", ".join(filter(None, [sel, f"where {e['where']}"]))
        out.append({k: "" if e.get(k) is None else str(e.get(k))
                    for k in ("backend", "op", "kind", "issue", "reason", "rows", "file")} | {"selects": sel})
    return out


def regression_table(run_dir, baseline) -> dict:
    from harness.run_compare import compare_runs

    rows = compare_runs([baseline], [run_dir])
    counts = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    shown = []
    for r in rows:
        if r.verdict in ("SAME", "n/a") and r.accuracy == "SAME":
            continue
        shown.append({"op": r.op, "case_id": r.case_id, "backend": r.backend, "verdict": r.verdict,
                      "ratio": _n(r.ratio, "{:.3f}"), "ci": f"{_n(r.ci_lo, '{:.3f}')}-{_n(r.ci_hi, '{:.3f}')}",
                      "base_us": _n(r.base_us, "{:.2f}"), "new_us": _n(r.new_us, "{:.2f}"),
                      "runs": f"{r.n_base}+{r.n_new}", "p": _n(r.p_value), "accuracy": r.accuracy,
                      "why": "; ".join(x for x in (r.reason, r.acc_reason) if x),
                      "repro": r.repro if r.regressed or r.verdict != "SAME" else ""})
    return {"baseline": str(baseline), "counts": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            "rows": shown}


def render_report(run_dir, meta: dict, rows: list[dict], baseline=None, history=()) -> str:
    df = frames.from_rows(rows)  # no meta in attrs: pandas deep-copies attrs on every operation
    cases = frames.case_frame(df)
    ov = overview.build(df, cases, meta)
    return page.render(
        # the per-op count tables show the verdicts this run has (nine columns, mostly empty, read badly)
        "report.html.j2", meta=meta, ov=ov, anchor=anchor,
        verdicts=[v for v in VERDICTS if v in set(map(str, cases["verdict"]))] if len(cases) else [],
        sections=sections.op_sections(df, cases, ov.backends),
        results=results_table(cases), known_issues=known_issue_rows(meta), devchecks=devcheck_rows(cases),
        regressions=regression_table(run_dir, baseline) if baseline else None,
        trends=trends.build(run_dir, history) if history else None)

"""The full HTML report of a run: `report DIR [--baseline DIR] [--history DIR...]`.

One self-contained file (plots embedded as base64 PNG, no scripts, no external links), every
string from results or run.json escaped. Sections:
  verdicts per op x backend x dtype, worst error ratios        (reports.summary)
  accuracy plot: error per case, against the baseline run when given
  latency per case and backend (median, p20/p80), GB/s, TFLOP/s and % of peak
  regression table against --baseline (harness.commands.compare)
  trends across --history (+ this run) with detected steps, and the nightly rule
  the one-line repro command of every failing or regressed row
"""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from . import plots
from .summary import VERDICTS, summary_table, worst_rows

MAX_TRENDS = 12     # trend plots per report (one per op x backend); the table lists every series


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _f(x, fmt="{:.3g}") -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and x == x else ""


def _img(uri, alt) -> str:
    return f"<p><img alt='{_e(alt)}' src='{uri}'></p>" if uri else f"<p><i>no data for {_e(alt)}</i></p>"


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin-bottom:1em}"
         "td,th{border:1px solid #ccc;padding:3px 8px;font-size:12px}th{background:#eee}"
         ".fail,.error,.crash,.timeout,.SLOWER,.WORSE,.GREW,.regression{background:#fbb}"
         ".warn,.AMBIGUOUS,.suspicious{background:#ffd}.pass,.SAME{background:#dfd}.FASTER,.BETTER{background:#ddf}"
         "code{font-size:11px}")


def _first_rows(rows):
    """One row per (op, case, backend): the first output (latency is per case, not per output)."""
    seen, out = set(), []
    for r in rows:
        k = (r["op"], r["case_id"], r["backend"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def _summary(rows) -> list[str]:
    out = ["<h2>Verdicts per op x backend x dtype (cases)</h2><table><tr><th>op</th><th>backend</th><th>dtype</th>"]
    out += [f"<th>{v}</th>" for v in VERDICTS] + ["</tr>"]
    for (op, backend, dtype), counts in sorted(summary_table(rows).items()):
        worst = next((v for v in ("crash", "timeout", "error", "fail", "warn") if counts.get(v)), "pass")
        out.append(f"<tr class='{worst}'><td>{_e(op)}</td><td>{_e(backend)}</td><td>{_e(dtype)}</td>")
        out += [f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS] + ["</tr>"]
    out.append("</table>")
    return out


def _error_value(r):
    for k in ("baseline_ratio", "max_ulp", "max_rel_err"):
        v = r.get(k)
        if isinstance(v, (int, float)) and v == v:
            return k, v
    return None, None


def _accuracy(rows, base_rows) -> list[str]:
    out = ["<h2>Accuracy: error per case</h2>"]
    by_op = defaultdict(lambda: defaultdict(dict))
    for side, rs in (("this run", rows), ("baseline", base_rows or [])):
        for r in rs:
            k, v = _error_value(r)
            if k is None:
                continue
            label = f"{r['case_id']}:{r.get('output')}"
            cur = by_op[(r["op"], k)][f"{r['backend']} ({side})"].get(label)
            by_op[(r["op"], k)][f"{r['backend']} ({side})"][label] = v if cur is None else max(cur, v)
    if not by_op:
        return out + ["<p><i>no error metrics recorded</i></p>"]
    for (op, metric), series in sorted(by_op.items()):
        out.append(_img(plots.metric_plot(series, f"{op}: {metric} per case and output", metric),
                        f"{op} {metric}"))
    out.append("<h3>Worst cases</h3><table><tr><th>op/case</th><th>backend</th><th>output</th><th>verdict</th>"
               "<th>baseline ratio</th><th>max ULP</th><th>reason</th><th>repro</th></tr>")
    for r in worst_rows(rows):
        out.append(f"<tr class='{_e(r.get('verdict'))}'><td>{_e(r['op'])}/{_e(r['case_id'])}</td>"
                   f"<td>{_e(r['backend'])}</td><td>{_e(r.get('output'))}</td><td>{_e(r.get('verdict'))}</td>"
                   f"<td>{_f(r.get('baseline_ratio'))}</td><td>{_f(r.get('max_ulp'))}</td>"
                   f"<td>{_e(r.get('reason'))}</td><td><code>{_e(r.get('repro'))}</code></td></tr>")
    out.append("</table>")
    return out


def _latency(rows) -> list[str]:
    first = [r for r in _first_rows(rows) if isinstance(r.get("latency_median_us"), (int, float))]
    out = ["<h2>Latency per case and backend</h2>"]
    if not first:
        return out + ["<p><i>no latency measured (run without --no-timing)</i></p>"]
    by_op = defaultdict(lambda: defaultdict(list))
    peak = defaultdict(lambda: defaultdict(dict))
    for r in first:
        by_op[r["op"]][r["backend"]].append((r["case_id"], r["latency_median_us"], r.get("latency_p20_us"),
                                             r.get("latency_p80_us")))
        for k in ("pct_peak_bw", "pct_peak_flops"):
            if isinstance(r.get(k), (int, float)):
                peak[r["op"]][f"{r['backend']} {k.replace('pct_peak_', '')}"][r["case_id"]] = r[k]
    for op, points in sorted(by_op.items()):
        out.append(_img(plots.latency_plot(points, f"{op}: latency"), f"{op} latency"))
        if peak.get(op):
            out.append(_img(plots.metric_plot(peak[op], f"{op}: % of peak", "% of peak", log=False),
                            f"{op} % of peak"))
    out.append("<table><tr><th>op/case</th><th>backend</th><th>median us</th><th>p20</th><th>p80</th><th>min</th>"
               "<th>n</th><th>runs</th><th>timing mode</th><th>GB/s</th><th>TFLOP/s</th><th>% peak BW</th>"
               "<th>% peak FLOP/s</th><th>peak of</th></tr>")
    for r in sorted(first, key=lambda r: (r["op"], r["case_id"], r["backend"])):
        out.append(f"<tr><td>{_e(r['op'])}/{_e(r['case_id'])}</td><td>{_e(r['backend'])}</td>"
                   f"<td>{_f(r.get('latency_median_us'), '{:.2f}')}</td><td>{_f(r.get('latency_p20_us'), '{:.2f}')}</td>"
                   f"<td>{_f(r.get('latency_p80_us'), '{:.2f}')}</td><td>{_f(r.get('latency_min_us'), '{:.2f}')}</td>"
                   f"<td>{_e(r.get('n_samples'))}</td><td>{_e(r.get('n_replicates') or 1)}</td>"
                   f"<td>{_e(r.get('timing_mode'))}</td><td>{_f(r.get('gbps'))}</td><td>{_f(r.get('tflops'))}</td>"
                   f"<td>{_f(r.get('pct_peak_bw'))}</td><td>{_f(r.get('pct_peak_flops'))}</td>"
                   f"<td>{_e(r.get('peak_device'))}</td></tr>")
    out.append("</table>")
    return out


def _regressions(run_dir, baseline) -> list[str]:
    from harness.commands.compare import compare_runs

    out = [f"<h2>Regressions against {_e(baseline)}</h2>"]
    rows = compare_runs([baseline], [run_dir])
    counts = defaultdict(int)
    for r in rows:
        counts[r.verdict] += 1
    out.append("<p>latency verdicts: " + _e(", ".join(f"{k} {v}" for k, v in sorted(counts.items()))) +
               ". Decided on per-process medians (use <code>run --repeat N</code>); SAME within the effect floor.</p>")
    shown = [r for r in rows if r.verdict not in ("SAME", "n/a") or r.accuracy != "SAME"]
    if not shown:
        return out + ["<p>No latency or accuracy change.</p>"]
    out.append("<table><tr><th>op/case</th><th>backend</th><th>latency</th><th>ratio</th><th>90% CI (runs)</th>"
               "<th>base us</th><th>new us</th><th>runs</th><th>p</th><th>accuracy</th><th>why</th><th>repro</th></tr>")
    for r in shown:
        why = "; ".join(x for x in (r.reason, r.acc_reason) if x)
        out.append(f"<tr class='{_e(r.verdict)}'><td>{_e(r.op)}/{_e(r.case_id)}</td><td>{_e(r.backend)}</td>"
                   f"<td>{_e(r.verdict)}</td><td>{_f(r.ratio, '{:.3f}')}</td>"
                   f"<td>{_f(r.ci_lo, '{:.3f}')}-{_f(r.ci_hi, '{:.3f}')}</td><td>{_f(r.base_us, '{:.2f}')}</td>"
                   f"<td>{_f(r.new_us, '{:.2f}')}</td><td>{r.n_base}+{r.n_new}</td><td>{_f(r.p_value)}</td>"
                   f"<td class='{_e(r.accuracy)}'>{_e(r.accuracy)}</td><td>{_e(why)}</td>"
                   f"<td><code>{_e(r.repro if r.regressed or r.verdict != 'SAME' else '')}</code></td></tr>")
    out.append("</table>")
    return out


def _history(run_dir, history, threshold=0.10) -> list[str]:
    from harness import regress
    from harness.history import expand, latency_series, result_rows

    runs = expand(list(history) + [run_dir])
    seen, uniq = set(), []
    for r in runs:
        if str(Path(r.path).resolve()) not in seen:
            seen.add(str(Path(r.path).resolve()))
            uniq.append(r)
    runs, series = latency_series(uniq)
    repro = {(r["op"], r["case_id"], r["backend"]): r.get("repro") for r in result_rows(runs[-1:])}
    out = [f"<h2>Trends over {len(runs)} runs</h2>",
           f"<p>Nightly rule: a point violates when it is more than {threshold:.0%} above the median of the previous "
           "7 runs; the last 2 points violating is a regression, a single violation is suspicious (PyTorch HUD).</p>"]
    labels = [r.label for r in runs]
    groups = defaultdict(dict)
    status = {}
    for key, values in series.items():
        groups[(key[0], key[2])][key[1]] = values
        status[key] = regress.nightly_status(values, threshold=threshold)
    for (op, backend), lines in sorted(groups.items())[:MAX_TRENDS]:
        steps = {c: regress.detect_steps([v for v in vs if v is not None]) for c, vs in lines.items()
                 if all(v is not None for v in vs)}
        viol = {c: status[(op, c, backend)].violations for c in lines}
        out.append(_img(plots.trend_plot(labels, lines, steps, viol, f"{op} [{backend}]"), f"{op} {backend} trend"))
    flagged = [(k, s) for k, s in sorted(status.items()) if s.status in ("regression", "suspicious")]
    out.append("<h3>Nightly status</h3>")
    if not flagged:
        n_ok = sum(s.status == "ok" for s in status.values())
        return out + [f"<p>No regression or suspicious series ({n_ok} ok, "
                      f"{sum(s.status == 'insufficient_data' for s in status.values())} with too little history).</p>"]
    out.append("<table><tr><th>op/case</th><th>backend</th><th>status</th><th>rolling baseline us</th><th>last us</th>"
               "<th>why</th><th>repro</th></tr>")
    for (op, case, backend), s in flagged:
        last = series[(op, case, backend)][-1]
        out.append(f"<tr class='{_e(s.status)}'><td>{_e(op)}/{_e(case)}</td><td>{_e(backend)}</td><td>{_e(s.status)}"
                   f"</td><td>{_f(s.baseline, '{:.2f}')}</td><td>{_f(last, '{:.2f}')}</td><td>{_e(s.reason)}</td>"
                   f"<td><code>{_e(repro.get((op, case, backend)))}</code></td></tr>")
    out.append("</table>")
    return out


def render_report(run_dir, meta: dict, rows: list[dict], baseline=None, history=()) -> str:
    from harness.ledger import report_html as known_issues_html
    from harness.results import load_run

    env = meta.get("env") or {}
    base_rows = load_run(baseline)[1] if baseline else None
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>opdiff report ", _e(meta.get("run_id")),
           f"</title><style>{STYLE}</style></head><body>",
           f"<h1>opdiff run {_e(meta.get('run_id'))}</h1>",
           f"<p>tier {_e(meta.get('tier'))}, seed {_e(meta.get('seed'))}, started {_e(meta.get('started'))}, "
           f"status {_e(meta.get('status'))}, replicates {_e(meta.get('repeat') or 1)}; commit "
           f"{_e(env.get('opdiff_commit'))}; torch {_e(env.get('torch'))}, torch_npu {_e(env.get('torch_npu'))}, "
           f"CANN {_e(env.get('cann'))}, host {_e(env.get('host'))}, devices {_e(env.get('devices'))}</p>"]
    out += _summary(rows)
    out += known_issues_html(meta)  # the known-issue entries this run applied (harness/ledger.py)
    out += _accuracy(rows, base_rows)
    out += _latency(rows)
    if baseline:
        out += _regressions(run_dir, baseline)
    if history:
        out += _history(run_dir, history)
    out.append("</body></html>\n")
    return "".join(out)

"""Per-op sections of the report as data: error distributions per output kind, latency against the
roofline, and a verdict table per backend. Inputs are harness.frames frames; outputs are Charts
(reports.charts) and plain dicts that the template escapes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness import frames

from . import charts
from .overview import anchor

# The error metrics plotted, in order of preference, with the axis label and a reference line.
# baseline_ratio / rmse_ratio: the error relative to the same-precision baseline's (1 = as good as it).
METRICS = (
    ("baseline_ratio", "max error / same-precision baseline's max error", (1.0, "= baseline")),
    ("rmse_ratio", "RMSE / baseline RMSE", (1.0, "= baseline")),
    ("max_ulp", "max error in ULP of the output dtype (vs float64 golden)", None),
    ("off_by_one_frac", "fraction of int8 elements off by one", (0.05, "warn above 5%")),
    ("max_abs_err", "max |actual - golden|", None),
)
FALLBACK_METRICS = ("off_by_one_frac", "max_abs_err")   # plotted only when no finer metric exists


@dataclass
class OpSection:
    op: str
    anchor: str
    counts: list                      # (backend, {verdict: cases}, total)
    accuracy: list = field(default_factory=list)   # Charts
    exact: list = field(default_factory=list)      # "output: bitwise equal in N results" lines
    latency: list = field(default_factory=list)    # Charts
    unused: list = field(default_factory=list)     # lines naming rows that could not be plotted


def _hover(fields) -> str:
    case_id, backend, verdict, dtype, metric, value = fields
    return (f"{case_id} [{backend}] {metric} = {value:.4g}" + (f"; {verdict}" if verdict != "pass" else "")
            + (f"; {dtype}" if dtype else ""))


def accuracy_charts(op: str, rows, backends: list) -> tuple[list, list]:
    """Charts of the error distribution per output kind of one op (positive, compared rows only)."""
    out, exact = [], []
    compared = rows.loc[~rows["negative"] & rows["verdict"].isin(["pass", "warn", "fail"])]
    for output, g in compared.groupby("output", observed=True, sort=True):
        drawn, covered = False, set()
        for metric, label, ref in METRICS:
            if metric not in g.columns or (drawn and metric in FALLBACK_METRICS):
                continue
            vals = g.loc[g[metric].notna()]
            if metric == "max_ulp":  # a backend judged against the baseline is plotted by its ratios only
                vals = vals.loc[~vals["backend"].astype(str).isin(covered)]
            if metric in ("baseline_ratio", "rmse_ratio"):
                covered |= set(vals["backend"].astype(str))
            if vals.empty:
                continue
            if (vals[metric] == 0).all():  # nothing to draw on a log axis: say it in words
                exact.append(f"{output}: {metric} = 0 in all {len(vals)} results"
                             + (" (bitwise equal)" if metric in FALLBACK_METRICS else ""))
                drawn = True
                continue
            groups, infinite = {}, []
            for case_id, backend, verdict, dtype, v in frames.tuples(vals, ["case_id", "backend", "verdict", "dtype", metric]):
                if not math.isfinite(v):  # e.g. a ratio to an exact baseline: named below, not drawn
                    infinite.append(f"{case_id} [{backend}]")
                    continue
                groups.setdefault(str(backend), []).append((float(v), (case_id, backend, verdict, dtype, metric, v)))
            zeros = int((vals[metric] <= 0).sum())
            note = f"{zeros} of {len(vals)} exactly 0, drawn at the axis' 0" if zeros else ""
            if infinite:
                note = "; ".join(filter(None, [note, f"{len(infinite)} infinite, not drawn: "
                                                     + ", ".join(infinite[:5]) + (" ..." if len(infinite) > 5 else "")]))
            out.append(charts.ecdf(f"{op} / {output}: {metric}", label, groups, backends, ref, note, hover=_hover))
            drawn = True
        if not drawn:
            exact.append(f"{output}: no error metric recorded ({len(g)} rows)")
    return out, exact


_LAT = ["case_id", "backend", "latency_median_us", "latency_p20_us", "latency_p80_us", "bytes", "flops", "gbps",
        "tflops", "pct_peak_bw", "peak_device", "timing_mode"]


def _lat_hover(r) -> str:
    return (f"{r['case_id']} [{r['backend']}] median {r['latency_median_us']:.4g} us"
            f" (p20 {_g(r.get('latency_p20_us'))}, p80 {_g(r.get('latency_p80_us'))});"
            f" {_int(r.get('bytes'))} bytes, {_int(r.get('flops'))} FLOPs; {_g(r.get('gbps'))} GB/s,"
            f" {_g(r.get('tflops'))} TFLOP/s; {_g(r.get('pct_peak_bw'))}% of peak BW"
            f" ({r.get('peak_device') or 'no peak known'}); {r.get('timing_mode') or ''}")


def latency_charts(op: str, cases, backends: list) -> tuple[list, list]:
    """% of peak bandwidth (or latency when no peak is known) against bytes moved, one point per case."""
    timed = cases.loc[cases["latency_median_us"].notna()] if "latency_median_us" in cases.columns else cases[:0]
    if timed.empty:
        return [], []
    has_peak = "pct_peak_bw" in timed.columns and timed["pct_peak_bw"].notna().any()
    ycol = "pct_peak_bw" if has_peak else "latency_median_us"
    groups, unused = {}, 0
    for values in frames.tuples(timed, _LAT):
        r = dict(zip(_LAT, values))
        x, y = r.get("bytes"), r.get(ycol)
        if not (_pos(x) and _pos(y)):
            unused += 1
            continue
        groups.setdefault(str(r["backend"]), []).append((float(x), float(y), r))
    notes = [f"{op}: {unused} timed cases without bytes or {ycol}, not plotted"] if unused else []
    if not groups:
        return [], notes
    ylabel = "% of peak memory bandwidth" if has_peak else "median latency, us"
    devices = sorted({str(d) for d in timed.get("peak_device", []) if isinstance(d, str)})
    note = "peak of " + ", ".join(devices) if devices else ""
    return [charts.scatter(f"{op}: {'% of peak' if has_peak else 'latency'} by case", "bytes moved",
                           ylabel, groups, backends, note, hover=_lat_hover)], notes


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _int(v) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _g(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def op_sections(df, cases, backends: list) -> list:
    out = []
    for op, rows in df.groupby("op", observed=True, sort=True):
        c = cases.loc[cases["op"] == op]
        counts = []
        for b in backends:
            cb = c.loc[c["backend"] == b]
            if len(cb):
                vc = cb["verdict"].value_counts()
                counts.append((b, {str(k): int(v) for k, v in vc.items() if v}, len(cb),
                               int((~cb["ok"]).sum())))
        acc, exact = accuracy_charts(str(op), rows, backends)
        lat, unused = latency_charts(str(op), c, backends)
        out.append(OpSection(str(op), anchor(op), counts, acc, exact, lat, unused))
    return out

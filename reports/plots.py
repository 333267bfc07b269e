"""Plots for the HTML report: matplotlib (Agg), returned as `data:image/png;base64,...` URIs so the
report is one self-contained file that opens offline."""
from __future__ import annotations

import base64
import io
import math

MAX_CASES = 60   # cases per plot: beyond that, labels are unreadable; the tables hold the rest


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def latency_plot(points: dict, title: str) -> str | None:
    """points: backend -> [(case label, median, p20, p80)], one case order shared by all backends."""
    if not any(points.values()):
        return None
    plt = _plt()
    labels = sorted({p[0] for ps in points.values() for p in ps})[:MAX_CASES]
    pos = {c: i for i, c in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(labels) + 3), 3.6))
    for k, (backend, ps) in enumerate(sorted(points.items())):
        ps = [p for p in ps if p[0] in pos and _num(p[1])]
        if not ps:
            continue
        x = [pos[p[0]] + 0.12 * k for p in ps]
        y = [p[1] for p in ps]
        lo = [max(0.0, p[1] - (p[2] if _num(p[2]) else p[1])) for p in ps]
        hi = [max(0.0, (p[3] if _num(p[3]) else p[1]) - p[1]) for p in ps]
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o", ms=3, capsize=2, label=backend)
    ax.set_yscale("log")
    ax.set_ylabel("latency, us (median, p20-p80)")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([c[:28] for c in labels], rotation=90, fontsize=6)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _uri(fig)


def metric_plot(series: dict, title: str, ylabel: str, log: bool = True) -> str | None:
    """series: name -> {case label: value}; dots per case, one colour per series."""
    labels = sorted({c for s in series.values() for c, v in s.items() if _num(v) is not None})[:MAX_CASES]
    if not labels:
        return None
    plt = _plt()
    pos = {c: i for i, c in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(labels) + 3), 3.4))
    for k, (name, s) in enumerate(sorted(series.items())):
        pts = [(pos[c], v) for c, v in s.items() if c in pos and _num(v) is not None]
        if pts:
            ax.plot([p[0] + 0.12 * k for p in pts], [max(p[1], 1e-12) if log else p[1] for p in pts], "o", ms=3,
                    label=name)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([c[:28] for c in labels], rotation=90, fontsize=6)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _uri(fig)


def trend_plot(x_labels: list[str], lines: dict, steps: dict, violations: dict, title: str) -> str | None:
    """lines: name -> [value or None per run]; steps: name -> [run index where a level shift starts];
    violations: name -> [True/False/None per run] (rolling-baseline violations, drawn red)."""
    if not lines:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, ys in sorted(lines.items()):
        xs = [i for i, y in enumerate(ys) if _num(y) is not None]
        if not xs:
            continue
        ref = sorted(ys[i] for i in xs)[len(xs) // 2]  # relative to the series median: cases differ 1000x
        rel = {i: ys[i] / ref for i in xs}
        line, = ax.plot(xs, [rel[i] for i in xs], "-o", ms=3, lw=1, label=name[:40])
        bad = [i for i in xs if (violations.get(name) or [None] * len(ys))[i]]
        if bad:
            ax.plot(bad, [rel[i] for i in bad], "o", ms=7, mfc="none", mec="red")
        for s in steps.get(name, []):
            ax.axvline(s - 0.5, color=line.get_color(), ls="--", lw=1)
    ax.set_xticks(range(len(x_labels)))
    ax.set_xticklabels([t[:20] for t in x_labels], rotation=60, fontsize=6, ha="right")
    ax.set_ylabel("latency / series median", fontsize=8)
    ax.set_title(title + "  (dashed: detected step; red ring: above rolling baseline)", fontsize=8)
    if len(lines) <= 8:
        ax.legend(fontsize=6)
    return _uri(fig)

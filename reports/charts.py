"""Chart geometry for the report's inline SVG: scales, ticks and marks in pixels, no HTML.

The template (templates/chart.html.j2) draws a Chart; every text in it (titles, hover texts with the
case id) is escaped there. Marks carry a `title` that the browser shows on hover, so the page needs
no plotting library and loads nothing. Three kinds:

    ecdf(title, xlabel, groups, ref=None)    error distribution per backend, log x, one step line each
    scatter(title, xlabel, ylabel, groups)   e.g. % of peak against bytes moved, log-log
    trend(title, labels, lines, ...)         latency per run relative to each series' median
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; red stays for "unexpected"
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
W, H = 660, 300
MAX_MARKERS, TAIL_MARKERS = 60, 20    # hover markers per ECDF series: the page stays small for big runs
BIN_PX = 3                            # scatter points closer than this share one marker
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 62, 14, 44, 46
LEGEND_Y = 31          # the legend runs in a row under the title, outside the plot, so it hides no data
CHAR_PX = 6.4          # width of a legend character at 11 px


@dataclass
class Point:
    x: float
    y: float
    title: str
    flagged: bool = False


@dataclass
class Series:
    name: str
    colour: str
    path: str = ""
    points: list = field(default_factory=list)
    dashed: bool = False
    width: float = 1.6


@dataclass
class Chart:
    title: str
    xlabel: str
    ylabel: str
    xticks: list          # (pixel, label)
    yticks: list
    series: list
    vlines: list = field(default_factory=list)   # (pixel, label, colour)
    note: str = ""
    width: int = W
    height: int = H

    @property
    def plot_box(self):
        return M_LEFT, M_TOP, self.width - M_RIGHT, self.height - M_BOTTOM

    @property
    def legend(self) -> tuple[list, int]:
        """([(x, colour, label)] that fit in one row, how many named series did not fit)."""
        out, x = [], float(M_LEFT)
        named = [s for s in self.series if s.name]
        for i, s in enumerate(named):
            label = s.name if len(s.name) <= 48 else s.name[:47] + "\u2026"
            width = 16 + CHAR_PX * len(label) + 14
            if x + width > self.width - M_RIGHT - (90 if i + 1 < len(named) else 0):
                return out, len(named) - i
            out.append((round(x, 1), s.colour, label))
            x += width
        return out, 0


def colour(backends: list, name: str) -> str:
    return PALETTE[backends.index(name) % len(PALETTE)] if name in backends else PALETTE[-1]


class Scale:
    """Data -> pixels on [lo, hi]; log scales put values <= 0 at `zero_at` (below the smallest tick)."""

    def __init__(self, values, p0: float, p1: float, log: bool, pad: float = 0.04):
        vals = [v for v in values if _finite(v) and (v > 0 or not log)]
        self.log, self.p0, self.p1 = log, p0, p1
        if not vals:
            vals = [1.0]
        lo, hi = min(vals), max(vals)
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < (0.5 if log else 1e-12):
            mid = (hi + lo) / 2
            half = 0.5 if log else max(abs(mid) * 0.1, 1e-12)
            lo, hi = mid - half, mid + half
        span = hi - lo
        self.lo, self.hi = lo - pad * span, hi + pad * span
        self.has_zero = log and any(_finite(v) and v <= 0 for v in values)
        if self.has_zero:  # a slot left of the data for exact zeros, one tenth of the axis
            self.lo -= 0.1 * (self.hi - self.lo)

    def __call__(self, v: float) -> float:
        if self.log:
            t = self.lo if v <= 0 else math.log10(v)
        else:
            t = v
        return self.p0 + (t - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self) -> list:
        if not self.log:
            return [(self(v), _fmt(v)) for v in _linear_ticks(self.lo, self.hi)]
        lo, hi = math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9)
        exps = list(range(lo, hi + 1))
        step = max(1, math.ceil(len(exps) / 8))
        out = [(self(10.0 ** e), _fmt(10.0 ** e)) for e in exps[::step]]
        if len(exps) <= 2:  # a narrow range: add 2x and 5x so the axis has labels to read
            for e in range(lo - 1, hi + 1):
                for m in (2, 5):
                    v = m * 10.0 ** e
                    if self.lo <= math.log10(v) <= self.hi:
                        out.append((self(v), _fmt(v)))
        if self.has_zero:
            out.append((self(0), "0"))
        return sorted(out)


def _linear_ticks(lo: float, hi: float, n: int = 6) -> list:
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e15 or a < 1e-3:  # beyond the SI prefixes we use: plain exponent
        return f"{v:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale:  # bytes and FLOPs read better as 20k, 5M than as 2e+04, 5e+06
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.4g}"


def ecdf(title: str, xlabel: str, groups: dict, backends: list, ref: tuple | None = None, note: str = "",
         hover=str) -> Chart:
    """groups: backend -> [(value, payload)]; y is the fraction of that backend's results <= x.
    hover(payload) is the marker's hover text, called only for the points that get a marker."""
    x0, y0, x1, y1 = M_LEFT, M_TOP, W - M_RIGHT, H - M_BOTTOM
    allv = [v for pts in groups.values() for v, _ in pts]
    if ref:
        allv.append(ref[0])
    xs = Scale(allv, x0, x1, log=True)
    ys = Scale([0.0, 1.0], y1, y0, log=False, pad=0.02)
    series, hidden = [], 0
    for name in sorted(groups, key=lambda b: (b not in backends, backends.index(b) if b in backends else 0, b)):
        pts = sorted((p for p in groups[name] if _finite(p[0])), key=lambda p: p[0])
        if not pts:
            continue
        n = len(pts)
        keep = _marked(n)
        marks, d = [], [f"M{xs(pts[0][0]):.1f},{ys(0):.1f}"]
        for i, (v, text) in enumerate(pts):
            px, py = xs(v), ys((i + 1) / n)
            nxt = xs(pts[i + 1][0]) if i + 1 < n else x1
            if i + 1 == n or nxt - px >= 0.5:  # steps closer than half a pixel draw as one
                d.append(f"V{py:.1f}H{nxt:.1f}")
            if i in keep:
                marks.append(Point(round(px, 1), round(py, 1), hover(text)))
        series.append(Series(f"{name} ({n})", colour(backends, name), "".join(d), marks))
        if len(marks) < n:
            hidden += n - len(marks)
    vlines = [(round(xs(ref[0]), 1), ref[1], "#888")] if ref else []
    if hidden:
        note = "; ".join(filter(None, [note, f"the line holds every result; {hidden} of them have no hover marker "
                                             f"(each backend marks its {TAIL_MARKERS} largest and evenly spaced others)"]))
    return Chart(title, xlabel, "fraction of results <= x", xs.ticks(), ys.ticks(), series, vlines, note)


def _marked(n: int) -> set:
    """Indices (into ascending values) that get a hover marker: all when few, else the largest
    TAIL_MARKERS (where failures live) and evenly spaced others, MAX_MARKERS in all."""
    if n <= MAX_MARKERS:
        return set(range(n))
    tail = set(range(n - TAIL_MARKERS, n))
    rest = MAX_MARKERS - TAIL_MARKERS
    body = n - TAIL_MARKERS
    return tail | {round(k * (body - 1) / (rest - 1)) for k in range(rest)}


def scatter(title: str, xlabel: str, ylabel: str, groups: dict, backends: list, note: str = "",
            hover=str) -> Chart:
    """groups: backend -> [(x, y, payload)], both axes log; hover(payload) as in ecdf."""
    x0, y0, x1, y1 = M_LEFT, M_TOP, W - M_RIGHT, H - M_BOTTOM
    pts = [p for ps in groups.values() for p in ps if _finite(p[0]) and _finite(p[1]) and p[0] > 0 and p[1] > 0]
    xs = Scale([p[0] for p in pts], x0, x1, log=True)
    ys = Scale([p[1] for p in pts], y1, y0, log=True)
    series = []
    for name in sorted(groups, key=lambda b: (b not in backends, backends.index(b) if b in backends else 0, b)):
        ps = [p for p in groups[name] if _finite(p[0]) and _finite(p[1]) and p[0] > 0 and p[1] > 0]
        if not ps:
            continue
        bins = {}
        for x, y, t in ps:  # one marker per few pixels: its hover names the first case and counts the others
            bins.setdefault((round(xs(x) / BIN_PX), round(ys(y) / BIN_PX)), []).append((x, y, t))
        marks = []
        for members in bins.values():
            x, y, t = members[0]
            t = hover(t)
            if len(members) > 1:
                t += f" (and {len(members) - 1} more cases at this point)"
            marks.append(Point(round(xs(x), 1), round(ys(y), 1), t))
        series.append(Series(f"{name} ({len(ps)})", colour(backends, name), "", marks))
    return Chart(title, xlabel, ylabel, xs.ticks(), ys.ticks(), series, note=note)


def trend(title: str, labels: list, lines: dict, flagged: dict, steps: dict, note: str = "") -> Chart:
    """lines: case -> [latency or None per run]; drawn relative to each case's median so cases 1000x
    apart share an axis. flagged: case -> [bool per run] (above the rolling baseline, ringed);
    steps: case -> [run index where a level shift starts] (dashed vertical lines)."""
    x0, y0, x1, y1 = M_LEFT, M_TOP, W - M_RIGHT, H - M_BOTTOM
    rel = {}
    for case, ys in lines.items():
        good = sorted(v for v in ys if _finite(v) and v > 0)
        if good:
            med = good[len(good) // 2]
            rel[case] = [v / med if _finite(v) and v > 0 else None for v in ys]
    allv = [v for ys in rel.values() for v in ys if v is not None] + [1.0]
    xs = Scale(list(range(len(labels))), x0, x1, log=False, pad=0.03)
    ys_ = Scale(allv, y1, y0, log=False, pad=0.08)
    interesting = [c for c in rel if any(flagged.get(c) or []) or steps.get(c)]
    series, vlines, k = [], [], 0
    for case in sorted(rel, key=lambda c: (c in interesting, c)):  # flagged series drawn last, on top
        vals = rel[case]
        hot = case in interesting
        col = PALETTE[k % len(PALETTE)] if hot else "#b8b8b8"
        k += hot
        d, pts = [], []
        for i, v in enumerate(vals):
            if v is None:
                continue
            d.append(("L" if d else "M") + f"{xs(i):.1f},{ys_(v):.1f}")
            raw = lines[case][i]
            pts.append(Point(round(xs(i), 1), round(ys_(v), 1),
                             f"{case} | run #{i + 1} {labels[i]} | {raw:.4g} us ({v:.2f}x its median)",
                             bool((flagged.get(case) or [False] * len(vals))[i])))
        series.append(Series(case if hot else "", col, "".join(d), pts, width=2.0 if hot else 1.0))
        for s in steps.get(case, []):
            vlines.append((round(xs(s - 0.5), 1), f"step: {case}", col))
    step_every = max(1, math.ceil(len(labels) / 12))
    # run numbers on the axis (labels are long and often share a date); the hover names each run
    xticks = [(xs(i), f"#{i + 1}") for i in range(0, len(labels), step_every)]
    if labels:
        note = "; ".join(filter(None, [note, f"#1 = {labels[0]}, #{len(labels)} = {labels[-1]}"]))
    return Chart(title, "run (oldest first)", "latency / series median", xticks, ys_.ticks(), series, vlines, note)

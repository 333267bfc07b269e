"""The first screen of the report, as plain data for the template: the run's one-line verdict, its
identity, the op x backend matrix and the table of unexpected results.

Everything here is computed from harness.frames frames (result rows, and `case_frame` for one row
per op x case x backend); nothing is HTML, so the template escapes every string it writes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# cell states, best to worst: the colour of a matrix cell is its worst state
CELL_STATES = ("ok", "warn", "unexpected", "skipped", "empty")
UNEXPECTED_LIMIT = 1000   # table rows; the rest are counted in a line under the table
_WORST_RE = re.compile(r"worst at index .*$")
_XPASS = "unexpected pass of known issue"


def anchor(op: str) -> str:
    """The id of an op's section: letters, digits, '-' and '_' only (op names are identifiers)."""
    return "op-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(op))


def category(row) -> str:
    """Why a not-ok case is unexpected, in the words of the issue tracker."""
    verdict = str(row["verdict"])
    if str(row.get("reason") or "").startswith(_XPASS):
        return "strict-xfail pass"
    if row["negative"] and verdict in ("fail", "pass", "warn"):
        return "unrejected negative"
    if not row["negative"] and verdict == "rejected":
        return "rejected positive"
    return verdict


def worst_element(reason) -> str:
    """The 'worst at index ...: actual ..., golden ...' part of a compare reason, if any."""
    m = _WORST_RE.search(str(reason or ""))
    return m.group(0) if m else ""


@dataclass
class Cell:
    op: str
    backend: str
    state: str
    text: str
    title: str
    href: str
    counts: dict = field(default_factory=dict)


@dataclass
class Overview:
    verdict_line: str
    good: bool
    identity: list        # (label, value) pairs
    backends: list
    ops: list
    cells: dict            # (op, backend) -> Cell
    unexpected: list       # row dicts for the table
    unexpected_total: int
    warn_total: int
    skip_reasons: list     # (backend, reason, cases)
    warned: list = field(default_factory=list)   # row dicts of the warn results (as expected, worth a look)


def _cell(op, backend, cases) -> Cell:
    href = "#" + anchor(op)
    if cases is None or cases.empty:
        return Cell(op, backend, "empty", "-", f"{op} on {backend}: no results in this run", href)
    n = len(cases)
    counts = cases["verdict"].value_counts()
    counts = {str(k): int(v) for k, v in counts.items() if v}
    bad = int((~cases["ok"]).sum())
    skipped = int((cases["verdict"] == "skipped").sum())
    warn = int(((cases["verdict"] == "warn") & cases["ok"]).sum())
    breakdown = ", ".join(f"{v} {k}" for k, v in counts.items())
    reasons = cases.loc[cases["verdict"] == "skipped", "reason"].astype(str).value_counts()
    why = "; ".join(f"{r} ({c} cases)" for r, c in reasons.head(3).items())
    if len(reasons) > 3:
        why += f"; and {len(reasons) - 3} more reasons"
    if bad:
        state, text = "unexpected", f"{bad} unexpected / {n}"
    elif skipped == n:
        state, text = "skipped", "skipped"
    elif warn:
        state, text = "warn", f"{warn} warn / {n}"
    else:
        state, text = "ok", f"{n - skipped} ok" + (f", {skipped} skipped" if skipped else "")
    title = f"{op} on {backend}: {n} cases: {breakdown}"
    if why:
        title += f". Skipped: {why}"
    return Cell(op, backend, state, text, title, href, counts)


def identity(meta: dict) -> list:
    env = meta.get("env") or {}
    devices = env.get("devices") or {}
    if isinstance(devices, dict):
        devices = ", ".join(f"{k}: {v}" for k, v in devices.items())
    toolkit = ", ".join(f"{k} {env.get(k)}" for k in ("torch", "torch_npu", "cann", "numpy", "python")
                        if env.get(k))
    when = str(meta.get("started") or "")
    if meta.get("finished"):
        when += f" to {meta['finished']}" + _duration(meta.get("started"), meta["finished"])
    pairs = [("run", meta.get("run_id")), ("tier", f"{meta.get('tier')}, seed {meta.get('seed')}, "
                                          f"replicates {meta.get('repeat') or 1}, status {meta.get('status')}"),
             ("commit", env.get("opdiff_commit")), ("toolkit", toolkit or "not recorded"),
             ("devices", devices or "not recorded"), ("host", " ".join(filter(None, (
                 str(env.get("host") or ""), str(env.get("cpu") or ""),
                 f"({env['cpu_count']} cores)" if env.get("cpu_count") else ""))) or "not recorded"),
             ("time", when)]
    return [(k, "" if v is None else str(v)) for k, v in pairs]


def _duration(start, end) -> str:
    from datetime import datetime

    try:
        secs = (datetime.strptime(str(end), "%Y-%m-%dT%H:%M:%S%z")
                - datetime.strptime(str(start), "%Y-%m-%dT%H:%M:%S%z")).total_seconds()
    except ValueError:  # a hand-edited or older run.json: the two times stand on their own
        return ""
    return f" ({int(secs // 60)} min {int(secs % 60)} s)"


def build(df, cases, meta: dict) -> Overview:
    """df: result rows (harness.frames.from_rows); cases: harness.frames.case_frame(df)."""
    backends = list(meta.get("backends") or [])
    backends += sorted(set(map(str, cases["backend"].unique())) - set(backends)) if not cases.empty else []
    ops = sorted(set(map(str, cases["op"].unique()))) if not cases.empty else []
    groups = {k: g for k, g in cases.groupby(["op", "backend"], observed=True)} if not cases.empty else {}
    cells = {(op, b): _cell(op, b, groups.get((op, b))) for op in ops for b in backends}

    bad = cases.loc[~cases["ok"]] if not cases.empty else cases
    n_bad, bad_ops = len(bad), sorted(set(map(str, bad["op"]))) if len(bad) else []
    n_warn = int(((cases["verdict"] == "warn") & cases["ok"]).sum()) if not cases.empty else 0
    n_all = len(cases)
    n_skip = int((cases["verdict"] == "skipped").sum()) if not cases.empty else 0
    if not n_all:
        line, good = "No results in this run.", False
    elif n_bad:
        line = (f"{n_bad} unexpected result{'s' * (n_bad != 1)} in {len(bad_ops)} op{'s' * (len(bad_ops) != 1)} "
                f"({', '.join(bad_ops)}), of {n_all} case x backend results")
        good = False
    else:
        line, good = f"All {n_all} case x backend results as expected", True
    extras = [f"{n_warn} warn" if n_warn else "", f"{n_skip} skipped" if n_skip else ""]
    if any(extras):
        line += " (" + ", ".join(x for x in extras if x) + ")"
    if meta.get("status") not in (None, "finished"):
        line += f"; the run is {meta.get('status')}, not finished"
        good = False

    order = bad.assign(_v=bad["verdict"].cat.codes).sort_values(["_v", "op", "backend", "case_id"],
                                                                ascending=[False, True, True, True]) \
        if len(bad) else bad
    rows = _table_rows(order.head(UNEXPECTED_LIMIT))
    warned = cases.loc[(cases["verdict"] == "warn") & cases["ok"]].sort_values(["op", "backend", "case_id"]) \
        if not cases.empty else cases

    skip = cases.loc[cases["verdict"] == "skipped"] if not cases.empty else cases
    skip_reasons = []
    if len(skip):
        for (b, reason), g in skip.groupby([skip["backend"].astype(str), skip["reason"].astype(str)]):
            skip_reasons.append((b, reason, len(g)))
        skip_reasons.sort(key=lambda t: (-t[2], t[0]))
    return Overview(line, good, identity(meta), backends, ops, cells, rows, n_bad, n_warn, skip_reasons,
                    _table_rows(warned.head(UNEXPECTED_LIMIT)))


def _table_rows(frame) -> list:
    rows = []
    for r in frame.to_dict("records"):
        rows.append({"op": str(r["op"]), "backend": str(r["backend"]), "case_id": str(r["case_id"]),
                     "dtype": text(r.get("dtype")), "category": category(r) if not r["ok"] else str(r["verdict"]),
                     "verdict": str(r["verdict"]), "outputs": text(r.get("bad_outputs")),
                     "reason": text(r.get("reason")), "worst": worst_element(r.get("reason")),
                     "known_issue": text(r.get("known_issue")), "repro": text(r.get("repro")),
                     "href": "#" + anchor(r["op"])})
    return rows


def text(v) -> str:
    """A cell's text: missing values (None, NaN, NA) as the empty string."""
    if v is None:
        return ""
    try:
        if v != v:  # NaN / NA
            return ""
    except (TypeError, ValueError):
        return ""
    return str(v)

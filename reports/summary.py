"""First summary report of one run: HTML with a pass/warn/fail table per op x backend x dtype and
the worst cases with their repro commands. Every string from the results is escaped."""
from __future__ import annotations

import html
from collections import Counter, defaultdict

VERDICTS = ("pass", "warn", "fail", "error", "rejected", "skipped", "crash", "timeout")
BAD = {"fail", "error", "crash", "timeout"}


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def summary_table(rows: list[dict]) -> dict:
    """(op, backend, dtype) -> Counter of per-case verdicts (worst verdict over a case's outputs)."""
    from harness.compare import worst_verdict

    per_case = defaultdict(list)
    for r in rows:
        per_case[(r["op"], r["backend"], r.get("dtype") or "", r["case_id"])].append(r["verdict"])
    table = defaultdict(Counter)
    for (op, backend, dtype, _), verdicts in per_case.items():
        table[(op, backend, dtype)][worst_verdict(verdicts)] += 1
    return table


def worst_rows(rows: list[dict], limit: int = 25) -> list[dict]:
    """Rows that are not as expected first, then the largest baseline ratios / ULP errors."""
    def key(r):
        ratio = r.get("baseline_ratio")
        ulp = r.get("max_ulp")
        return (bool(r.get("ok", True)), -(ratio if isinstance(ratio, (int, float)) else 0.0),
                -(ulp if isinstance(ulp, (int, float)) else 0.0))

    return sorted(rows, key=key)[:limit]


def render(meta: dict, rows: list[dict]) -> str:
    table = summary_table(rows)
    env = meta.get("env", {})
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>opdiff run ",
           _e(meta.get("run_id")), "</title><style>body{font-family:sans-serif;margin:2em}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
           ".fail,.error,.crash,.timeout{background:#fbb}.warn{background:#ffd}.pass{background:#dfd}"
           "code{font-size:12px}</style></head><body>",
           f"<h1>opdiff run {_e(meta.get('run_id'))}</h1>",
           f"<p>tier {_e(meta.get('tier'))}, seed {_e(meta.get('seed'))}, started {_e(meta.get('started'))}, "
           f"status {_e(meta.get('status'))}; commit {_e(env.get('opdiff_commit'))}; "
           f"torch {_e(env.get('torch'))}, torch_npu {_e(env.get('torch_npu'))}, CANN {_e(env.get('cann'))}, "
           f"host {_e(env.get('host'))}</p>",
           "<h2>Verdicts per op x backend x dtype (cases)</h2><table><tr><th>op</th><th>backend</th><th>dtype</th>"]
    out += [f"<th>{v}</th>" for v in VERDICTS] + ["</tr>"]
    for (op, backend, dtype), counts in sorted(table.items()):
        worst = next((v for v in ("crash", "timeout", "error", "fail", "warn") if counts.get(v)), "pass")
        out.append(f"<tr class='{worst}'><td>{_e(op)}</td><td>{_e(backend)}</td><td>{_e(dtype)}</td>")
        out += [f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS] + ["</tr>"]
    out.append("</table><h2>Worst cases</h2><table><tr><th>op/case</th><th>backend</th><th>output</th>"
               "<th>verdict</th><th>baseline ratio</th><th>max ULP</th><th>reason</th><th>repro</th></tr>")
    for r in worst_rows(rows):
        out.append(f"<tr class='{_e(r.get('verdict'))}'><td>{_e(r['op'])}/{_e(r['case_id'])}</td>"
                   f"<td>{_e(r['backend'])}</td><td>{_e(r.get('output'))}</td><td>{_e(r.get('verdict'))}</td>"
                   f"<td>{_fmt(r.get('baseline_ratio'))}</td><td>{_fmt(r.get('max_ulp'))}</td>"
                   f"<td>{_e(r.get('reason'))}</td><td><code>{_e(r.get('repro'))}</code></td></tr>")
    out.append("</table></body></html>\n")
    return "".join(out)


def _fmt(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) else ""

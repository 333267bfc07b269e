"""The schema of result and sample rows, checked where a run directory is read.

A row that would make a reader fail later (KeyError 'op', an unknown verdict counted as nothing,
a string where a latency should be) is an error here, naming the file and the line or row, so
that `report`, `compare`, `merge` and `bisect-check` never judge on a malformed file.

    check_rows(rows, stem, where)   raises UsageError at the first bad row; where(i) names row i
"""
from __future__ import annotations

from numbers import Real

from .errors import UsageError
from .regress import VERDICT_ORDER

VERDICTS = frozenset(VERDICT_ORDER)
_TEXT_KEYS = {"results": ("op", "case_id", "backend", "verdict"), "samples": ("op", "case_id", "backend")}
_OPTIONAL_TEXT = ("output", "reason", "run_id", "dtype", "timing_mode", "repro")
_NUMBERS = {"results": ("latency_median_us", "latency_iqr_us", "latency_p20_us", "latency_p80_us",
                        "latency_min_us"),
            "samples": ("latency_us",)}


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def row_problem(row, stem: str) -> str | None:
    """What is wrong with one row of `stem` ("results" or "samples"), or None."""
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    for k in _TEXT_KEYS[stem]:
        v = row.get(k)
        if v is None:
            return f"missing {k!r}"
        if not isinstance(v, str):
            return f"{k!r} is {type(v).__name__} {v!r}, expected text"
    if stem == "results":
        if row["verdict"] not in VERDICTS:
            return f"unknown verdict {row['verdict']!r} (known: {', '.join(VERDICT_ORDER)})"
        if row.get("ok") is not None and not isinstance(row["ok"], bool):
            return f"'ok' is {type(row['ok']).__name__} {row['ok']!r}, expected true/false"
        for k in _OPTIONAL_TEXT:
            if row.get(k) is not None and not isinstance(row[k], str):
                return f"{k!r} is {type(row[k]).__name__} {row[k]!r}, expected text"
    for k in _NUMBERS[stem]:
        v = row.get(k)
        if v is not None and not _is_number(v):
            return f"{k!r} is {type(v).__name__} {v!r}, expected a number"
    return None


def check_rows(rows, stem: str, where) -> None:
    for i, row in enumerate(rows, 1):
        problem = row_problem(row, stem)
        if problem:
            raise UsageError(f"{where(i)}: malformed {stem} row: {problem}")

"""The verdict vocabulary: its order (worst last) and what counts as a failure.

`warn` is a result within policy but worth a look (harness.compare); by default it is as expected,
and `--fail-on warn` (run, pytest) makes it a failure for teams that want it.
"""
from __future__ import annotations

# nondeterministic: a device result that changed between launches on the same inputs (harness.devcheck)
VERDICT_ORDER = ("pass", "skipped", "rejected", "warn", "fail", "nondeterministic", "error", "timeout", "crash")
# The column order of verdict tables (run's summary, the nightly report): outcomes of a comparison
# first, then what kept one from happening.
DISPLAY_ORDER = ("pass", "warn", "fail", "nondeterministic", "error", "rejected", "skipped", "crash", "timeout")
assert set(DISPLAY_ORDER) == set(VERDICT_ORDER)
FAIL_ON = ("fail", "warn")           # the --fail-on choices: the least severe verdict that fails


def worst_verdict(verdicts) -> str:
    vs = list(verdicts)
    return max(vs, key=VERDICT_ORDER.index) if vs else "pass"


def is_failure(row: dict, fail_on: str = "fail") -> bool:
    """A row not as its case expects (`ok` false), or a warning under --fail-on warn."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"unknown --fail-on {fail_on!r}; valid: {', '.join(FAIL_ON)}")
    return (not row["ok"]) or (fail_on == "warn" and row.get("verdict") == "warn")

"""The verdict vocabulary and --fail-on (harness.verdicts)."""
from __future__ import annotations

import pytest

from harness.verdicts import VERDICT_ORDER, is_failure, worst_verdict


def test_worst_verdict_follows_the_order():
    assert worst_verdict(["pass", "warn", "skipped"]) == "warn"
    assert worst_verdict(["warn", "fail", "error"]) == "error"
    assert worst_verdict([]) == "pass"
    assert VERDICT_ORDER[-1] == "crash"


def test_fail_on_warn():
    warn = {"ok": True, "verdict": "warn"}
    assert not is_failure(warn) and is_failure(warn, "warn")
    assert is_failure({"ok": False, "verdict": "fail"})
    assert not is_failure({"ok": True, "verdict": "rejected"}, "warn")
    with pytest.raises(ValueError, match="valid: fail, warn"):
        is_failure(warn, "error")

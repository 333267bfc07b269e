"""Known-issue keys `negative` and `workaround` (cases/known_issues/README.md), and the shipped entries."""
from __future__ import annotations

import pytest

from harness import ledger as ledger_mod
from harness import registry
from harness.errors import UsageError

ENTRY = """[[known_issue]]
op = "paged_cache_load"
where = {{ layout = "ND" }}
kind = "xfail"
reason = "r"
issue = "#1"
{extra}
"""


def _load(tmp_path, extra):
    f = tmp_path / "aclnn.toml"
    f.write_text(ENTRY.format(extra=extra))
    return ledger_mod.load_file(f)


@pytest.mark.parametrize("extra, message", [
    ('negative = "no"', "'negative' must be true or false"),
    ("workaround = 3", "'workaround' must name a backend mode"),
    ('workaround = ""', "'workaround' must name a backend mode"),
    ("mode = false", "'mode' must name a backend mode"),
])
def test_bad_values_name_the_key_and_the_entry(tmp_path, extra, message):
    with pytest.raises(UsageError, match=message) as info:
        _load(tmp_path, extra)
    assert "entry #1" in str(info.value)


def test_negative_and_workaround_narrow_the_match(tmp_path):
    (entry,) = _load(tmp_path, 'negative = false\nworkaround = "pcl_zero_seq_starts"')
    spec = registry.op("paged_cache_load")
    cases = spec.cases("smoke")
    pos = next(c for c in cases if not c.negative and c.params["layout"] == "ND")
    neg = next(c for c in cases if c.negative and c.params["layout"] == "ND")
    ledger = ledger_mod.Ledger([entry])
    assert ledger.match(spec, pos, "aclnn") is entry and ledger.match(spec, pos, "aclnn:1") is entry
    assert ledger.match(spec, neg, "aclnn") is None
    assert ledger.match(spec, pos, "aclnn:pcl_zero_seq_starts") is None
    assert ledger.match(spec, pos, "aclnn:1+pcl_zero_seq_starts") is None
    assert entry.describe()["workaround"] == "pcl_zero_seq_starts" and entry.describe()["negative"] is False


def test_mode_entries_apply_only_in_their_mode(tmp_path):
    (entry,) = _load(tmp_path, 'mode = "pcl_functional"')
    spec = registry.op("paged_cache_load")
    pos = next(c for c in spec.cases("smoke") if not c.negative and c.params["layout"] == "ND")
    ledger = ledger_mod.Ledger([entry])
    assert ledger.match(spec, pos, "aclnn") is None
    assert ledger.match(spec, pos, "aclnn:1+pcl_functional") is entry


def test_shipped_entries_load_and_match_positive_nd_cases_without_seq_starts():
    ledger = ledger_mod.load(backends=["aclnn", "torch_npu"])
    assert {e.backend for e in ledger.entries} >= {"aclnn", "torch_npu"}
    assert ledger.unmatched(registry.ops()) == []
    spec = registry.op("paged_cache_load")
    cases = spec.cases("smoke")
    hit = {c.id for c in cases if ledger.match(spec, c, "aclnn")}
    assert hit == {c.id for c in cases if ledger.match(spec, c, "torch_npu")}
    want = {c.id for c in cases if not c.negative and c.params["layout"] == "ND" and not c.params["has_seq_starts"]}
    assert hit == want and len(want) >= 10

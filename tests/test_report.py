"""The HTML report: self-contained (plots embedded, nothing fetched), escaped, with the regression
table, trends and the nightly rule over a history of runs."""
from __future__ import annotations

import base64
import json
import re

import pytest

from .test_regress import _spin_cases, spin_registered, write_replicated  # noqa: F401  (fixture)


@pytest.fixture()
def nightly_history(tmp_path, spin_registered):  # noqa: F811
    """Six nights of three cases; the last two nights 30% slower on one case."""
    spec, chosen = _spin_cases(3)
    slow = chosen[0].id
    for night in range(6):
        env = {"OPDIFF_TEST_SLOWDOWN": f"0.3:{slow}"} if night >= 4 else {}
        write_replicated(tmp_path / "nights", {f"n{night}": env}, 1, (spec, chosen))
    # write_replicated lays out nights/nN/r0: flatten to nights/nN
    hist = tmp_path / "hist"
    hist.mkdir()
    for night in range(6):
        (tmp_path / "nights" / f"n{night}" / "r0").rename(hist / f"n{night}")
    return hist, slow


def _images(text):
    return re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)


def test_report_is_self_contained_with_plots_trends_and_nightly_rule(nightly_history, tmp_path):
    from harness.cli import main

    hist, slow = nightly_history
    last = hist / "n5"
    meta = json.loads((last / "run.json").read_text())
    meta["tier"] = "<script>alert('x')</script>"
    (last / "run.json").write_text(json.dumps(meta))
    out = tmp_path / "r.html"
    assert main(["report", str(last), "--baseline", str(hist / "n0"), "--history", str(hist), "-o", str(out)]) == 0
    text = out.read_text()
    assert "<script" not in text and "&lt;script&gt;" in text
    # offline: no URL but the embedded images
    assert not re.search(r"(src|href)=['\"](?!data:)", text)
    imgs = _images(text)
    assert len(imgs) >= 4  # accuracy, latency, % of peak, trend
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    for section in ("Verdicts per op", "Accuracy: error per case", "Latency per case and backend",
                    "Regressions against", "Trends over 6 runs", "Nightly status"):
        assert section in text
    # the nightly rule flags exactly the slowed case, with its repro command
    rows = re.findall(r"<tr class='(regression|suspicious)'><td>paged_cache_load/([^<]+)</td>.*?<code>([^<]*)</code>",
                      text)
    assert [(s, c) for s, c, _ in rows] == [("regression", slow)]
    assert rows[0][2].startswith("python -m harness run --ops paged_cache_load")
    # single runs per side: the 30% change is reported, but as AMBIGUOUS, never as a verdict
    assert re.search(rf"<tr class='AMBIGUOUS'><td>paged_cache_load/{re.escape(slow)}</td>", text)
    assert "% peak BW" in text and "host_perf_counter/hot" in text


def test_report_without_baseline_or_history_still_has_plots(tmp_path, spin_registered):  # noqa: F811
    from harness.cli import main

    write_replicated(tmp_path, {"run": {}}, 1, _spin_cases(2))
    assert main(["report", str(tmp_path / "run" / "r0")]) == 0
    text = (tmp_path / "run" / "r0" / "report.html").read_text()
    assert len(_images(text)) >= 2 and "Regressions against" not in text


def test_report_on_a_missing_baseline_is_a_usage_error(tmp_path, spin_registered):  # noqa: F811
    from harness.cli import main

    write_replicated(tmp_path, {"run": {}}, 1, _spin_cases(1))
    assert main(["report", str(tmp_path / "run" / "r0"), "--baseline", str(tmp_path / "nope")]) == 2

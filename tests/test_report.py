"""The HTML report: first screen (verdict line, identity, op x backend matrix, unexpected results),
escaping, self-containment (no URL leaves the page), per-op charts with hover texts, the regression
table, trends and the nightly rule over a history of runs, and the size bound."""
from __future__ import annotations

import json
import re

import pytest

from . import report_runs
from .html_dom import parse
from .test_regress import _spin_cases, spin_registered, write_replicated  # noqa: F401  (fixture)

pytest.importorskip("jinja2")
pytest.importorskip("pandas")


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


def _report(run_dir, out, *extra):
    from harness.cli import main

    assert main(["report", str(run_dir), "-o", str(out), *extra]) == 0
    return out.read_text(encoding="utf-8")


def _urls(text):
    """Every src/href/action attribute value that is not an in-page anchor or a data: URI."""
    return [u for u in re.findall(r"\b(?:src|href|action|xlink:href)\s*=\s*[\"']([^\"']*)", text)
            if not u.startswith(("#", "data:"))]


def _rows(table):
    return [[td.text.strip() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]


def test_first_screen_verdict_identity_matrix_and_unexpected_table(tmp_path):
    run = report_runs.small_run(tmp_path / "run")
    dom = parse(_report(run, tmp_path / "r.html"))

    verdict = dom.by_id("run-verdict")
    assert "bad" in verdict.attrs["class"].split() and verdict.attrs["data-unexpected"] == "6"
    assert "6 unexpected results in 1 op (paged_cache_load)" in verdict.text
    ident = dict((d.find("dt").text, d.find("dd").text) for d in dom.by_id("identity").find_all("div"))
    assert ident["commit"] == "0123456789abcdef"
    assert "torch_npu 2.13.0" in ident["toolkit"] and "cann 8.1.RC1" in ident["toolkit"]
    assert "torch_npu: Ascend910B3" in ident["devices"]
    assert ident["time"] == "2026-12-01T00:00:00+0000 to 2026-12-01T00:01:00+0000 (1 min 0 s)"

    cells = {(td.attrs["data-op"], td.attrs["data-backend"]): td for td in dom.by_id("matrix").find_all("td")}
    state = {k: v.attrs["data-state"] for k, v in cells.items()}
    assert state == {("incre_flash_attention", "numpy"): "ok", ("incre_flash_attention", "torch"): "warn",
                     ("incre_flash_attention", "torch_npu"): "ok", ("incre_flash_attention", "aclnn"): "skipped",
                     ("paged_cache_load", "numpy"): "ok", ("paged_cache_load", "torch"): "ok",
                     ("paged_cache_load", "torch_npu"): "unexpected", ("paged_cache_load", "aclnn"): "skipped"}
    assert report_runs.SKIP_REASON in cells[("paged_cache_load", "aclnn")].attrs["title"]
    assert cells[("paged_cache_load", "torch_npu")].text.strip() == "6 unexpected / 6"
    assert cells[("paged_cache_load", "torch_npu")].find("a").attrs["href"] == "#op-paged_cache_load"
    assert dom.by_id("op-paged_cache_load") is not None  # the link lands on a section

    table = dom.by_id("unexpected")
    head = [th.text for th in table.find("thead").find_all("th")]
    rows = {r[head.index("case")]: r for r in _rows(table)}
    what = {case: r[head.index("what")] for case, r in rows.items()}
    assert what == {report_runs.HOSTILE: "crash", "error-case": "error", "fail-case": "fail",
                    "neg-unrejected": "unrejected negative", "rejected-positive": "rejected positive",
                    "xfail-passed": "strict-xfail pass"}
    assert list(what)[0] == report_runs.HOSTILE  # worst verdict first
    assert rows["fail-case"][head.index("worst element")] == "worst at index (1, 2): actual 3.0, golden 1.0"
    assert rows["xfail-passed"][head.index("known issue")] == "ISSUE-7 (xfail)"
    buttons = {b.attrs["data-copy"] for b in table.find_all("button", cls="copy")}
    assert "python -m harness run --ops paged_cache_load --backends torch_npu --case 'fail-case'" in buttons
    assert f"python -m harness run --ops paged_cache_load --backends torch_npu --case '{report_runs.HOSTILE}'" \
        in buttons

    # per op: cases per backend by verdict, only the verdicts this run has
    counts = dom.by_id("op-paged_cache_load").find("table", cls="counts")
    assert [th.text for th in counts.find_all("th")] == ["backend", "cases", "unexpected", "pass", "warn", "fail",
                                                         "error", "rejected", "skipped", "crash"]
    assert _rows(counts)[2] == ["torch_npu", "6", "6", "1", "", "2", "1", "1", "", "1"]


def test_hostile_text_is_escaped_everywhere(tmp_path):
    run = report_runs.small_run(tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    meta["tier"] = "<script>alert('x')</script>"
    meta["env"]["opdiff_commit"] = "</dd><script>alert(2)</script>"
    (run / "run.json").write_text(json.dumps(meta))
    text = _report(run, tmp_path / "r.html")
    for raw in ("<img src=x onerror", "<script>alert", "<b>SIGSEGV</b>", "</td>\"'"):
        assert raw not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;b&gt;SIGSEGV&lt;/b&gt;" in text
    dom = parse(text)
    # the only scripts are the page's own two (policy counter in head, tables at the end)
    assert len(dom.find_all("script")) == 2 and not dom.find_all("img")
    assert dom.find("h1").text == "opdiff <script>alert('x')</script> run"


def test_page_is_self_contained_and_locked_down(tmp_path):
    text = _report(report_runs.small_run(tmp_path / "run"), tmp_path / "r.html")
    assert _urls(text) == []
    csp = parse(text).find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "connect-src" not in csp  # nothing may be fetched
    assert "<link" not in text and "@import" not in text


def test_charts_per_output_kind_with_case_hover(tmp_path):
    dom = parse(_report(report_runs.small_run(tmp_path / "run"), tmp_path / "r.html"))
    section = dom.by_id("op-incre_flash_attention")
    titles = [s.attrs["aria-label"] for s in section.find_all("svg")]
    # every backend has ratios to the baseline here, so no max_ulp chart repeats them
    assert titles == ["incre_flash_attention / out: baseline_ratio", "incre_flash_attention / out: rmse_ratio",
                      "incre_flash_attention: % of peak by case"]
    ecdf = section.find("svg")
    series = {g.attrs["data-series"]: g for g in ecdf.find_all("g", cls="series")}
    assert set(series) == {"numpy (6)", "torch (6)", "torch_npu (6)"}
    hover = [c.find("title").text for c in series["torch (6)"].find_all("circle")]
    assert hover[0] == "pw00-case [torch] baseline_ratio = 0.5; float16" and len(hover) == 6
    assert hover[2] == "pw02-case [torch] baseline_ratio = 0.7; warn; float16"
    # ECDF: the y of the k-th point is k/n (pixel rows strictly rising)
    ys = [float(c.attrs["cy"]) for c in series["torch (6)"].find_all("circle")]
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == 6
    roof = section.find_all("svg")[-1]
    hover = [t.text for t in roof.find_all("title")]
    assert any("pw03-case [numpy]" in h and "40,000 bytes, 80,000 FLOPs" in h for h in hover)


def test_all_results_table_lists_every_case_backend(tmp_path):
    dom = parse(_report(report_runs.small_run(tmp_path / "run"), tmp_path / "r.html"))
    rows = dom.by_id("results").find("tbody").find_all("tr")
    assert len(rows) == 50
    repro = {r.find_all("td")[1].text: r.find_all("td")[-1].attrs["data-copy"] for r in rows
             if r.find_all("td")[2].text == "torch_npu"}
    assert repro["fail-case"] == "python -m harness run --ops paged_cache_load --backends torch_npu --case 'fail-case'"
    bad = [r for r in rows if r.attrs.get("class") == "unexpected"]
    assert len(bad) == 6 and {r.find_all("td")[2].text for r in bad} == {"torch_npu"}
    warn = [[td.text for td in r.find_all("td")] for r in rows if r.attrs.get("class") == "warn"]
    assert [(w[0], w[1], w[2], w[4]) for w in warn] == [("incre_flash_attention", "pw02-case", "torch", "warn")]
    skips = _rows(dom.by_id("skips").find("table"))
    assert skips == [["aclnn", "12", report_runs.SKIP_REASON]]


def test_good_run_says_so(tmp_path):
    rows = [report_runs.good("paged_cache_load", i, b) for i in range(3) for b in ("numpy", "torch")]
    run = report_runs.write_run(tmp_path / "run", rows, dict(report_runs.META, backends=["numpy", "torch"]))
    dom = parse(_report(run, tmp_path / "r.html"))
    v = dom.by_id("run-verdict")
    assert "good" in v.attrs["class"].split() and "All 6 case x backend results as expected" in v.text
    assert dom.by_id("unexpected") is None and dom.by_id("no-unexpected") is not None


def _many_cases_run(path, n_cases):
    rows = []
    for op in ("a_op", "b_op", "c_op", "d_op", "e_op"):
        for i in range(n_cases):
            for b in ("numpy", "torch"):
                for out in ("q", "k", "v"):
                    r = report_runs.good(op, i, b, output=out)
                    r["case_id"] = f"pw{i:04d}-float16_b{i % 7}_s{i % 13}_n{i % 5}_d{64 * (i % 3 + 1)}_layout_ND"
                    r["reason"] = "within rtol 0.000977*|g| + 2 ULP, small values within 0.00781, bias 0.020 ULP"
                    rows.append(r)
    return report_runs.write_run(path, rows, dict(report_runs.META, backends=["numpy", "torch"]))


@pytest.mark.parametrize("n_cases, bound_mb", [
    (200, 2.0),   # 2000 case x backend results, about the smoke tier of all ops on all backends
    pytest.param(600, 5.0, marks=pytest.mark.slow),  # 6000: 4x today's nightly (numpy + torch) under 5 MB
])
def test_size_stays_under_the_bound(tmp_path, n_cases, bound_mb):
    """Charts are bounded (hover markers capped, scatter binned), so the page grows with the table only."""
    text = _report(_many_cases_run(tmp_path / "run", n_cases), tmp_path / "r.html")
    size = len(text.encode("utf-8"))
    assert size < bound_mb * 1e6, f"{size / 1e6:.2f} MB"
    dom = parse(text)
    assert len(dom.by_id("results").find("tbody").find_all("tr")) == 5 * 2 * n_cases  # every result listed
    circles = dom.by_id("op-a_op").find("svg").find_all("circle")
    assert 2 * 50 <= len(circles) <= 2 * 60  # two backends, markers capped, the 20 largest always marked
    assert any("pw%04d-" % (n_cases - 1) in c.find("title").text for c in circles)
    note = dom.by_id("op-a_op").find("figcaption").text
    assert f"{2 * n_cases - len(circles)} of them have no hover marker" in note


def test_report_with_baseline_and_history_has_regressions_trends_and_nightly_rule(nightly_history, tmp_path):
    hist, slow = nightly_history
    last = hist / "n5"
    text = _report(last, tmp_path / "r.html", "--baseline", str(hist / "n0"), "--history", str(hist))
    assert _urls(text) == []
    dom = parse(text)
    assert dom.by_id("regressions").find("h2").text.startswith("Regressions against")
    # single runs per side: the 30% change is reported, but as AMBIGUOUS, never as a verdict
    reg = {r.find("td", cls="case").text: r.attrs["class"] for r in dom.by_id("regressions").find_all("tr")[1:]}
    assert reg.get(slow) == "AMBIGUOUS"
    trends = dom.by_id("trends")
    assert trends.find("h2").text == "Trends over 6 runs"
    charts = trends.find_all("svg")
    assert [c.attrs["aria-label"] for c in charts] == ["paged_cache_load [spin]"]
    rings = [c.find("title").text for c in charts[0].find_all("circle") if c.attrs.get("stroke") == "#c00"]
    assert len(rings) == 2 and all(t.startswith(slow) for t in rings)  # the two slow nights
    steps = [ln.find("title").text for ln in charts[0].find_all("line", cls="ref")]
    assert steps == [f"step: {slow}"]
    # the nightly rule flags exactly the slowed case, with its repro command
    flagged = trends.find("table").find("tbody").find_all("tr")
    assert [(r.attrs["class"], r.find("td", cls="case").text) for r in flagged] == [("regression", slow)]
    assert flagged[0].find("button").attrs["data-copy"].startswith("python -m harness run --ops paged_cache_load")


def test_report_without_baseline_or_history_still_has_charts(tmp_path, spin_registered):  # noqa: F811
    write_replicated(tmp_path, {"run": {}}, 1, _spin_cases(2))
    _report(tmp_path / "run" / "r0", tmp_path / "r.html")
    dom = parse((tmp_path / "r.html").read_text())
    assert dom.find_all("svg") and dom.by_id("regressions") is None and dom.by_id("trends") is None


def test_report_on_a_missing_baseline_is_a_usage_error(tmp_path, spin_registered):  # noqa: F811
    from harness.cli import main

    write_replicated(tmp_path, {"run": {}}, 1, _spin_cases(1))
    assert main(["report", str(tmp_path / "run" / "r0"), "--baseline", str(tmp_path / "nope")]) == 2


def test_rows_that_cannot_be_drawn_are_counted(tmp_path):
    rows = [report_runs.good("paged_cache_load", i, "torch_npu") for i in range(4)]
    rows[1]["baseline_ratio"] = float("inf")   # a ratio to an exact baseline
    rows[2]["bytes"] = None                     # timed, but no byte count for the roofline
    run = report_runs.write_run(tmp_path / "run", rows, dict(report_runs.META, backends=["torch_npu"]))
    section = parse(_report(run, tmp_path / "r.html")).by_id("op-paged_cache_load")
    ratio = next(f for f in section.find_all("figure") if f.find("svg").attrs["aria-label"].endswith("baseline_ratio"))
    assert ratio.find("figcaption").text == "1 infinite, not drawn: pw01-case [torch_npu]"
    assert len(ratio.find_all("circle")) == 3
    assert [p.text for p in section.find_all("p", cls="warnline")] == [
        "paged_cache_load: 1 timed cases without bytes or pct_peak_bw, not plotted"]

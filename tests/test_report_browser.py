"""The report in a real browser (Debian's headless `chromium`): after the page's script ran, the DOM
holds the first-screen verdict, the matrix and the unexpected-results table with working filters,
nothing was blocked or failed, and no request left the page (Chrome's NetLog, page requests only).
Skips with the reason when chromium is not installed (.ci/run installs it where it can)."""
from __future__ import annotations

import pytest

from reports import browser

from . import report_runs
from .html_dom import parse

pytestmark = pytest.mark.skipif(browser.find() is None,
                                reason="no chromium on PATH (apt-get install chromium); the browser test needs it")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from harness.cli import main

    tmp = tmp_path_factory.mktemp("browser")
    run = report_runs.small_run(tmp / "run")
    out = tmp / "report.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    return out, browser.load(out)


def test_first_screen_in_the_dom_after_scripts(page):
    _, loaded = page
    dom = parse(loaded.dom)
    html = dom.find("html")
    assert html.attrs.get("data-ready") == "1", "the page's script did not finish"
    assert "data-js-error" not in html.attrs, html.attrs.get("data-js-error")
    assert html.attrs.get("data-blocked") == "0", f"the policy blocked {html.attrs.get('data-blocked-uri')}"
    assert "6 unexpected results in 1 op" in dom.by_id("run-verdict").text
    states = [td.attrs["data-state"] for td in dom.by_id("matrix").find_all("td")]
    assert states.count("unexpected") == 1 and states.count("skipped") == 2 and states.count("warn") == 1
    table = dom.by_id("unexpected")
    assert len(table.find("tbody").find_all("tr")) == 6
    # the script built the filters: one drop-down per filterable column with more than one value
    bar = table.parent.find("div", cls="filters")
    assert [s.attrs["data-filter"] for s in bar.find_all("select")] == ["what"]
    assert bar.find("span", cls="shown").text == "6 of 6 rows"
    assert dom.by_id("results").parent.find("div", cls="filters") is not None
    # and one copy button per result row, carrying that row's repro command
    rows = dom.by_id("results").find("tbody").find_all("tr")
    buttons = [r.find("button", cls="copy") for r in rows]
    assert len(rows) == 50 and all(b is not None and b.attrs["data-copy"].startswith("python -m harness run")
                                   for b in buttons)


def test_no_request_leaves_the_page(page):
    _, loaded = page
    assert loaded.page_requests == []


def test_the_request_check_can_fail(tmp_path):
    """A page that does fetch is caught (so the check above means something)."""
    leak = tmp_path / "leak.html"
    leak.write_text("<!doctype html><img src='http://192.0.2.1/x.png'>", encoding="utf-8")
    assert browser.load(leak).page_requests == ["http://192.0.2.1/x.png"]


def test_screenshot_of_the_first_screen(page, tmp_path):
    html, _ = page
    png = browser.screenshot(html, tmp_path / "first.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1000)

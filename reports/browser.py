"""Headless Chromium for looking at a report as a reader would: a PNG of the first screen, and the DOM
after the page's script ran together with every network request the page started.

    find()                                  the chromium executable, or None
    screenshot(html, png, width, height)    writes the PNG of the first `height` pixels
    load(html) -> Loaded                    dom (serialized after scripts), page_requests (URLs)

A page request is told from the browser's own traffic (update checks and the like, which
--disable-background-networking does not silence entirely) by its network isolation key: requests
a file:// page makes carry the key of the file:// site.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")
TIMEOUT_S = 120


def find() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def _run(args: list[str], profile: str) -> subprocess.CompletedProcess:
    exe = find()
    if exe is None:
        raise UsageError("no chromium found (apt-get install chromium); looked for " + ", ".join(NAMES))
    try:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"chromium did not finish within {TIMEOUT_S} s") from None


def screenshot(html: str | Path, png: str | Path, width: int = 1400, height: int = 1000) -> Path:
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory(prefix="opdiff-chromium-") as profile:
        proc = _run([f"--window-size={width},{height}", f"--screenshot={png}", Path(html).resolve().as_uri()],
                    profile)
    if not png.is_file():
        raise UsageError(f"chromium wrote no screenshot (exit {proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace')[-400:]}")
    return png


@dataclass
class Loaded:
    dom: str
    page_requests: list


def load(html: str | Path) -> Loaded:
    with tempfile.TemporaryDirectory(prefix="opdiff-chromium-") as profile:
        netlog = Path(profile) / "netlog.json"
        proc = _run([f"--log-net-log={netlog}", "--dump-dom", Path(html).resolve().as_uri()], profile)
        if proc.returncode != 0 or not proc.stdout:
            raise UsageError(f"chromium --dump-dom failed (exit {proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace')[-400:]}")
        requests = page_requests(netlog)
    return Loaded(proc.stdout.decode("utf-8", errors="replace"), requests)


def page_requests(netlog: Path) -> list[str]:
    """URLs (other than file: and data:) requested on behalf of a file:// page, from a Chrome NetLog."""
    data = json.loads(netlog.read_text(encoding="utf-8"))
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for e in data["events"]:
        p = e.get("params") or {}
        if e.get("type") != start or "url" not in p:
            continue
        if str(p.get("network_isolation_key", "")).startswith("file://") or p.get("initiator") == "null":
            if not p["url"].startswith(("file:", "data:")):
                urls.append(p["url"])
    return urls

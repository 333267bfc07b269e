"""Chart geometry of the report (reports.charts): tick labels, log scales with an exact-zero slot,
ECDF steps and the hover-marker cap."""
from __future__ import annotations

from reports import charts


def test_tick_labels_read_as_numbers_people_write():
    assert [charts._fmt(v) for v in (0, 1e-5, 0.002, 0.5, 10, 1000, 2e4, 5e6, 1.5e9, 1e12, 1e17, 1e22)] == [
        "0", "1e-5", "0.002", "0.5", "10", "1k", "20k", "5M", "1.5G", "1T", "1e17", "1e22"]


def test_log_scale_puts_zeros_left_of_every_decade():
    s = charts.Scale([0.0, 0.01, 1.0, 100.0], 0, 1000, log=True)
    ticks = dict((label, px) for px, label in s.ticks())
    assert ticks["0"] < ticks["0.01"] < ticks["1"] < ticks["100"] <= 1000
    assert s(0.0) == ticks["0"] and 0 <= s(0.0) < s(0.01)


def test_ecdf_rises_to_one_and_caps_markers_keeping_the_tail():
    values = [(float(i), f"case{i}") for i in range(1, 301)]
    c = charts.ecdf("t", "x", {"torch": values}, ["numpy", "torch"], ref=(1.0, "= baseline"))
    (s,) = c.series
    assert s.name == "torch (300)" and s.colour == charts.PALETTE[1]
    assert len(s.points) == charts.MAX_MARKERS
    titles = [p.title for p in s.points]
    assert titles[-charts.TAIL_MARKERS:] == [f"case{i}" for i in range(301 - charts.TAIL_MARKERS, 301)]
    top = min(p.y for p in s.points)   # pixel y of fraction 1
    assert s.points[-1].y == top and "of them have no hover marker" in c.note
    assert c.vlines and c.vlines[0][1] == "= baseline"

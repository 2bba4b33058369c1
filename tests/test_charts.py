"""The overview's time chart: buckets sized to the span of the data, labels distinct and
readable, and never drawn over each other."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from proctor.server import charts

HOUR, DAY = 3600, 86400


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time in a zone with daylight saving (its autumn change falls in the data)."""
    if not Path("/usr/share/zoneinfo/Europe/Berlin").exists():
        pytest.skip("no time zone data")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))


def spread(start: float, span: float, n: int = 400) -> list[tuple[float, str]]:
    return [(start + span * i / (n - 1), ("allow", "review", "deny")[i % 3]) for i in range(n)]


def axis_labels(svg: str) -> list[tuple[float, str]]:
    """The x and text of each label under the bars."""
    return [
        (float(x), text)
        for x, text in re.findall(
            r'<text x="([\d.]+)" y="\d+" class="a" text-anchor="middle">([^<]+)</text>', svg
        )
    ]


@pytest.mark.parametrize(
    ("span", "per", "pattern"),
    [
        (HOUR, "2 minutes", r"^\d\d:\d[02468]$"),  # minutes for an hour
        (3 * DAY, "3 hours", r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:00$"),  # hours for days
        (3 * 7 * DAY, "day", r"^(May|Jun|Jul) \d\d$"),  # days for weeks
    ],
)
def test_buckets_fit_the_span(span: int, per: str, pattern: str) -> None:
    buckets = charts.bucketize(spread(local(2025, 6, 10, 9, 17), span))
    labels = [label for label, _ in buckets.rows]
    assert buckets.per == per
    assert 8 <= len(labels) <= charts.MOST_BUCKETS + 1
    assert len(set(labels)) == len(labels), labels  # no label twice (no repeated "00:00")
    assert all(re.match(pattern, label) for label in labels), labels
    assert sum(sum(c.values()) for _, c in buckets.rows) == 400  # every point counted once


def test_the_drawn_labels_are_distinct_and_do_not_overlap() -> None:
    for span in (HOUR, 3 * DAY, 21 * DAY):
        buckets = charts.bucketize(spread(local(2025, 6, 10, 9, 17), span))
        svg = charts.stacked_bars(buckets.rows, ["allow", "review", "deny"], "t", width=1100)
        drawn = axis_labels(svg)
        assert len(drawn) >= 4
        texts = [t for _, t in drawn]
        assert len(set(texts)) == len(texts)
        for (x1, t1), (x2, t2) in pairwise(drawn):
            assert x2 - x1 >= (len(t1) + len(t2)) * 3.25, (t1, t2)  # half of each, 6.5 px a char
        assert all(x - len(t) * 3.25 >= 0 and x + len(t) * 3.25 <= 1100 for x, t in drawn)


def test_within_one_day_the_time_alone_and_across_a_clock_change_one_label_a_day(
    berlin: None,
) -> None:
    morning = charts.bucketize(spread(local(2025, 6, 10, 8, 0), 6 * HOUR))
    assert morning.per == "15 minutes" and morning.rows[0][0] == "08:00"
    autumn = charts.bucketize(spread(local(2025, 10, 12, 12, 0), 28 * DAY))
    labels = [label for label, _ in autumn.rows]
    assert autumn.per == "day" and len(set(labels)) == len(labels) == 29
    assert "Oct 26" in labels and "Oct 27" in labels  # the 25-hour day is one day


def test_little_or_no_data() -> None:
    assert charts.bucketize([]).rows == []
    one = charts.bucketize([(local(2025, 6, 10, 9, 17, 30), "allow")])
    assert one.per == "minute" and len(one.rows) == charts.LEAST_BUCKETS
    assert one.rows[0] == ("09:06", {}) and one.rows[-1] == ("09:17", {"allow": 1})

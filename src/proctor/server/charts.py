"""Charts drawn on the server as SVG: no JavaScript, nothing loaded from elsewhere."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = {
    "allow": "#2e7d32",
    "review": "#f9a825",
    "deny": "#c62828",
    "approved": "#2e7d32",
    "rejected": "#c62828",
    "p50": "#1565c0",
    "p95": "#90caf9",
    "volume": "#5e35b1",
    "rate": "#ef6c00",
    "reference": "#90a4ae",
    "current": "#5e35b1",
    "statistic": "#1565c0",
    "threshold": "#c62828",
}


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def stacked_bars(
    buckets: Sequence[tuple[str, dict[str, int]]],
    series: list[str],
    title: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """One bar per bucket (label, {series: count}), stacked; with a legend."""
    if not buckets:
        return _empty(title, width)
    top = max(1, max(sum(v.values()) for _, v in buckets))
    left, bottom, plot_h = 36, 28, height - 58
    step = (width - left - 10) / len(buckets)
    bar = max(2.0, step * 0.7)
    # Label every n-th bar, so that labels never overlap (about 6.5 px a character).
    widest = max(len(label) for label, _ in buckets) * 6.5 + 12
    every = max(1, math.ceil(widest / step))
    parts = [
        f'<text x="{left}" y="14" class="t">{escape(title)}</text>',
        f'<text x="4" y="{height - bottom}" class="a">0</text>',
        f'<text x="4" y="{height - bottom - plot_h + 8}" class="a">{top}</text>',
    ]
    for i, (label, counts) in enumerate(buckets):
        x = left + i * step
        y: float = height - bottom
        for name in series:
            n = counts.get(name, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE.get(name, "#777")}"><title>{escape(label)}: '
                f"{n} {escape(name)}</title></rect>"
            )
        half = len(label) * 3.25
        middle = x + bar / 2
        if i % every == 0 and middle - half >= 0 and middle + half <= width:
            parts.append(
                f'<text x="{middle:.1f}" y="{height - 12}" class="a" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append(_legend(series, width - 10 - 80 * len(series), 14))
    return _svg(width, height, "".join(parts), title)


def hbars(
    rows: Sequence[tuple[str, float]],
    title: str,
    *,
    unit: str = "",
    color: str = "volume",
    width: int = 640,
    fmt: str = "{:.0f}",
) -> str:
    """Labelled horizontal bars, one per row (label, value)."""
    if not rows:
        return _empty(title, width)
    height = 30 + 22 * len(rows)
    top = max(1e-9, max(v for _, v in rows))
    label_w, plot_w = 170, width - 170 - 70
    parts = [f'<text x="4" y="14" class="t">{escape(title)}</text>']
    for i, (label, value) in enumerate(rows):
        y = 26 + i * 22
        w = plot_w * value / top
        parts.append(f'<text x="4" y="{y + 13}" class="a">{escape(label[:28])}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="16" '
            f'fill="{PALETTE.get(color, color)}"><title>{escape(label)}: '
            f"{fmt.format(value)}{unit}</title></rect>"
        )
        parts.append(
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" class="a">'
            f"{fmt.format(value)}{escape(unit)}</text>"
        )
    return _svg(width, height, "".join(parts), title)


def paired_bars(
    rows: Sequence[tuple[str, dict[str, float]]],
    series: list[str],
    title: str,
    *,
    unit: str = "",
    width: int = 640,
    fmt: str = "{:.0f}",
) -> str:
    """Two or more bars per row (label, {series: value}), e.g. p50 and p95 per queue."""
    if not rows:
        return _empty(title, width)
    per = len(series)
    height = 34 + (14 * per + 10) * len(rows)
    top = max(1e-9, max(v for _, vals in rows for v in vals.values()))
    label_w, plot_w = 170, width - 170 - 80
    parts = [
        f'<text x="4" y="14" class="t">{escape(title)}</text>',
        _legend(series, width - 10 - 80 * per, 14),
    ]
    y = 28
    for label, values in rows:
        parts.append(f'<text x="4" y="{y + 12}" class="a">{escape(label[:28])}</text>')
        for name in series:
            v = values.get(name, 0.0)
            w = plot_w * v / top
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="12" '
                f'fill="{PALETTE.get(name, "#777")}"><title>{escape(label)} '
                f"{escape(name)}: {fmt.format(v)}{unit}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + w + 4:.1f}" y="{y + 10}" class="a">'
                f"{fmt.format(v)}{escape(unit)}</text>"
            )
            y += 14
        y += 10
    return _svg(width, height, "".join(parts), title)


def line_with_threshold(
    points: Sequence[tuple[str, float, float, bool]],
    title: str,
    *,
    width: int = 640,
    height: int = 200,
) -> str:
    """A statistic over time (label, value, threshold, detected): the value as a line with
    a dot per point (red where it was a detection), the threshold as a dashed line."""
    if not points:
        return _empty(title, width)
    top = max(1e-9, max(max(v, t) for _, v, t, _ in points)) * 1.1
    left, bottom, plot_h = 44, 26, height - 52
    step = (width - left - 10) / max(1, len(points) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, height - bottom - plot_h * v / top

    line = " ".join("{:.1f},{:.1f}".format(*xy(i, v)) for i, (_, v, _, _) in enumerate(points))
    limit = " ".join("{:.1f},{:.1f}".format(*xy(i, t)) for i, (_, _, t, _) in enumerate(points))
    parts = [
        f'<text x="{left}" y="14" class="t">{escape(title)}</text>',
        f'<text x="4" y="{height - bottom}" class="a">0</text>',
        f'<text x="4" y="{height - bottom - plot_h + 8}" class="a">{top:.3g}</text>',
        f'<polyline points="{limit}" fill="none" stroke="{PALETTE["threshold"]}" '
        'stroke-dasharray="5 4" stroke-width="1.5"/>',
        f'<polyline points="{line}" fill="none" stroke="{PALETTE["statistic"]}" '
        'stroke-width="1.5"/>',
    ]
    for i, (label, v, t, detected) in enumerate(points):
        x, y = xy(i, v)
        colour = PALETTE["threshold"] if detected else PALETTE["statistic"]
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4 if detected else 2.5}" fill="{colour}">'
            f"<title>{escape(label)}: {v:.4g} (threshold {t:.4g})"
            f"{' detected' if detected else ''}</title></circle>"
        )
    for i in (0, len(points) - 1):
        anchor = "start" if i == 0 else "end"
        parts.append(
            f'<text x="{xy(i, 0)[0]:.1f}" y="{height - 8}" class="a" text-anchor="{anchor}">'
            f"{escape(points[i][0])}</text>"
        )
    parts.append(_legend(["statistic", "threshold"], width - 10 - 160, 14))
    return _svg(width, height, "".join(parts), title)


def _legend(series: list[str], x: float, y: float) -> str:
    out = []
    for i, name in enumerate(series):
        cx = x + i * 80
        out.append(
            f'<rect x="{cx:.0f}" y="{y - 9}" width="10" height="10" '
            f'fill="{PALETTE.get(name, "#777")}"/>'
            f'<text x="{cx + 14:.0f}" y="{y}" class="a">{escape(name)}</text>'
        )
    return "".join(out)


def _empty(title: str, width: int) -> str:
    return _svg(
        width,
        50,
        f'<text x="4" y="14" class="t">{escape(title)}</text>'
        '<text x="4" y="38" class="a">no data yet</text>',
        title,
    )


# Bucket lengths a time axis may use, shortest first: minutes for an hour of data, hours
# for a few days, days for weeks. The shortest that gives at most MOST_BUCKETS is used.
STEPS = (
    (60, "minute"),
    (120, "2 minutes"),
    (300, "5 minutes"),
    (600, "10 minutes"),
    (900, "15 minutes"),
    (1800, "30 minutes"),
    (3600, "hour"),
    (7200, "2 hours"),
    (10800, "3 hours"),
    (21600, "6 hours"),
    (86400, "day"),
    (2 * 86400, "2 days"),
    (7 * 86400, "week"),
    (28 * 86400, "4 weeks"),
)
MOST_BUCKETS = 36
LEAST_BUCKETS = 12  # a short history is drawn after empty buckets, not as one wide bar
DAY = 86400


@dataclass(frozen=True)
class TimeBuckets:
    """Counts per series in consecutive buckets of ``per`` (e.g. "2 hours"), each labelled
    distinctly: a time of day within one day, weekday and time across a few days, the date
    across weeks."""

    rows: list[tuple[str, dict[str, int]]]
    per: str


def _midnight(ts: float) -> float:
    t = time.localtime(ts)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def _starts(lo: float, hi: float, step: int) -> list[float]:
    """Bucket starts on round local times (whole minutes, hours, days) covering lo..hi."""
    first = _midnight(lo)
    if step < DAY:
        first += (lo - first) // step * step
        return [first + i * step for i in range(int((hi - first) // step) + 1)]
    t = time.localtime(first)
    days = step // DAY
    starts: list[float] = []
    while not starts or starts[-1] + step <= hi:  # by calendar day: DST days are not 24 h
        i = len(starts) * days
        starts.append(time.mktime((t.tm_year, t.tm_mon, t.tm_mday + i, 0, 0, 0, 0, 0, -1)))
    return starts


def _label_format(starts: list[float], step: int) -> str:
    first, last = time.localtime(starts[0]), time.localtime(starts[-1])
    if step >= DAY:
        return "%b %d" if first.tm_year == last.tm_year else "%Y-%m-%d"
    if first[:3] == last[:3]:  # all within one calendar day
        return "%H:%M"
    return "%a %H:%M" if starts[-1] - starts[0] < 6 * DAY else "%b %d %H:%M"


def bucketize(times: Sequence[tuple[float, str]], most: int = MOST_BUCKETS) -> TimeBuckets:
    """Group (timestamp, series) into buckets sized to the span the data covers."""
    if not times:
        return TimeBuckets([], "")
    lo = min(t for t, _ in times)
    hi = max(t for t, _ in times)
    step, per = next(((s, p) for s, p in STEPS if (hi - lo) / s < most), STEPS[-1])
    starts = _starts(min(lo, hi - (LEAST_BUCKETS - 1) * step), hi, step)
    counts: list[dict[str, int]] = [{} for _ in starts]
    for t, name in times:
        i = max(0, bisect.bisect_right(starts, t) - 1)
        counts[i][name] = counts[i].get(name, 0) + 1
    fmt = _label_format(starts, step)
    labels = [time.strftime(fmt, time.localtime(s)) for s in starts]
    return TimeBuckets(list(zip(labels, counts, strict=True)), per)

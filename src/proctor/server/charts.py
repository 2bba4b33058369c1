"""Charts drawn on the server as SVG: no JavaScript, nothing loaded from elsewhere."""

from __future__ import annotations

import time
from collections.abc import Sequence
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
        if len(buckets) <= 12 or i % max(1, len(buckets) // 6) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 12}" class="a">{escape(label)}</text>')
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


def bucketize(
    times: list[tuple[float, str]], buckets: int = 24
) -> list[tuple[str, dict[str, int]]]:
    """Group (timestamp, series) into equal time buckets over the range the data spans."""

    if not times:
        return []
    lo = min(t for t, _ in times)
    hi = max(t for t, _ in times)
    span = max(hi - lo, 1.0)
    width = span / buckets
    out: list[dict[str, int]] = [{} for _ in range(buckets)]
    for t, name in times:
        i = min(buckets - 1, int((t - lo) / width))
        out[i][name] = out[i].get(name, 0) + 1
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 2 * 86400 else "%m-%d"
    return [(time.strftime(fmt, time.localtime(lo + i * width)), c) for i, c in enumerate(out)]

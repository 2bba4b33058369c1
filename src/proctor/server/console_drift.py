"""The console's Drift pages: every monitor at a glance, and one monitor's reference
against its latest window, its statistic over time and its detections."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .._errors import NotFound
from ..drift import views
from ..policy.monitors import Monitor
from . import charts
from .console_base import page, px_of, signed_in

router = APIRouter(include_in_schema=False)
BINS = 12


def _monitors(request: Request) -> list[Monitor]:
    policy = px_of(request).backend.active_policy()
    return list(policy.document.monitors) if policy is not None else []


def _shares(values: list[Any]) -> dict[str, float]:
    counts = Counter(str(v) for v in values)
    total = sum(counts.values()) or 1
    return {k: n / total for k, n in counts.items()}


def histogram(m: Monitor, found: dict[str, Any]) -> str:
    """Reference against current, as shares per bin (numbers) or per category."""
    ref, cur = found["reference"], found["current"]
    title = "reference against the latest window (share of events)"
    if found.get("rates"):
        rows = [
            (
                m.signal,
                {
                    "reference": ref[0] / ref[1] if ref[1] else 0.0,
                    "current": cur[0] / cur[1] if cur[1] else 0.0,
                },
            )
        ]
        return charts.paired_bars(rows, ["reference", "current"], title, fmt="{:.3f}")
    if not ref or not cur:
        return charts.paired_bars([], ["reference", "current"], title)
    if m.kind_ == "categorical" or isinstance(ref[0], str):
        rs, cs = _shares(ref), _shares(cur)
        keys = sorted(set(rs) | set(cs), key=lambda k: -rs.get(k, 0.0))[:BINS]
        rows = [(k, {"reference": rs.get(k, 0.0), "current": cs.get(k, 0.0)}) for k in keys]
        return charts.paired_bars(rows, ["reference", "current"], title, fmt="{:.2f}")
    both = sorted(float(v) for v in (*ref, *cur))
    lo, hi = both[int(len(both) * 0.01)], both[min(len(both) - 1, int(len(both) * 0.99))]
    width = (hi - lo) / BINS or 1.0

    def binned(values: list[Any]) -> list[float]:
        counts = [0] * BINS
        for v in values:
            counts[min(BINS - 1, max(0, int((float(v) - lo) / width)))] += 1
        return [c / len(values) for c in counts]

    r, c = binned(ref), binned(cur)
    edges = [f"{lo + i * width:.3g}" for i in range(BINS + 1)]
    rows = [
        (f"{edges[i]} to {edges[i + 1]}", {"reference": r[i], "current": c[i]}) for i in range(BINS)
    ]
    return charts.paired_bars(rows, ["reference", "current"], title, fmt="{:.2f}")


def timeline(points: list[dict[str, Any]]) -> str:
    rows = [
        (
            time.strftime("%m-%d %H:%M", time.gmtime(p["ts"])),
            float(p["statistic"]),
            float(p["threshold"]),
            bool(p["detected"]),
        )
        for p in points
    ]
    return charts.line_with_threshold(rows, "statistic per compared window, and its threshold")


@router.get("/drift", response_class=HTMLResponse)
def drift_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    store = px_of(request).store
    return page(
        request,
        "drift.html",
        who=who,
        monitors=views.status(store, _monitors(request)),
        detections=views.history(store, limit=20),
    )


@router.get("/drift/{monitor_id}", response_class=HTMLResponse)
def drift_monitor_page(monitor_id: str, request: Request) -> HTMLResponse:
    who = signed_in(request)
    store = px_of(request).store
    found = [m for m in _monitors(request) if m.id == monitor_id]
    if not found:
        raise NotFound(f"no monitor {monitor_id!r} in the active policy")
    m = found[0]
    return page(
        request,
        "drift_monitor.html",
        who=who,
        monitor=views.status(store, [m])[0],
        histogram=histogram(m, views.distributions(store, m)),
        timeline=timeline(views.points(store, m.id)),
        detections=views.history(store, m.id),
    )

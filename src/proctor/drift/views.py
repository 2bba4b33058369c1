"""Monitors as people see them: status, detections with their responses, the statistic
over time and the reference against the current distribution."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from ..policy.monitors import Monitor
from ..store import Store
from ..store.tables import audit_log, drift_points
from ..store.tables import drift as drift_table


def _rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.read() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(drift_table)).mappings()}


def status(store: Store, monitors: list[Monitor]) -> list[dict[str, Any]]:
    """One entry per monitor of the active policy, drifting first."""
    rows = _rows(store)
    found = []
    for m in monitors:
        row = rows.get(m.id)
        state = orjson.loads(row["state"]) if row is not None else {}
        ref = state.get("ref", [])
        found.append(
            {
                "id": m.id,
                "agent": m.agent,
                "tool": m.tool,
                "signal": m.signal,
                "kind": m.kind_,
                "test": m.test_,
                "window": m.window,
                "false_alarm_rate": m.false_alarm_rate,
                "change_point": m.change_point,
                "status": row["status"] if row is not None else "new",
                "statistic": row["statistic"] if row is not None else None,
                "threshold": row["threshold"] if row is not None else None,
                "detected_at": row["detected_at"] if row is not None else None,
                "cursor": row["cursor"] if row is not None else 0,
                "reference_events": state.get("ref_seen", len(ref) if m.test_ != "cusum" else 0),
                "reference_rate": state.get("p0"),
                "on_drift": m.on_drift.model_dump(mode="json"),
            }
        )
    return sorted(found, key=lambda r: (r["status"] != "drift", r["id"]))


def history(store: Store, monitor: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Detections (and re-baselines), newest first, with their evidence and response."""
    query = (
        sa.select(audit_log.c.record)
        .where(audit_log.c.kind.in_(["drift.detected", "drift.reset", "drift.calibrate"]))
        .order_by(audit_log.c.seq.desc())
    )
    found = []
    with store.read() as conn:
        for (record,) in conn.execute(query):
            rec = orjson.loads(record)
            if monitor is None or rec.get("monitor") == monitor:
                found.append(rec)
                if len(found) >= limit:
                    break
    return found


def points(store: Store, monitor: str, limit: int = 500) -> list[dict[str, Any]]:
    """The statistic of the latest ``limit`` compared windows, oldest first."""
    query = (
        sa.select(drift_points)
        .where(drift_points.c.monitor == monitor)
        .order_by(drift_points.c.seq.desc())
        .limit(limit)
    )
    with store.read() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    return rows[::-1]


def distributions(store: Store, monitor: Monitor) -> dict[str, Any]:
    """The reference and the latest window (or, for a version comparison, before and
    after), as the values a histogram needs."""
    row = _rows(store).get(monitor.id)
    if row is None:
        return {"reference": [], "current": []}
    state = orjson.loads(row["state"])
    last = state.get("last", {})
    if monitor.change_point is not None:
        return {"reference": last.get("before", []), "current": last.get("after", [])}
    if monitor.test_ == "cusum":
        ones, n = state.get("ref", [0, 0]) if state.get("phase") == "watching" else (0, 0)
        run = state.get("run", [0, 0])
        return {"reference": [ones, n], "current": run, "rates": True}
    current = state.get("cur") or last.get("values", [])
    return {"reference": state.get("ref", [])[:5000], "current": current}

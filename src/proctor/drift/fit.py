"""``proctor drift calibrate``: fit a monitor on a period the operator says was normal.

The period's events become the reference and the threshold is fitted on them for the
monitor's stated false-alarm rate. The report gives that rate as expected false alarms
per 10,000 events and the rate measured on the period itself (the same events, so an
optimistic check: a measured rate far above the stated one means the period was not
stable, and the threshold should not be trusted).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from .._errors import InvalidRequest
from ..policy.monitors import Monitor
from ..store import Store
from ..store.tables import audit_log
from ..telemetry.kpi import first_seq_since
from . import calibrate, signals, stats
from .engine import Detector, fresh

MAX_EVENTS = 20_000


def _events(store: Store, m: Monitor, since: float, until: float) -> list[tuple[int, float, Any]]:
    detector = Detector(m)
    found = []
    query = sa.select(audit_log.c.seq, audit_log.c.record).where(
        audit_log.c.kind.in_(signals.kinds(m)), audit_log.c.ts >= since, audit_log.c.ts < until
    )
    with store.read() as conn:
        start = first_seq_since(conn, since)
        rows = conn.execute(query.where(audit_log.c.seq >= start).order_by(audit_log.c.seq))
        for seq, text in rows:
            record = orjson.loads(text)
            if not signals.matches(m, record):
                continue
            raw = signals.value(m, record)
            value = None if raw is None else detector.prepare(raw)
            if value is not None:
                found.append((int(seq), float(record["ts"]), value))
                if len(found) >= MAX_EVENTS:
                    break
    return found


def fit(
    store: Store, m: Monitor, since: float, until: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the detector state to store, the report) for ``m`` fitted on [since, until)."""
    if m.change_point is not None:
        raise InvalidRequest(
            f"monitor {m.id!r} compares versions: its threshold is fitted at each change"
        )
    events = _events(store, m, since, until)
    need = {"cusum": 200, "vocab": 4 * m.window}.get(m.test_, 2 * m.window)
    if len(events) < need:
        raise InvalidRequest(
            f"the period holds {len(events)} events of {m.signal} for monitor {m.id!r};"
            f" calibrating it needs at least {need}"
        )
    state = fresh()
    state["ref"] = [v for _, _, v in events]
    state["ref_from"] = [events[0][0], events[0][1]]
    state["ref_to"] = [events[-1][0], events[-1][1]]
    state["ref_seen"] = len(events)
    detector = Detector(m, state)
    detector.freeze()
    report: dict[str, Any] = {
        "monitor": m.id,
        "test": m.test_,
        "events": len(events),
        "since": since,
        "until": until,
        "false_alarm_rate": m.false_alarm_rate,
    }
    if m.test_ == "cusum":
        report["thresholds"] = {"up": state["h"][0], "down": state["h"][1]}
        report["reference_rate"] = state["p0"]
        report["expected_false_alarms_per_10000"] = m.false_alarm_rate
        report["measured_false_alarms_per_10000"] = _cusum_alarms(m, state, events)
    else:
        report["threshold"] = state["threshold"]
        windows = [events[i : i + m.window] for i in range(0, len(events), m.window)]
        full = [w for w in windows if len(w) == m.window]
        current = [[detector.current_value(v) for _, _, v in w] for w in full]
        above = sum(
            1 for w in current if calibrate.statistic(m.test_, state["ref"], w) > state["threshold"]
        )
        per = 10_000 / m.window
        report["expected_false_alarms_per_10000"] = round(m.false_alarm_rate * per, 4)
        report["measured_false_alarms_per_10000"] = round(above / len(full) * per, 4)
        report["windows"] = len(full)
    return detector.state, report


def _cusum_alarms(m: Monitor, state: dict[str, Any], events: list[tuple[int, float, Any]]) -> float:
    up, down = stats.cusum_steps(state["p0"], m.shift)
    s, alarms = [0.0, 0.0], 0
    for _, _, v in events:
        s[0] = max(0.0, s[0] + (up[1] if v else up[0]))
        s[1] = max(0.0, s[1] + (down[1] if v else down[0]))
        if s[0] > state["h"][0] or s[1] > state["h"][1]:
            alarms += 1
            s = [0.0, 0.0]
    return round(alarms / len(events) * 10_000, 4)

"""Alerts: the active policy's ``alerts:`` measured against the store, fired and resolved.

Each check measures every alert over its window (KPIs shared between alerts of the same
scope and window), then, in one write transaction, moves each alert that crossed its
threshold: ``alert.firing`` or ``alert.resolved`` goes into the decision log and a message
for each of the alert's notify targets into the outbox (``notifications.py``). An alert
with too few events in its window (``min_events``) has no value and keeps its state, so a
quiet night neither fires nor resolves anything. An alert removed from the policy while
firing is resolved. Checks run in the server's background loop and in
``proctor alerts check``; nothing here runs on a decision's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .. import _clock
from ..policy import CompiledPolicy, compile_policy
from ..policy.lifecycle import active_source
from ..policy.schema import Alert
from ..store import Store, WriteTx
from ..store.tables import alerts as alerts_table
from ..store.tables import breakers, review_items
from . import kpi
from .notifications import enqueue

CHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Transition:
    alert: str
    state: str  # firing | resolved
    value: float | None
    threshold: float
    severity: str
    notifications: int


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def value_of(metric: str, k: dict[str, Any]) -> float | None:
    """One alert metric from a ``kpi.compute`` result."""
    totals = k["totals"]
    ran = totals["executions"]["ok"] + totals["executions"]["error"]
    decided = k["calls"]
    direct = {
        "run_completion_rate": k["run_completion_rate"],
        "retry_frequency": k["retry_frequency"],
        "failure_recovery_rate": k["failure_recovery_rate"],
        "cost_per_completed_run": k["cost_per_completed_run"],
        "silent_failures": k["silent_failures"],
        "tool_success_rate": _rate(totals["executions"]["ok"], ran),
        "error_rate": _rate(totals["executions"]["error"], ran),
        "escalation_rate": _rate(totals["decisions"].get("review", 0), decided),
        "deny_rate": _rate(totals["decisions"].get("deny", 0), decided),
        "latency_p50_ms": k["latency_ms"]["p50"],
        "latency_p95_ms": k["latency_ms"]["p95"],
        "time_to_resolution_p50_s": k["time_to_resolution_s"]["p50"],
        "time_to_resolution_p95_s": k["time_to_resolution_s"]["p95"],
        "cost": totals["cost"],
        "decisions": decided,
        "denials": totals["decisions"].get("deny", 0),
        "failures": totals["executions"]["error"],
    }
    value = direct[metric]
    return None if value is None else float(value)


def _pending(store: Store, alert: Alert, now: float) -> float:
    query = sa.select(sa.func.count()).where(review_items.c.status == "pending")
    if alert.queue:
        query = query.where(review_items.c.queue == alert.queue)
    if alert.agent:
        query = query.where(review_items.c.agent == alert.agent)
    if alert.tool:
        query = query.where(review_items.c.tool == alert.tool)
    if alert.metric == "items_past_sla":
        query = query.where(review_items.c.sla_due.is_not(None), review_items.c.sla_due < now)
    with store.read() as conn:
        return float(conn.execute(query).scalar() or 0)


def _breakers_open(store: Store, alert: Alert) -> float:
    """Circuit breakers open or half open now (of the alert's agent and tool, if set)."""
    query = sa.select(sa.func.count()).where(breakers.c.state != "closed")
    if alert.agent:
        query = query.where(breakers.c.agent.in_((alert.agent, "*")))
    if alert.tool:
        query = query.where(breakers.c.tool == alert.tool)
    with store.read() as conn:
        return float(conn.execute(query).scalar() or 0)


def breaches(alert: Alert, value: float | None) -> bool:
    if value is None:
        return False
    if alert.above is not None:
        return value > alert.above
    assert alert.below is not None
    return value < alert.below


def threshold(alert: Alert) -> float:
    return alert.above if alert.above is not None else alert.below  # type: ignore[return-value]


def describe(alert: Alert, value: float | None) -> str:
    op = ">" if alert.above is not None else "<"
    scope = ", ".join(
        f"{key} {v}"
        for key, v in (("agent", alert.agent), ("tool", alert.tool), ("queue", alert.queue))
        if v
    )
    shown = "no data" if value is None else f"{value:.4g}"
    where = f" ({scope})" if scope else ""
    return f"{alert.metric} = {shown}, threshold {op} {threshold(alert):g}{where}"


class AlertMonitor:
    """Checks the alerts of whatever policy is active; one per process is enough."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._compiled: tuple[str, CompiledPolicy] | None = None

    def active_policy(self) -> CompiledPolicy | None:
        """The active policy, compiled once per version."""
        found = active_source(self.store)
        if found is None:
            return None
        version, text = found
        if self._compiled is None or self._compiled[0] != version:
            self._compiled = (version, compile_policy(text, f"policy {version[:12]}"))
        return self._compiled[1]

    def measure(self, alert: Alert, now: float, cache: dict[Any, dict[str, Any]]) -> float | None:
        if alert.metric in ("queue_depth", "items_past_sla"):
            return _pending(self.store, alert, now)
        if alert.metric == "breakers_open":
            return _breakers_open(self.store, alert)
        key = (alert.agent, alert.tool, alert.window)
        if key not in cache:
            cache[key] = kpi.compute(
                self.store, agent=alert.agent, tool=alert.tool, since=now - alert.window, now=now
            )
        k = cache[key]
        if k["calls"] < alert.min_events:
            return None
        return value_of(alert.metric, k)

    def check(self, now: float | None = None) -> list[Transition]:
        now = _clock.now() if now is None else now
        policy = self.active_policy()
        rules = list(policy.document.alerts) if policy is not None else []
        cache: dict[Any, dict[str, Any]] = {}
        values = {a.id: self.measure(a, now, cache) for a in rules}
        targets = dict(policy.document.notify) if policy is not None else {}
        version = policy.version if policy is not None else None
        changes: list[Transition] = []
        with self.store.write() as tx:
            current = {
                row[0]: row[1] for row in tx.sql("SELECT id, state FROM proctor_alerts").fetchall()
            }
            for alert in rules:
                value = values[alert.id]
                was_firing = current.get(alert.id) == "firing"
                if value is None and alert.id in current:
                    self._touch(tx, alert.id, now)
                    continue
                firing = breaches(alert, value)
                if firing != was_firing:
                    changes.append(self._move(tx, alert, value, firing, targets, now))
                self._save(tx, alert, value, firing, version, now, changed=firing != was_firing)
            for alert_id, old in current.items():
                # drift:ID alerts belong to the drift monitors, resolved by a re-baseline
                if old == "firing" and alert_id not in values and not alert_id.startswith("drift:"):
                    changes.append(self._retire(tx, alert_id, now))
        return changes

    @staticmethod
    def _move(
        tx: WriteTx,
        alert: Alert,
        value: float | None,
        firing: bool,
        targets: dict[str, list[str]],
        now: float,
    ) -> Transition:
        name = "firing" if firing else "resolved"
        tx.append(
            f"alert.{name}",
            {
                "alert": alert.id,
                "metric": alert.metric,
                "value": value,
                "above": alert.above,
                "below": alert.below,
                "window_s": alert.window,
                "severity": alert.severity,
                "scope": {"agent": alert.agent, "tool": alert.tool, "queue": alert.queue},
                "notify": alert.notify,
            },
            agent=alert.agent,
            tool=alert.tool,
        )
        label = alert.severity.upper() if firing else "RESOLVED"
        body = describe(alert, value)
        if alert.description:
            body = f"{alert.description}\n\n{body}"
        sent = enqueue(
            tx,
            source=f"alert:{alert.id}",
            names=alert.notify,
            targets=targets,
            severity=alert.severity if firing else "resolved",
            title=f"[{label}] {alert.id} {name}",
            body=f"{body}\nwindow: {alert.window:g} s",
        )
        return Transition(alert.id, name, value, threshold(alert), alert.severity, sent)

    @staticmethod
    def _save(
        tx: WriteTx,
        alert: Alert,
        value: float | None,
        firing: bool,
        version: str | None,
        now: float,
        *,
        changed: bool,
    ) -> None:
        row = {
            "state": "firing" if firing else "ok",
            "severity": alert.severity,
            "metric": alert.metric,
            "value": value,
            "threshold": threshold(alert),
            "checked_at": now,
            "policy_version": version,
        }
        updated = tx.sql(
            "UPDATE proctor_alerts SET state = ?, severity = ?, metric = ?, value = ?,"
            " threshold = ?, checked_at = ?, policy_version = ?"
            + (", since = ?" if changed else "")
            + " WHERE id = ?",
            (*row.values(), *((now,) if changed else ()), alert.id),
        ).rowcount
        if not updated:
            tx.sql(
                "INSERT INTO proctor_alerts (id, state, severity, metric, value, threshold,"
                " since, checked_at, policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.id,
                    row["state"],
                    alert.severity,
                    alert.metric,
                    value,
                    row["threshold"],
                    now,
                    now,
                    version,
                ),
            )

    @staticmethod
    def _touch(tx: WriteTx, alert_id: str, now: float) -> None:
        tx.sql("UPDATE proctor_alerts SET checked_at = ? WHERE id = ?", (now, alert_id))

    @staticmethod
    def _retire(tx: WriteTx, alert_id: str, now: float) -> Transition:
        row = tx.sql(
            "SELECT severity, threshold FROM proctor_alerts WHERE id = ?", (alert_id,)
        ).fetchone()
        tx.append(
            "alert.resolved",
            {"alert": alert_id, "reason": "the alert is no longer in the active policy"},
        )
        tx.sql(
            "UPDATE proctor_alerts SET state = 'ok', since = ?, checked_at = ? WHERE id = ?",
            (now, now, alert_id),
        )
        return Transition(alert_id, "resolved", None, row[1], row[0], 0)


def states(store: Store) -> list[dict[str, Any]]:
    """Every alert the store knows, firing first."""
    with store.read() as conn:
        rows = conn.execute(sa.select(alerts_table)).mappings().all()
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(
        (dict(r) for r in rows),
        key=lambda r: (r["state"] != "firing", order.get(r["severity"], 3), r["id"]),
    )

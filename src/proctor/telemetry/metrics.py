"""Prometheus metrics for ``/metrics``, read from the store so that decisions made by
embedded agents in other processes count as much as those made through this server.

Each scrape reads only what is new since the previous one (a watermark on the log's seq
and on review decision times); queue depth and circuit breakers are read whole (small).
Counters restart at zero when the server does, which Prometheus handles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..store import Store
from ..store.tables import alerts, audit_log, notifications, review_items
from .healing import STATE_CODE, breaker_rows

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
WAIT_BUCKETS = (1, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600)


class StoreMetrics:
    """The metrics of one server, registered in their own registry."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "proctor_decisions",
            "Gate decisions by outcome.",
            ["decision", "agent", "tool"],
            registry=self.registry,
        )
        self.executions = Counter(
            "proctor_executions",
            "Tool calls that ran, by outcome.",
            ["agent", "tool", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "proctor_gate_latency_seconds",
            "Time to decide and record an action sent to this server.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_decision = Histogram(
            "proctor_review_time_to_decision_seconds",
            "From a review item's opening to a human's decision, by queue.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "proctor_call_attempts",
            "Tries of tool bodies (a call retried twice counts 3), by agent and tool.",
            ["agent", "tool"],
            registry=self.registry,
        )
        self.recoveries = Counter(
            "proctor_recoveries",
            "Failed calls that ended well all the same, by how: retry, fallback or lookup.",
            ["how"],
            registry=self.registry,
        )
        self.breaker_changes = Counter(
            "proctor_breaker_transitions",
            "Circuit breaker state changes, by tool and the state entered.",
            ["tool", "to"],
            registry=self.registry,
        )
        self.registry.register(_QueueDepth(store))
        self.registry.register(_Breakers(store))
        self.registry.register(_Outbox(store))
        self._seq = 0
        self._decided = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Fold in what the store recorded since the last scrape."""
        with self._lock, self.store.read() as conn:
            rows = conn.execute(
                sa.select(
                    audit_log.c.seq,
                    audit_log.c.kind,
                    audit_log.c.agent,
                    audit_log.c.tool,
                    audit_log.c.decision,
                    audit_log.c.record,
                )
                .where(audit_log.c.seq > self._seq, audit_log.c.kind.in_(_KINDS))
                .order_by(audit_log.c.seq)
            ).all()
            for seq, kind, agent, tool, decision, record in rows:
                if kind == "decision":
                    self.decisions.labels(decision or "?", agent or "?", tool or "?").inc()
                elif kind == "outcome":
                    self._outcome(agent or "?", tool or "?", record)
                else:
                    self.breaker_changes.labels(tool or "?", kind.partition(".")[2]).inc()
                self._seq = max(self._seq, seq)
            decided = conn.execute(
                sa.select(
                    review_items.c.queue, review_items.c.created_at, review_items.c.decided_at
                ).where(
                    review_items.c.decided_at > self._decided,
                    review_items.c.decided_by != "proctor",
                )
            ).all()
            for queue, created, at in decided:
                self.time_to_decision.labels(queue).observe(max(0.0, at - created))
                self._decided = max(self._decided, at)

    def _outcome(self, agent: str, tool: str, record: str) -> None:
        ok = '"outcome":"error"' not in record
        self.executions.labels(agent, tool, "ok" if ok else "error").inc()
        tries = 1
        healed = ('"attempts"', '"fallback_of"', '"recovered"')
        if any(mark in record for mark in healed):  # healed: read it whole
            body = orjson.loads(record)
            attempts = body.get("attempts")
            tries = attempts if isinstance(attempts, int) and attempts > 0 else 1
            how = body.get("recovered")
            if ok and body.get("fallback_of"):
                self.recoveries.labels("fallback").inc()
            elif ok and how in ("retry", "lookup"):
                self.recoveries.labels(how).inc()
        self.attempts.labels(agent, tool).inc(tries)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        self.refresh()
        return generate_latest(self.registry)


_KINDS = ["decision", "outcome", "breaker.open", "breaker.half_open", "breaker.closed"]


class _Breakers(Collector):
    """Each circuit breaker's state as it stands: 0 closed, 1 half open, 2 open."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "proctor_breaker_state",
            "Circuit breaker state: 0 closed, 1 half open (trial calls), 2 open (refusing).",
            labels=["scope", "agent", "tool"],
        )
        for row in breaker_rows(self.store):
            family.add_metric(
                [row["scope"], row["agent"], row["tool"]], STATE_CODE.get(row["state"], 0.0)
            )
        yield family

    def describe(self) -> Iterator[Any]:
        return iter(())


class _QueueDepth(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "proctor_review_queue_depth",
            "Review items waiting for a human, by queue.",
            labels=["queue"],
        )
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(review_items.c.queue, sa.func.count())
                .where(review_items.c.status == "pending")
                .group_by(review_items.c.queue)
            ).all()
        for queue, count in rows:
            family.add_metric([queue], float(count))
        yield family

    def describe(self) -> Iterator[Any]:
        return iter(())


class _Outbox(Collector):
    """Notifications by target and status, failed delivery attempts, firing alerts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "proctor_notifications",
            "Notifications in the outbox by target and status (pending, sent, failed).",
            labels=["target", "status"],
        )
        failures = CounterMetricFamily(
            "proctor_notification_failures",
            "Delivery attempts that failed (each is retried with backoff, up to a limit).",
            labels=["target"],
        )
        firing = GaugeMetricFamily(
            "proctor_alert_firing",
            "1 while an alert of the policy is firing, else 0.",
            labels=["alert", "severity"],
        )
        n = notifications.c
        with self.store.read() as conn:
            by_status = conn.execute(
                sa.select(n.target, n.status, sa.func.count(), sa.func.sum(n.failures)).group_by(
                    n.target, n.status
                )
            ).all()
            states = conn.execute(sa.select(alerts.c.id, alerts.c.severity, alerts.c.state)).all()
        failed: dict[str, float] = {}
        for target, status, rows, fails in by_status:
            count.add_metric([target, status], float(rows))
            failed[target] = failed.get(target, 0.0) + float(fails or 0)
        for target, value in sorted(failed.items()):
            failures.add_metric([target], value)
        for alert_id, severity, state in states:
            firing.add_metric([alert_id, severity], 1.0 if state == "firing" else 0.0)
        yield count
        yield failures
        yield firing

    def describe(self) -> Iterator[Any]:
        return iter(())

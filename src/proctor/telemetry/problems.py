"""Open problems ranked for whoever owns the agents: what to act on first.

Kinds, each found over a window (24 h by default) with the last hour as "recent":
- ``failing_tool``: an agent's tool whose calls fail (error rate and count)
- ``breaching_queue``: a queue with items waiting past their SLA
- ``deny_spike``: an agent denied far more often in the last hour than before it
- ``cost_spike``: an agent spending far more in the last hour than its hourly average
- ``alert``: an alert of the policy that is firing
- ``in_doubt``: actions that may or may not have run, waiting for a human to check

Ranking: severity first (critical, warning, info), then frequency (log scale) and recency
(an hour's half-life), so a loud old problem does not bury a fresh critical one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock
from ..store import Store
from ..store.tables import audit_log, review_items
from .alerts import states as alert_states
from .kpi import first_seq_since

WINDOW_SECONDS = 24 * 3600.0
RECENT_SECONDS = 3600.0
SPIKE_FACTOR = 2.0
_WEIGHT = {"critical": 3, "warning": 2, "info": 1}


def _problem(
    kind: str,
    severity: str,
    title: str,
    detail: str,
    frequency: int,
    last_seen: float,
    now: float,
    link: str | None = None,
    **subject: Any,
) -> dict[str, Any]:
    age = max(0.0, now - last_seen)
    score = (
        100 * _WEIGHT[severity]
        + 10 * math.log10(1 + frequency)
        + 10 * math.exp(-age * math.log(2) / RECENT_SECONDS)
    )
    return {
        "kind": kind,
        "severity": severity,
        "title": title,
        "detail": detail,
        "frequency": frequency,
        "last_seen": last_seen,
        "score": round(score, 2),
        "link": link,
        "subject": subject,
    }


def rank(
    store: Store,
    *,
    now: float | None = None,
    window: float = WINDOW_SECONDS,
    recent: float = RECENT_SECONDS,
) -> list[dict[str, Any]]:
    """Open problems over ``window`` seconds, spikes judged on the last ``recent``."""
    now = _clock.now() if now is None else now
    since, recent_start = now - window, now - recent
    with store.read() as conn:
        rows = conn.execute(
            sa.select(
                audit_log.c.ts,
                audit_log.c.kind,
                audit_log.c.agent,
                audit_log.c.tool,
                audit_log.c.decision,
                audit_log.c.record,
            ).where(
                audit_log.c.seq >= first_seq_since(conn, since),
                audit_log.c.ts >= since,
                audit_log.c.kind.in_(["decision", "outcome"]),
            )
        ).all()
        overdue = conn.execute(
            sa.select(review_items.c.queue, review_items.c.sla_due).where(
                review_items.c.status == "pending",
                review_items.c.sla_due.is_not(None),
                review_items.c.sla_due < now,
            )
        ).all()
        doubt = conn.execute(
            sa.select(
                review_items.c.id,
                review_items.c.agent,
                review_items.c.tool,
                review_items.c.updated_at,
            ).where(review_items.c.status == "in_doubt")
        ).all()
    problems = _failing_tools(rows, now) + _spikes(rows, now, since, recent_start)
    problems += _queues(overdue, now) + _doubts(doubt, now) + _alerts(store, now)
    return sorted(problems, key=lambda p: -p["score"])


def _failing_tools(rows: Sequence[Any], now: float) -> list[dict[str, Any]]:
    ran: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], float] = {}
    types: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for ts, kind, agent, tool, _decision, record in rows:
        if kind != "outcome":
            continue
        key = (agent or "?", tool or "?")
        ran[key] += 1
        if '"outcome":"error"' in record:
            failed[key] += 1
            last[key] = max(last.get(key, 0.0), ts)
            types[key][orjson.loads(record).get("error_type") or "?"] += 1
    out = []
    for key, errors in failed.items():
        rate = errors / ran[key]
        severity = (
            "critical" if rate >= 0.5 and errors >= 3 else "warning" if rate >= 0.1 else "info"
        )
        top, _ = types[key].most_common(1)[0]
        out.append(
            _problem(
                "failing_tool",
                severity,
                f"{key[1]} is failing for {key[0]}",
                f"{errors} of {ran[key]} calls failed ({rate:.0%}); most often {top}",
                errors,
                last[key],
                now,
                f"/audit?agent={key[0]}&tool={key[1]}&kind=outcome",
                agent=key[0],
                tool=key[1],
            )
        )
    return out


def _spikes(rows: Sequence[Any], now: float, since: float, recent: float) -> list[dict[str, Any]]:
    calls: dict[str, Counter[str]] = defaultdict(Counter)  # agent -> recent/before counts
    denies: dict[str, Counter[str]] = defaultdict(Counter)
    cost: dict[str, dict[str, float]] = defaultdict(lambda: {"recent": 0.0, "before": 0.0})
    last_deny: dict[str, float] = {}
    for ts, kind, agent, _tool, decision, record in rows:
        if kind != "decision":
            continue
        agent = agent or "?"
        when = "recent" if ts >= recent else "before"
        calls[agent][when] += 1
        if decision == "deny":
            denies[agent][when] += 1
            last_deny[agent] = max(last_deny.get(agent, 0.0), ts)
        if '"cost"' in record:
            c = orjson.loads(record).get("action", {}).get("context", {}).get("cost")
            if isinstance(c, int | float) and not isinstance(c, bool):
                cost[agent][when] += float(c)
    before_hours = max(1.0, (recent - since) / 3600)
    out = []
    for agent, d in denies.items():
        n_recent, n_before = calls[agent]["recent"], calls[agent]["before"]
        rate_recent = d["recent"] / n_recent if n_recent else 0.0
        rate_before = d["before"] / n_before if n_before else 0.0
        if d["recent"] >= 3 and rate_recent >= max(SPIKE_FACTOR * rate_before, 0.1):
            out.append(
                _problem(
                    "deny_spike",
                    "critical" if rate_recent >= 0.5 else "warning",
                    f"{agent} is being denied more than usual",
                    f"{d['recent']} of {n_recent} actions denied in the last hour"
                    f" ({rate_recent:.0%}), against {rate_before:.0%} before",
                    d["recent"],
                    last_deny[agent],
                    now,
                    f"/audit?agent={agent}",
                    agent=agent,
                )
            )
    for agent, c in cost.items():
        hourly = c["before"] / before_hours
        if c["before"] > 0 and c["recent"] >= SPIKE_FACTOR * hourly:
            factor = c["recent"] / hourly
            out.append(
                _problem(
                    "cost_spike",
                    "critical" if factor >= 5 else "warning",
                    f"{agent} is spending more than usual",
                    f"cost {c['recent']:.4g} in the last hour, {factor:.1f}x its hourly"
                    f" average of {hourly:.4g}",
                    calls[agent]["recent"],
                    now,
                    now,
                    f"/audit?agent={agent}",
                    agent=agent,
                )
            )
    return out


def _queues(overdue: Sequence[Any], now: float) -> list[dict[str, Any]]:
    by_queue: dict[str, list[float]] = defaultdict(list)
    for queue, due in overdue:
        by_queue[queue].append(now - due)
    return [
        _problem(
            "breaching_queue",
            "critical" if len(late) >= 5 or max(late) >= 3600 else "warning",
            f"queue {queue} is past its SLA",
            f"{_count(len(late), 'item')} waiting past their SLA,"
            f" the oldest by {_duration(max(late))}",
            len(late),
            now,
            now,
            f"/queue?queue={queue}",
            queue=queue,
        )
        for queue, late in by_queue.items()
    ]


def _doubts(rows: Sequence[Any], now: float) -> list[dict[str, Any]]:
    return [
        _problem(
            "in_doubt",
            "warning",
            f"{agent} may or may not have run {tool}",
            "the runner died while the action was executing; check the outside world, then"
            " approve again to run it or reject it",
            1,
            at,
            now,
            f"/items/{item_id}",
            agent=agent,
            tool=tool,
        )
        for item_id, agent, tool, at in rows
    ]


def _alerts(store: Store, now: float) -> list[dict[str, Any]]:
    return [
        _problem(
            "alert",
            a["severity"],
            f"alert {a['id']} is firing",
            f"{a['metric']} = {a['value']:.4g} (threshold {a['threshold']:g})"
            if a["value"] is not None
            else a["metric"],
            1,
            a["since"],
            now,
            None,
            alert=a["id"],
        )
        for a in alert_states(store)
        if a["state"] == "firing"
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    """A span for people: 45 s, 12 min, 3.5 h, 2.9 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"

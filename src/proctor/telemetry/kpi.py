"""Workflow KPIs from the decision log and the review items, per agent and tool.

Definitions (all over the records in the window):
- run completion rate: runs that ended ``completed`` / runs that started
- latency p50/p95: tool-call durations from outcome records (ms)
- retry frequency: calls repeating an earlier call's tool and exact arguments in the same
  run / calls
- top failure types: error types of failed calls, most frequent first
- tool success rate: successful calls / calls that ran, per tool
- escalation rate by task type: decisions sent to a human / decisions, by
  ``context.task_type`` (else the tool)
- time to resolution after escalation: p50/p95 seconds from an item's opening to a
  human's decision
- failure recovery rate: calls that recovered / calls that failed at least once, with the
  recoveries by retry, by fallback and by lookup counted apart (``failure_recovery``;
  what counts as failed and as recovered: ``telemetry.healing``)
- run recovery rate: runs with a failed call that still completed / runs with a failed
  call
- approve vs reject by rule: decided review items by the rule that opened them
- cost per completed run: the sum of ``context.cost`` over the decisions of completed runs
  / completed runs
- silent failures: runs that ended ``completed`` with an allowed call that never recorded
  an outcome, or with an approved action that never ran
- items past their SLA: pending items whose SLA is due
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock
from ..store import Store
from ..store.tables import audit_log, review_items
from .healing import call_id_of, count_recoveries, fallback_outcomes

KINDS = ["decision", "outcome", "run.start", "run.end", "heal.escalate"]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * q))], 3)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def first_seq_since(conn: sa.Connection, since: float) -> int:
    """The first log position at or after ``since``, by binary search on the primary key.

    Records are stamped inside the chain lock, so time grows with seq; this avoids a time
    index that every decision would pay for. A clock stepped backwards only blurs the edge.
    """
    lo, hi = 1, conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar() or 0
    if not hi:
        return 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.ts)
            .where(audit_log.c.seq >= mid)
            .order_by(audit_log.c.seq)
            .limit(1)
        ).first()
        if row is None or row.ts >= since:
            hi = mid
        else:
            lo = row.seq + 1
    return lo


def compute(
    store: Store,
    *,
    agent: str | None = None,
    tool: str | None = None,
    since: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The KPIs of one agent (or all) and one tool (or all; run-level KPIs then count the
    runs that called it) over the records since ``since``."""
    now = _clock.now() if now is None else now
    query = sa.select(audit_log.c.record).where(audit_log.c.kind.in_(KINDS))
    if agent:
        query = query.where(audit_log.c.agent == agent)
    if tool:
        query = query.where(sa.or_(audit_log.c.tool == tool, audit_log.c.tool.is_(None)))
    with store.read() as conn:
        first = 1
        if since is not None:
            first = first_seq_since(conn, since)
            query = query.where(audit_log.c.seq >= first, audit_log.c.ts >= since)
        records = [orjson.loads(r) for (r,) in conn.execute(query.order_by(audit_log.c.seq))]
        # a fallback's outcome is another tool's: read apart when one tool is asked for
        stand_ins = fallback_outcomes(conn, first, since, agent) if tool else []
        items_q = sa.select(review_items)
        if agent:
            items_q = items_q.where(review_items.c.agent == agent)
        if tool:
            items_q = items_q.where(review_items.c.tool == tool)
        if since is not None:
            items_q = items_q.where(review_items.c.created_at >= since)
        items = conn.execute(items_q).all()
    if tool:
        called = {r.get("run_id") for r in records if r["kind"] == "decision"}
        records = [
            r for r in records if r["kind"] not in ("run.start", "run.end") or r["run_id"] in called
        ]
    started: set[str] = set()
    ended: dict[str, str] = {}
    decisions = [r for r in records if r["kind"] == "decision"]
    outcomes = [r for r in records if r["kind"] == "outcome"]
    for r in records:
        if r["kind"] == "run.start":
            started.add(r["run_id"])
        elif r["kind"] == "run.end":
            ended[r["run_id"]] = r["status"]
    completed = {run for run, status in ended.items() if status == "completed"}

    seen: set[tuple[Any, ...]] = set()
    retries = 0
    escalation: dict[str, Counter[str]] = defaultdict(Counter)
    cost: dict[str, float] = defaultdict(float)
    total_cost = 0.0
    for d in decisions:
        action = d.get("action", {})
        key = (d.get("run_id"), d.get("tool"), action.get("args_digest"))
        if d.get("run_id") and key in seen:
            retries += 1
        seen.add(key)
        task = str(action.get("context", {}).get("task_type") or d.get("tool"))
        escalation[task]["review" if d["decision"] == "review" else "other"] += 1
        c = action.get("context", {}).get("cost")
        if isinstance(c, int | float) and not isinstance(c, bool):
            total_cost += float(c)
            if d.get("run_id"):
                cost[d["run_id"]] += float(c)

    durations = [
        float(v)
        for o in outcomes
        if isinstance(v := o.get("duration_ms"), int | float) and not isinstance(v, bool)
    ]
    failures = Counter(o.get("error_type") or "?" for o in outcomes if o["outcome"] == "error")
    by_tool: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        by_tool[str(o.get("tool"))][o["outcome"]] += 1
    failed_runs = {o["run_id"] for o in outcomes if o["outcome"] == "error" and o.get("run_id")}
    ran = {o.get("decision_id") for o in outcomes}
    silent = {
        d["run_id"]
        for d in decisions
        if d.get("run_id") in completed and d["decision"] == "allow" and d["id"] not in ran
    }

    waits = [
        row.decided_at - row.created_at
        for row in items
        if row.decided_at is not None and row.decided_by != "proctor"
    ]
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in items:
        rule = (orjson.loads(row.rule_ids) or ["?"])[0]
        if row.status in ("approved", "executing", "done", "failed"):
            verdicts[rule]["approved"] += 1
        elif row.status == "rejected":
            verdicts[rule]["rejected"] += 1
        # an approved approval that never ran; an approved QA sample has nothing to run
        if row.status == "approved" and row.kind != "sample" and row.run_id in completed:
            silent.add(row.run_id)
    overdue = sum(
        1
        for row in items
        if row.status == "pending" and row.sla_due is not None and row.sla_due < now
    )

    if tool:
        ids = {i for r in records if r["kind"] in ("decision", "outcome") if (i := call_id_of(r))}
        seen = {r["id"] for r in records}
        healed = count_recoveries([*records, *(o for o in stand_ins if o["id"] not in seen)], ids)
    else:
        healed = count_recoveries(records)
    verdict_counts = Counter(d["decision"] for d in decisions)
    return {
        "agent": agent,
        "tool": tool,
        "since": since,
        "runs": len(started),
        "calls": len(decisions),
        "run_completion_rate": _rate(len(completed & started), len(started)),
        "latency_ms": {"p50": _pct(durations, 0.5), "p95": _pct(durations, 0.95)},
        "retry_frequency": _rate(retries, len(decisions)),
        "top_failure_types": failures.most_common(5),
        "tool_success_rate": {
            t: _rate(c["ok"], sum(c.values())) for t, c in sorted(by_tool.items())
        },
        "escalation_rate_by_task": {
            t: _rate(c["review"], sum(c.values())) for t, c in sorted(escalation.items())
        },
        "time_to_resolution_s": {"p50": _pct(waits, 0.5), "p95": _pct(waits, 0.95)},
        "failure_recovery_rate": healed.rate,
        "failure_recovery": healed.as_dict(),
        "run_recovery_rate": _rate(len(failed_runs & completed), len(failed_runs)),
        "approve_reject_by_rule": {r: dict(c) for r, c in sorted(verdicts.items())},
        "cost_per_completed_run": (
            round(sum(cost[r] for r in completed) / len(completed), 4) if completed else None
        ),
        "silent_failures": len(silent),
        "items_past_sla": overdue,
        "totals": {
            "decisions": dict(sorted(verdict_counts.items())),
            "executions": {
                "ok": sum(c["ok"] for c in by_tool.values()),
                "error": sum(c["error"] for c in by_tool.values()),
            },
            "cost": round(total_cost, 4),
        },
    }

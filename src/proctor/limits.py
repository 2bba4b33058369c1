"""Limits and budgets from the policy, counted in the decision's own transaction.

Every decision holds the audit chain's lock while it checks and counts, so calls from any
number of processes on one database are counted exactly: never more allowed than the limit.
Windows are fixed (this minute, this hour, this UTC day); ``per_run`` counts one run;
``cost_per_day`` adds up ``context.cost``.
"""

from __future__ import annotations

from typing import Any

from . import _clock
from .policy import Action, CompiledPolicy, Decision
from .policy.schema import Limit
from .store import WriteTx

WINDOWS = {"per_minute": 60.0, "per_hour": 3600.0, "per_day": 86400.0}


def _limits_for(policy: CompiledPolicy, action: Action) -> list[tuple[str, Limit]]:
    agent = policy.agents.get(action.agent)
    if agent is None or not agent.limits:
        return []
    return [(scope, agent.limits[scope]) for scope in (action.tool, "*") if scope in agent.limits]


def check_and_count(
    tx: WriteTx,
    policy: CompiledPolicy,
    action: Action,
    run_id: str | None,
    decision: Decision,
) -> Decision:
    """The decision, or the limit's ``on_exceed`` decision when a limit is reached."""
    if decision.decision == "deny":
        return decision
    found = _limits_for(policy, action)
    if not found:
        return decision
    now = _clock.now()
    cost = action.context.get("cost", 0.0)
    cost = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0
    planned: list[tuple[str, float, float]] = []  # (key, window start, new value)
    for scope, limit in found:
        checks: list[tuple[str, float | None, float, float]] = []
        for name, seconds in WINDOWS.items():
            value = getattr(limit, name)
            if value is not None:
                checks.append((name, value, now - now % seconds, 1.0))
        if limit.per_run is not None and run_id is not None:
            checks.append((f"per_run:{run_id}", limit.per_run, 0.0, 1.0))
        if limit.cost_per_day is not None:
            checks.append(("cost_per_day", limit.cost_per_day, now - now % 86400.0, cost))
        for name, ceiling, start, amount in checks:
            key = f"{action.agent}|{scope}|{name}"
            row = tx.sql(
                "SELECT window_start, value FROM proctor_counters WHERE key = ?", (key,)
            ).fetchone()
            used = row[1] if row is not None and row[0] == start else 0.0
            if ceiling is not None and used + amount > ceiling:
                label = name.split(":")[0]
                fallback = policy.document.defaults.queue or next(iter(policy.queues), None)
                return _exceeded(decision, limit, scope, label, ceiling, used, fallback)
            planned.append((key, start, used + amount))
    for key, start, value in planned:
        if (
            tx.sql(
                "UPDATE proctor_counters SET window_start = ?, value = ? WHERE key = ?",
                (start, value, key),
            ).rowcount
            == 0
        ):
            tx.sql(
                "INSERT INTO proctor_counters (key, window_start, value) VALUES (?, ?, ?)",
                (key, start, value),
            )
    return decision


def _exceeded(
    decision: Decision,
    limit: Limit,
    scope: str,
    name: str,
    ceiling: float,
    used: float,
    fallback_queue: str | None,
) -> Decision:
    what = "all tools" if scope == "*" else f"'{scope}'"
    unit = "spent" if name == "cost_per_day" else "calls"
    reason = f"limit {name}={ceiling:g} for {what} reached ({used:g} {unit} so far)"
    rule = f"limit.{scope}.{name}"
    queue = decision.queue or fallback_queue
    if limit.on_exceed == "review" and queue is not None:
        return Decision(
            "review", (rule,), reason, decision.policy_version, decision.risk, queue=queue
        )
    return Decision("deny", (rule,), reason, decision.policy_version, decision.risk)


def describe(limits: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in limits.items() if v is not None)

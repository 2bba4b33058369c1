"""What self-healing did, read from the store: circuit breakers as they stand, and how
failed calls recovered (the KPI, the overview and ``/metrics`` count the same way).

A call "failed at least once" when its outcome is an error, when it needed more than one
try, when a lookup settled it, or when a fallback stood in for it (its breaker refused it,
or it failed). It "recovered" when it ended well all the same: by a retry (``recovered:
retry``), by its lookup finding the effect (``recovered: lookup``) or by a fallback whose
own outcome is ok (an outcome with ``fallback_of`` naming the call). A fallback is not a
call of its own here: it counts only through the call it stands in for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from ..store import Store
from ..store.tables import audit_log, breakers

STATES = ("closed", "half_open", "open")
STATE_CODE = {state: float(code) for code, state in enumerate(STATES)}  # the gauge's value
HOW = ("retry", "fallback", "lookup")


def breaker_rows(store: Store) -> list[dict[str, Any]]:
    """Every breaker the store holds, open first, then half open, then closed."""
    b = breakers.c
    with store.read() as conn:
        rows = conn.execute(sa.select(breakers).order_by(b.scope)).all()
    found = []
    for row in rows:
        outcomes = row.outcomes or ""
        failures = outcomes.count("1")
        found.append(
            {
                "scope": row.scope,
                "agent": row.agent,
                "tool": row.tool,
                "state": row.state,
                "calls": len(outcomes),
                "failures": failures,
                "failure_rate": failures / len(outcomes) if outcomes else None,
                "opened_at": row.opened_at,
                "trials": row.trials,
                "trial_failures": row.trial_failures,
                "escalated_at": row.escalated_at,
                "updated_at": row.updated_at,
            }
        )
    found.sort(key=lambda r: -STATE_CODE.get(r["state"], 0.0))
    return found


def call_id_of(record: dict[str, Any]) -> str | None:
    """How a fallback names the call it stands in for: the call's identity, else its
    decision (an outcome's ``decision_id``, a decision's ``id``)."""
    found = record.get("call_id") or record.get(
        "decision_id" if record.get("kind") == "outcome" else "id"
    )
    return str(found) if found else None


@dataclass
class Recovery:
    """Calls that failed at least once and how many of them recovered, by how."""

    failed: int = 0
    retry: int = 0
    fallback: int = 0
    lookup: int = 0
    escalated: int = 0
    attempts: int = 0  # tries of the bodies (of fallbacks too, unless one tool is counted)
    retried: int = 0  # calls tried more than once
    _failed_ids: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def recovered(self) -> int:
        return self.retry + self.fallback + self.lookup

    @property
    def rate(self) -> float | None:
        return round(self.recovered / self.failed, 4) if self.failed else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "recovered": self.recovered,
            "by_retry": self.retry,
            "by_fallback": self.fallback,
            "by_lookup": self.lookup,
            "escalated": self.escalated,
            "attempts": self.attempts,
            "retried_calls": self.retried,
        }


def count_recoveries(
    records: Iterable[dict[str, Any]], calls_of: set[str] | None = None
) -> Recovery:
    """Count over outcome and ``heal.escalate`` records, in log order. ``calls_of``: only
    fallbacks standing in for these calls count (the ids of one tool's calls, when the
    records were filtered by tool and the fallbacks were read besides)."""
    found = Recovery()
    stood_in: dict[str, bool] = {}  # the call a fallback stood in for -> it ended ok
    for r in records:
        kind = r.get("kind")
        if kind == "heal.escalate":
            found.escalated += 1
            continue
        if kind != "outcome":
            continue
        attempts = r.get("attempts")
        tries = attempts if isinstance(attempts, int) and attempts > 0 else 1
        primary = r.get("fallback_of")
        if calls_of is None or not primary:  # another tool's tries are not this tool's
            found.attempts += tries
            found.retried += tries > 1
        if primary:
            if calls_of is None or primary in calls_of:
                ok = r.get("outcome") == "ok"
                stood_in[str(primary)] = stood_in.get(str(primary), False) or ok
            continue
        recovered = r.get("recovered")
        ok = r.get("outcome") == "ok"
        if r.get("outcome") == "error" or recovered or tries > 1:
            found.failed += 1
            ident = call_id_of(r)
            if ident:
                found._failed_ids.add(ident)
            if ok and recovered == "lookup":
                found.lookup += 1
            elif ok:  # ``recovered: retry``, or tried more than once and ended well
                found.retry += 1
    for primary, ok in stood_in.items():
        if primary not in found._failed_ids:
            found.failed += 1  # refused by its breaker: it never ran, its fallback did
        found.fallback += ok
    return found


def fallback_outcomes(
    conn: sa.Connection, since_seq: int, since: float | None, agent: str | None
) -> list[dict[str, Any]]:
    """Outcome records of fallbacks from ``since_seq`` (and time ``since``) on, whatever
    tool stood in."""
    a = audit_log.c
    query = sa.select(a.record).where(
        a.kind == "outcome", a.seq >= since_seq, a.record.like('%"fallback_of":"%')
    )
    if since is not None:
        query = query.where(a.ts >= since)
    if agent:
        query = query.where(a.agent == agent)
    return [orjson.loads(r) for (r,) in conn.execute(query.order_by(a.seq))]

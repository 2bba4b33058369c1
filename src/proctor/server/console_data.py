"""What the console pages show, read from the store: one function per page section."""

from __future__ import annotations

import difflib
import statistics
import time
from collections import Counter, defaultdict
from typing import Any

import orjson
import sqlalchemy as sa

from ..store import Store
from ..store.tables import audit_log, policies, review_items, state
from . import charts

RECENT = 20_000  # the overview reads at most this many of the newest decisions


def overview(store: Store) -> dict[str, str]:
    """The dashboard's charts, as SVG."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.ts, audit_log.c.agent, audit_log.c.tool, audit_log.c.decision)
            .where(audit_log.c.kind == "decision")
            .order_by(audit_log.c.seq.desc())
            .limit(RECENT)
        ).all()
        items = conn.execute(
            sa.select(
                review_items.c.queue,
                review_items.c.status,
                review_items.c.rule_ids,
                review_items.c.created_at,
                review_items.c.decided_at,
                review_items.c.decided_by,
            )
        ).all()
    by_tool: dict[str, Counter[str]] = defaultdict(Counter)
    for _, _, tool, decision in rows:
        by_tool[tool or "?"][decision or "?"] += 1
    escalation = sorted(
        ((tool, 100.0 * c["review"] / max(1, sum(c.values()))) for tool, c in by_tool.items()),
        key=lambda r: -r[1],
    )
    waits: dict[str, list[float]] = defaultdict(list)
    verdicts: dict[str, Counter[str]] = defaultdict(Counter)
    for queue, status, rule_ids, created, decided, by in items:
        if decided is not None and by != "proctor":
            waits[queue].append(decided - created)
        rule = (orjson.loads(rule_ids) or ["?"])[0]
        if status in ("approved", "executing", "done", "failed"):
            verdicts[rule]["approved"] += 1
        elif status == "rejected":
            verdicts[rule]["rejected"] += 1
    ttd = [(q, {"p50": statistics.median(v), "p95": _p95(v)}) for q, v in sorted(waits.items())]
    volume = Counter(agent or "?" for _, agent, _, _ in rows)
    return {
        "outcomes": charts.stacked_bars(
            charts.bucketize([(ts, d or "?") for ts, _, _, d in rows]),
            ["allow", "review", "deny"],
            "Decisions by outcome over time",
            width=1100,
        ),
        "escalation": charts.hbars(
            escalation, "Escalation rate by tool (share sent to a human)", unit="%", color="rate"
        ),
        "time_to_decision": charts.paired_bars(
            ttd, ["p50", "p95"], "Time to decision per queue", unit="s", fmt="{:.1f}"
        ),
        "verdicts": charts.paired_bars(
            [(rule, {k: float(v) for k, v in c.items()}) for rule, c in sorted(verdicts.items())],
            ["approved", "rejected"],
            "Approve / reject by rule",
        ),
        "volume": charts.hbars(volume.most_common(12), "Decisions per agent"),
    }


def _p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * 0.95))]


def _records_mentioning(store: Store, text: str, limit: int) -> list[dict[str, Any]]:
    """Records whose JSON contains ``text``, in order (LIKE wildcards in it are escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record)
            .where(audit_log.c.record.like(f"%{escaped}%", escape="\\"))
            .order_by(audit_log.c.seq)
            .limit(limit)
        ).all()
    return [orjson.loads(r) for (r,) in rows]


def run_records(store: Store, run_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """One run's records in order: its start, decisions, outcomes, end."""
    return _records_mentioning(store, f'"run_id":"{run_id}"', limit)


def item_records(store: Store, item_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Everything the log says about one review item, in order."""
    return _records_mentioning(store, f'"{item_id}"', limit)


def audit_search(
    store: Store,
    *,
    agent: str | None,
    tool: str | None,
    decision: str | None,
    kind: str | None,
    since_minutes: float | None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    query = sa.select(audit_log.c.seq, audit_log.c.record)
    for column, value in (
        (audit_log.c.agent, agent),
        (audit_log.c.tool, tool),
        (audit_log.c.decision, decision),
        (audit_log.c.kind, kind),
    ):
        if value:
            query = query.where(column == value)
    if since_minutes:
        query = query.where(audit_log.c.ts >= time.time() - since_minutes * 60)
    with store.read() as conn:
        rows = conn.execute(query.order_by(audit_log.c.seq.desc()).limit(limit)).all()
    return [{"seq": s, **orjson.loads(r)} for s, r in rows]


def policy_history(store: Store) -> tuple[str | None, list[dict[str, Any]]]:
    with store.read() as conn:
        active = conn.execute(sa.select(state.c.policy_version)).scalar()
        rows = conn.execute(
            sa.select(
                policies.c.version,
                policies.c.name,
                policies.c.created_at,
                policies.c.author,
                policies.c.message,
            ).order_by(policies.c.created_at.desc())
        ).all()
    return active, [r._asdict() for r in rows]


def policy_diff(store: Store, old: str, new: str) -> list[tuple[str, str]]:
    """A readable line diff between two stored versions: (kind, line) with kind in
    ' ', '+', '-', '@'."""
    with store.read() as conn:
        texts = dict(
            conn.execute(
                sa.select(policies.c.version, policies.c.text).where(
                    policies.c.version.in_([old, new])
                )
            ).all()
        )
    if old not in texts or new not in texts:
        return []
    lines = difflib.unified_diff(
        texts[old].splitlines(),
        texts[new].splitlines(),
        fromfile=old[:12],
        tofile=new[:12],
        lineterm="",
        n=2,
    )
    return [(line[:1] if line[:1] in "+-@" else " ", line) for line in lines]

"""What the console pages show, read from the store: one function per page section."""

from __future__ import annotations

import difflib
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock
from ..store import Store
from ..store.tables import audit_log, policies, review_items, state
from ..telemetry.healing import Recovery, count_recoveries
from ..telemetry.kpi import first_seq_since
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
    buckets = charts.bucketize([(ts, d or "?") for ts, _, _, d in rows])
    return {
        "outcomes": charts.stacked_bars(
            buckets.rows,
            ["allow", "review", "deny"],
            f"Decisions by outcome, per {buckets.per}" if buckets.per else "Decisions by outcome",
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


def recovery(store: Store, window: float = 86400.0) -> Recovery:
    """Self-healing over the last ``window`` seconds: tries, failures and recoveries (at most
    ``RECENT`` of the newest outcomes)."""
    since = _clock.now() - window
    with store.read() as conn:
        first = first_seq_since(conn, since)
        rows = conn.execute(
            sa.select(audit_log.c.record)
            .where(
                audit_log.c.seq >= first,
                audit_log.c.kind.in_(["outcome", "heal.escalate"]),
            )
            .order_by(audit_log.c.seq.desc())
            .limit(RECENT)
        ).all()
    return count_recoveries(orjson.loads(r) for (r,) in reversed(rows))


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


AUDIT_COUNT_MOST = 10_000  # a filtered search counts its matches up to this many


@dataclass(frozen=True)
class AuditPage:
    """Newest first, from the snapshot ``upto`` (the newest seq when the search began), so
    paging stays put while new records arrive. ``total`` stops at ``AUDIT_COUNT_MOST``
    for a filtered search (``capped``): counting further would read the whole log."""

    rows: list[dict[str, Any]]
    total: int
    capped: bool
    upto: int


def audit_page(
    store: Store,
    *,
    agent: str | None = None,
    tool: str | None = None,
    decision: str | None = None,
    kind: str | None = None,
    since_minutes: float | None = None,
    upto: int | None = None,
    offset: int = 0,
    size: int = 50,
) -> AuditPage:
    """One page of the decision log's records that match the filters."""
    where = []
    for column, value in (
        (audit_log.c.agent, agent),
        (audit_log.c.tool, tool),
        (audit_log.c.decision, decision),
        (audit_log.c.kind, kind),
    ):
        if value:
            where.append(column == value)
    if since_minutes:
        where.append(audit_log.c.ts >= _clock.now() - since_minutes * 60)
    with store.read() as conn:
        head = int(conn.execute(sa.select(state.c.head_seq)).scalar() or 0)
        upto = head if upto is None or not 0 <= upto <= head else upto
        where.append(audit_log.c.seq <= upto)
        if len(where) == 1:  # no filter: seqs run 1..upto without gaps (verify checks it)
            total, capped = upto, False
        else:
            matches = sa.select(audit_log.c.seq).where(*where).limit(AUDIT_COUNT_MOST + 1)
            total = int(
                conn.execute(sa.select(sa.func.count()).select_from(matches.subquery())).scalar()
                or 0
            )
            capped = total > AUDIT_COUNT_MOST
            total = min(total, AUDIT_COUNT_MOST)
        rows = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.record)
            .where(*where)
            .order_by(audit_log.c.seq.desc())
            .offset(offset)
            .limit(size)
        ).all()
    return AuditPage([{"seq": s, **orjson.loads(r)} for s, r in rows], total, capped, upto)


def queue_depth(store: Store, queues: list[str], now: float) -> list[dict[str, Any]]:
    """Per queue: items pending, the oldest one's age, how many are past their SLA and by
    how long the worst is overdue. Every queue the policy names is listed, empty or not."""
    c = review_items.c
    late = c.sla_due <= now
    with store.read() as conn:
        rows = conn.execute(
            sa.select(
                c.queue,
                sa.func.count(),
                sa.func.min(c.created_at),
                sa.func.sum(sa.case((late, 1), else_=0)),
                sa.func.min(sa.case((late, c.sla_due), else_=None)),
            )
            .where(c.status == "pending")
            .group_by(c.queue)
        ).all()
    found = {q: (n, oldest, int(breached or 0), worst) for q, n, oldest, breached, worst in rows}
    out = []
    for queue in sorted(set(queues) | set(found)):
        n, oldest, breached, worst = found.get(queue, (0, None, 0, None))
        out.append(
            {
                "queue": queue,
                "pending": n,
                "oldest_age": None if oldest is None else now - oldest,
                "breached": breached,
                "worst_overdue": None if worst is None else now - worst,
            }
        )
    return sorted(out, key=lambda r: (-r["pending"], r["queue"]))


def shadow_version(store: Store) -> str | None:
    """The version evaluated beside the active one without being enforced, if any."""
    with store.read() as conn:
        return conn.execute(sa.select(state.c.shadow_version)).scalar()


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

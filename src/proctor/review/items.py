"""Review items as reviewers and agents see them, ranked by severity, and waiting on one."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from .. import _clock
from .._errors import InvalidRequest, NotFound
from ..store import Store
from ..store.tables import review_items

STATUSES = ("pending", "approved", "rejected", "expired", "executing", "done", "failed", "in_doubt")
ANSWERED = frozenset(STATUSES) - {"pending"}
KINDS = ("approval", "exception", "sample", "choice", "settle")
RECHECK_SECONDS = 2.0  # a lost wake-up costs at most this much


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


@dataclass(frozen=True)
class ReviewItem:
    """A durable request for a human, with the context to decide it."""

    id: str
    kind: str
    status: str
    queue: str
    agent: str
    tool: str
    decision_id: str
    decision_seq: int
    run_id: str | None
    policy_version: str | None
    rule_ids: list[str]
    reason: str
    risk: float | None
    args: dict[str, Any]
    args_digest: str
    context: dict[str, Any]
    detail: str | None
    created_at: float
    expires_at: float | None
    updated_at: float
    sla_due: float | None = None
    impact: float | None = None
    quorum: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    options: list[dict[str, Any]] | None = None
    chosen: int | None = None
    edited_args: dict[str, Any] | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    escalated_from: str | None = None
    grant_expires_at: float | None = None
    result: Any = None
    result_error: str | None = None
    params: dict[str, Any] | None = None
    exec_args: dict[str, Any] | None = None  # exact arguments; None when some were masked
    call_id: str | None = None  # the call with an identity it belongs to

    @classmethod
    def from_row(cls, row: Any) -> ReviewItem:
        m = row._mapping
        plain = (
            "id",
            "kind",
            "status",
            "queue",
            "agent",
            "tool",
            "decision_id",
            "decision_seq",
            "run_id",
            "policy_version",
            "reason",
            "risk",
            "args_digest",
            "detail",
            "created_at",
            "expires_at",
            "updated_at",
            "sla_due",
            "impact",
            "quorum",
            "chosen",
            "decided_by",
            "decided_at",
            "note",
            "escalated_from",
            "grant_expires_at",
            "result_error",
            "call_id",
        )
        return cls(
            **{k: m[k] for k in plain},
            rule_ids=orjson.loads(m["rule_ids"]),
            args=orjson.loads(m["args"]),
            context=orjson.loads(m["context"]),
            history=_json(m["history"]) or [],
            options=_json(m["options"]),
            edited_args=_json(m["edited_args"]),
            result=_json(m["result"]),
            params=_json(m["params"]),
            exec_args=_json(m["exec_args"]),
        )

    def severity(self, now: float | None = None) -> float:
        """Risk + SLA pressure + business impact, each 0..1 (a breached SLA counts 1.5).

        The order reviewers see: what is riskiest, most overdue and costliest comes first.
        """
        now = _clock.now() if now is None else now
        pressure = 0.0
        if self.sla_due is not None and self.status == "pending":
            total = max(self.sla_due - self.created_at, 1e-9)
            left = self.sla_due - now
            pressure = 1.5 if left <= 0 else min(1.0, max(0.0, 1.0 - left / total))
        return round((self.risk or 0.0) + pressure + min(max(self.impact or 0.0, 0.0), 1.0), 4)

    def diff(self) -> dict[str, list[Any]]:
        """What an edit changed: ``{name: [before, after]}``."""
        if not self.edited_args:
            return {}
        return {k: [self.args.get(k), v] for k, v in self.edited_args.items()}

    def next_actions(self) -> list[str]:
        if self.status == "pending":
            if self.kind == "settle":
                return ["settle"]
            if self.kind == "choice":
                return ["choose", "reject", "escalate"]
            if self.kind == "sample":
                return ["approve", "reject"]
            return ["approve", "reject", "edit", "escalate"]
        if self.status == "in_doubt":
            return ["approve", "reject"]
        return []


LIST_LIMIT = 20_000  # items read for one list; beyond this the newest are shown


def list_items(
    store: Store, status: str | None = "pending", queue: str | None = None, limit: int = LIST_LIMIT
) -> list[ReviewItem]:
    """Items ordered by severity, most severe first (of the newest ``limit``)."""
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    query = sa.select(review_items)
    if status is not None:
        query = query.where(review_items.c.status == status)
    if queue is not None:
        query = query.where(review_items.c.queue == queue)
    query = query.order_by(review_items.c.created_at.desc()).limit(limit)
    with store.read() as conn:
        items = [ReviewItem.from_row(r) for r in conn.execute(query)]
    now = _clock.now()
    return sorted(items, key=lambda i: (-i.severity(now), i.created_at))


def get_item(store: Store, item_id: str) -> ReviewItem:
    with store.read() as conn:
        row = conn.execute(sa.select(review_items).where(review_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no review item {item_id!r}")
    return ReviewItem.from_row(row)


def status_of(store: Store, item_id: str) -> str:
    with store.read() as conn:
        status = conn.execute(
            sa.select(review_items.c.status).where(review_items.c.id == item_id)
        ).scalar()
    if status is None:
        raise NotFound(f"no review item {item_id!r}")
    return str(status)


def wait_while(store: Store, item_id: str, statuses: frozenset[str], timeout: float) -> str:
    """Block until the item leaves ``statuses`` or ``timeout`` passes; returns its status.

    Woken by the deciding process (no tight polling); re-reads every few seconds in case
    a wake-up was lost.
    """
    event = store.hub.subscribe(item_id)
    try:
        deadline = time.monotonic() + timeout
        while True:
            status = status_of(store, item_id)
            left = deadline - time.monotonic()
            if status not in statuses or left <= 0:
                return status
            event.wait(min(left, RECHECK_SECONDS))
            event.clear()
    finally:
        store.hub.unsubscribe(item_id, event)


def wait_for_answer(store: Store, item_id: str, timeout: float) -> str:
    return wait_while(store, item_id, frozenset({"pending"}), timeout)


async def wait_for_answer_async(store: Store, item_id: str, timeout: float) -> str:
    return await asyncio.to_thread(wait_for_answer, store, item_id, timeout)

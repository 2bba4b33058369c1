"""Review items as reviewers and agents see them, and waiting for a human's answer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from .._errors import ConfigError, NotFound
from ..store import Store
from ..store.tables import review_items

STATUSES = ("pending", "approved", "rejected", "expired", "executing", "done", "failed")
FINAL = frozenset({"approved", "rejected", "expired"})
KINDS = ("approval", "exception", "sample", "choice")


@dataclass(frozen=True)
class ReviewItem:
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

    @classmethod
    def from_row(cls, row: Any) -> ReviewItem:
        m = row._mapping
        return cls(
            **{
                k: m[k]
                for k in (
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
                )
            },
            rule_ids=orjson.loads(m["rule_ids"]),
            args=orjson.loads(m["args"]),
            context=orjson.loads(m["context"]),
        )


def list_items(
    store: Store, status: str | None = "pending", queue: str | None = None, limit: int = 500
) -> list[ReviewItem]:
    if status is not None and status not in STATUSES:
        raise ConfigError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
    query = sa.select(review_items)
    if status is not None:
        query = query.where(review_items.c.status == status)
    if queue is not None:
        query = query.where(review_items.c.queue == queue)
    query = query.order_by(review_items.c.risk.desc().nulls_last(), review_items.c.created_at)
    with store.read() as conn:
        return [ReviewItem.from_row(r) for r in conn.execute(query.limit(limit))]


def get_item(store: Store, item_id: str) -> ReviewItem:
    with store.read() as conn:
        row = conn.execute(sa.select(review_items).where(review_items.c.id == item_id)).first()
    if row is None:
        raise NotFound(f"no review item {item_id!r}")
    return ReviewItem.from_row(row)


def _status(store: Store, item_id: str) -> str:
    with store.read() as conn:
        status = conn.execute(
            sa.select(review_items.c.status).where(review_items.c.id == item_id)
        ).scalar()
    if status is None:
        raise NotFound(f"no review item {item_id!r}")
    return str(status)


def _delays(timeout: float) -> Any:
    """Back off from 20 ms to 1 s between looks at the item, never past the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while (left := deadline - time.monotonic()) > 0:
        yield min(delay, left)
        delay = min(delay * 1.5, 1.0)


def wait_for_answer(store: Store, item_id: str, timeout: float) -> str:
    """The item's status once a human has answered, or 'pending' when ``timeout`` ran out."""
    status = _status(store, item_id)
    for delay in _delays(timeout):
        if status in FINAL:
            return status
        time.sleep(delay)
        status = _status(store, item_id)
    return status


async def wait_for_answer_async(store: Store, item_id: str, timeout: float) -> str:
    status = _status(store, item_id)
    for delay in _delays(timeout):
        if status in FINAL:
            return status
        await asyncio.sleep(delay)
        status = _status(store, item_id)
    return status

"""Review item rows inside a write transaction: read one, change it, log what happened.

Every change to an item and the log record that says so share one transaction, which holds
the audit chain's lock: two people acting on one item are serialized.
"""

from __future__ import annotations

from typing import Any

from .. import _clock
from .._errors import Conflict, Forbidden, InvalidRequest, NotFound
from ..store import WriteTx
from ..telemetry import webhooks


def load(tx: WriteTx, item_id: str) -> dict[str, Any]:
    cur = tx.sql("SELECT * FROM proctor_review_items WHERE id = ?", (item_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"no review item {item_id!r}")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def update(tx: WriteTx, item_id: str, **fields: Any) -> None:
    fields["updated_at"] = _clock.now()
    cols = ", ".join(f"{k} = ?" for k in fields)
    tx.sql(f"UPDATE proctor_review_items SET {cols} WHERE id = ?", (*fields.values(), item_id))


def log(tx: WriteTx, kind: str, item: dict[str, Any], **body: Any) -> None:
    """Append ``kind`` about ``item``, queue the webhooks it is an event for, and wake
    whoever waits on it once this commits."""
    rec = tx.append(
        kind,
        {"item_id": item["id"], "queue": item["queue"], **body},
        agent=item["agent"],
        tool=item["tool"],
    )
    webhooks.on_review(tx, kind, item, body, rec)
    tx.wake(item["id"])


def open_for_decision(item: dict[str, Any], by: str, *, allow_in_doubt: bool = False) -> None:
    """A person may decide this item now: named, not its own agent, not decided already."""
    if not by or not isinstance(by, str):
        raise InvalidRequest("a decision needs the reviewer's name (by=)")
    ok = ("pending", "in_doubt") if allow_in_doubt else ("pending",)
    if item["status"] not in ok:
        raise Conflict(f"item {item['id']} is already {item['status']}")
    if by == item["agent"]:
        raise Forbidden(f"agent '{by}' cannot decide a review of its own action")

"""A call's receipt: where it stands and every record of its life, with their seqs.

A call with an identity keeps the seqs of its own records (decided, repeated, unknown,
reconciled, outcome); the records of its review item (approvals, the claim) are found by
the item's id. A call without one is known by its decision record's id.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from .._errors import NotFound
from ..store import Store
from ..store.tables import audit_log, calls, review_items

SCAN = 200_000  # records after the decision searched for those that name its item


def receipt(store: Store, call_id: str) -> dict[str, Any]:
    with store.read() as conn:
        row = conn.execute(sa.select(calls).where(calls.c.id == call_id)).first()
        if row is not None:
            seqs = [int(s) for s in str(row.seqs).split(",") if s]
            head: dict[str, Any] = {
                "call_id": row.id,
                "key": row.key,
                "agent": row.agent,
                "tool": row.tool,
                "status": row.status,
                "attempts": row.attempts,
                "args_digest": row.args_digest,
                "item_id": row.item_id,
                "result": orjson.loads(row.result) if row.result else None,
                "error": row.result_error,
            }
            item_id = row.item_id
            if seqs:  # review events about it (a settle item, say) name the call's id
                seqs += _naming(conn, row.id, seqs[0])
        else:
            found = conn.execute(
                sa.select(audit_log.c.seq).where(
                    audit_log.c.id == call_id, audit_log.c.kind == "decision"
                )
            ).first()
            if found is None:
                raise NotFound(f"no call or decision {call_id!r}")
            seqs = [int(found.seq)]
            head = {"call_id": call_id, "key": None, "status": None}
            item = conn.execute(
                sa.select(review_items.c.id).where(review_items.c.decision_id == call_id)
            ).first()
            item_id = item.id if item is not None else None
            seqs += _naming(conn, call_id, seqs[0])
        if item_id is not None and seqs:
            seqs += _naming(conn, item_id, min(seqs))
        records = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.ts, audit_log.c.kind, audit_log.c.record)
            .where(audit_log.c.seq.in_(sorted(set(seqs))))
            .order_by(audit_log.c.seq)
        ).all()
    head["records"] = [
        {"seq": seq, "ts": ts, "kind": kind, "record": orjson.loads(record)}
        for seq, ts, kind, record in records
    ]
    return head


def _naming(conn: sa.Connection, text: str, after: int) -> list[int]:
    """Seqs of records after ``after`` that mention ``text`` (an item's or decision's id)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        sa.select(audit_log.c.seq)
        .where(
            audit_log.c.seq > after,
            audit_log.c.seq <= after + SCAN,
            audit_log.c.record.like(f'%"{escaped}"%', escape="\\"),
        )
        .limit(500)
    ).all()
    return [int(r.seq) for r in rows]


def summary(record: dict[str, Any]) -> str:
    """One line about a record, for people."""
    kind = record.get("kind")
    if kind == "decision":
        return f"{record.get('decision')}: {record.get('reason')}"
    if kind == "outcome":
        extra = f" {record.get('error_type')}: {record.get('error')}" if record.get("error") else ""
        tries = record.get("attempts")
        if tries and tries > 1:
            extra += f" after {tries} tries"
        if record.get("recovered"):
            extra += f", recovered by {record['recovered']}"
        return f"{record.get('outcome')}{extra} ({record.get('duration_ms')} ms)"
    if kind == "call.repeat":
        return "asked again: returned the recorded result, nothing ran"
    if kind == "call.attempt":
        failure = f"{record.get('error_type')}: {record.get('error')}"
        return f"try {record.get('attempt')} failed: {failure}"
    for field in ("answer", "why", "by", "owner"):
        if record.get(field):
            return f"{field} {record[field]}"
    return ""

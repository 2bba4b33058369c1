"""Settling calls that may or may not have happened: by the tool's own lookup, or a person.

An unknown call is never run blindly. A lookup's answer is logged against the call's
argument digest: ``committed`` closes the call with what the lookup found, ``not_committed``
lets exactly one more run go ahead, and ``conflicting`` or ``unavailable`` keep it unknown
and put a ``settle`` item in front of a person, with the evidence. A call nobody settles
within a grace period (no lookup, or no agent left to run one) also goes to a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .. import _clock
from .._errors import InvalidRequest, NotFound
from ..execution.calls import SETTLEMENTS, Calls, CallState, Settlement
from ..gate import StoredAction
from ..policy import Action, Decision
from ..store import WriteTx
from .rows import load, log, open_for_decision, update

SYSTEM = "proctor"

if TYPE_CHECKING:
    from ..gate import Gate


class Settling:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.store = gate.store
        self.calls: Calls = gate.calls

    def by_lookup(self, call_id: str, found: Settlement) -> CallState:
        """Record a lookup's answer about an unknown call, and act on it."""
        if found.answer not in SETTLEMENTS:
            raise InvalidRequest(f"a settlement is one of {', '.join(SETTLEMENTS)}")
        with self.store.write() as tx:
            row = self.calls.get(tx, call_id)
            if row is None:
                raise NotFound(f"no call {call_id!r}")
            if row["status"] != "unknown":  # settled meanwhile: where it stands now
                return self.calls._state(row, row["status"])
            rec = tx.append(
                "call.reconciled",
                {
                    "call_id": call_id,
                    "key": row["key"],
                    "answer": found.answer,
                    "args_digest": row["args_digest"],
                    "evidence": (found.evidence or "")[:2000] or None,
                },
                agent=row["agent"],
                tool=row["tool"],
            )
            self.calls.add_seq(tx, call_id, rec.seq)
            if found.answer in ("committed", "not_committed"):
                self._close_items(tx, row, f"settled by its tool's lookup: {found.answer}")
                state = self.calls.settle(
                    tx,
                    row,
                    found.answer == "committed",
                    found.result,
                    found.token,
                    found.owner,
                    self.gate.max_args_bytes,
                )
                tx.wake(call_id)
                return state
            why = f"its lookup answered {found.answer}: {found.evidence or 'no detail'}"
            item_id = self.escalate(tx, row, why)
            return CallState(call_id, row["key"], "unknown", error=why, item_id=item_id)

    def _close_items(self, tx: WriteTx, row: dict[str, Any], why: str) -> None:
        """Settle items left open for a call that got settled another way."""
        for (item_id,) in tx.sql(
            "SELECT id FROM proctor_review_items WHERE call_id = ? AND kind = 'settle'"
            " AND status = 'pending'",
            (row["id"],),
        ).fetchall():
            item = load(tx, item_id)
            update(tx, item_id, status="done", decided_by=SYSTEM, decided_at=_clock.now(), note=why)
            log(tx, "review.settle", item, by=SYSTEM, note=why, call_id=row["id"])

    def by_agent(self, call_id: str, why: str) -> str:
        """An agent without a lookup asks a person to settle its unknown call."""
        with self.store.write() as tx:
            row = self.calls.get(tx, call_id)
            if row is None:
                raise NotFound(f"no call {call_id!r}")
            if row["status"] != "unknown":
                raise InvalidRequest(f"call {call_id} is {row['status']}, not unknown")
            return self.escalate(tx, row, why)

    def escalate(self, tx: WriteTx, row: dict[str, Any], why: str) -> str:
        """A ``settle`` item for a person (one at a time per call)."""
        found = tx.sql(
            "SELECT id FROM proctor_review_items WHERE call_id = ? AND kind = 'settle'"
            " AND status = 'pending'",
            (row["id"],),
        ).fetchone()
        if found is not None:
            return str(found[0])
        first = int(str(row["seqs"]).split(",")[0])
        decided = tx.sql(
            "SELECT id, record FROM proctor_audit_log WHERE seq = ?", (first,)
        ).fetchone()
        record = orjson.loads(decided[1]) if decided is not None else {}
        acted = record.get("action") or {}
        action = Action(
            row["agent"],
            row["tool"],
            acted.get("args") or {},
            acted.get("context") or {},
            bool(acted.get("reversible", True)),
            tuple(acted.get("reads") or ()),
        )
        decision = Decision(
            "review",
            ("call-unknown",),
            f"call {row['key']!r} may or may not have happened: {why}",
            record.get("policy_version"),
            record.get("risk"),
        )
        policy = self.gate._usable_policy(tx)
        queue = self.gate._any_queue(tx)
        stored = StoredAction(action.args, action.context, row["args_digest"], (), False)
        return self.gate.open_item(
            tx,
            "settle",
            decision,
            action,
            decision_id=str(decided[0]) if decided is not None else "",
            decision_seq=first,
            run=None,
            stored=stored,
            policy=policy,
            queue=queue,
            expires_in=None,
            detail=why,
            call_id=row["id"],
        )

    def by_person(self, item_id: str, by: str, happened: bool, note: str | None) -> None:
        """A person settles a ``settle`` item: it happened (the call is done) or it did not
        (its next repeat runs it, once)."""
        if not isinstance(happened, bool):
            raise InvalidRequest("happened must be true or false")
        with self.store.write() as tx:
            item = load(tx, item_id)
            if item["kind"] != "settle":
                raise InvalidRequest(
                    f"item {item_id} is not a call to settle (it is {item['kind']})"
                )
            open_for_decision(item, by)
            row = self.calls.get(tx, item["call_id"])
            if row is None:
                raise NotFound(f"item {item_id}'s call is no longer kept")
            if row["status"] == "unknown":
                self.calls.settle(tx, row, happened, None, None, None, self.gate.max_args_bytes)
            update(
                tx,
                item_id,
                status="done",
                decided_by=by,
                decided_at=_clock.now(),
                note=note,
                result=orjson.dumps({"happened": happened}).decode(),
            )
            log(tx, "review.settle", item, by=by, happened=happened, note=note, call_id=row["id"])
            tx.wake(row["id"])

    def sweep(self, tx: WriteTx, now: float) -> list[str]:
        """Lapsed leases make calls unknown; unknown calls nobody settled within a grace
        period (a lease's length) go to a person."""
        changed, unknown = self.calls.sweep(tx, now)
        grace = now - self.calls.lease_seconds
        for row in unknown:
            if row["updated_at"] >= grace:
                continue
            pending = tx.sql(
                "SELECT 1 FROM proctor_review_items WHERE call_id = ? AND kind = 'settle'"
                " AND status = 'pending'",
                (row["id"],),
            ).fetchone()
            if pending is None:
                self.escalate(tx, row, "no lookup settled it in time: a person must")
                changed.append(row["id"])
        return changed

"""Calls with an identity: a repeat of a completed call returns its recorded result.

An identity is scoped to (agent, tool): a framework's tool-call id, a business key, or the
values of named arguments. Only calls that carry one get a row; every step of a call's
life happens in the same transaction as the log record that says so.

    decided    decided but not claimed (its run was held): a repeat decides again
    executing  claimed under a lease: a repeat waits; a lapsed lease makes it unknown
    done       its outcome is recorded: a repeat returns the recorded result, never runs
    failed     it raised an error known not to have committed: a repeat runs again
    unknown    it may or may not have happened: a repeat reconciles, never runs blind
    pending    waiting on its review item: a repeat waits on that same item
    denied     the policy refused it: a repeat is decided again

The same identity with other arguments is refused, naming both digests.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from .. import _clock
from .._errors import Conflict, Forbidden
from .._jcs import decode
from .._values import storable_json
from .._values import text as storable_text
from ..store import WriteTx
from ..telemetry import webhooks
from .leases import certainly_dead, token_hash

DEFAULT_RETENTION = 7 * 86400.0
MAX_KEY = 200
FORGET_CHUNK = 10_000  # rows one sweep forgets at most, so a sweep stays short
_COLUMNS = (
    "n, id, agent, tool, key, args_digest, status, attempts, decision_id, decision_seq, item_id,"
    " result, result_error, claim_token, claim_owner, lease_expires_at, retried, seqs,"
    " created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class CallRef:
    """What a caller brings to a call with an identity: the key and a claim of its own."""

    key: str
    token: str  # the caller's secret for this attempt; only its SHA-256 is stored
    owner: str  # who runs it (host:pid:...), for people and the dead-runner shortcut


@dataclass(frozen=True, slots=True)
class CallState:
    """Where a call with an identity stands, as the decision reports it."""

    id: str
    key: str
    status: str  # claimed | done | failed | busy | unknown | pending | held | denied | conflict
    result: Any = None  # the recorded result of a done call (as stored JSON)
    error: str | None = None  # the recorded error of a failed or unknown call
    lease_seconds: float = 0.0
    retry: bool = False  # this run is the one retry a "not committed" answer allowed
    seqs: tuple[int, ...] = ()
    item_id: str | None = None  # a review item about the call: its approval, or a settle item


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a tool's lookup found about a call that may or may not have happened."""

    answer: str  # committed | not_committed | conflicting | unavailable
    result: Any = None  # what the committed call returned, as the lookup sees it
    evidence: str | None = None  # what the lookup saw, for the log and a person
    token: str | None = None  # the caller's claim on the one retry "not committed" allows
    owner: str | None = None


SETTLEMENTS = ("committed", "not_committed", "conflicting", "unavailable")


@dataclass(frozen=True, slots=True)
class UnknownCall:
    """An unknown call as a scheduled reconciliation sees it."""

    id: str
    agent: str
    tool: str
    key: str
    args: dict[str, Any]  # as its decision recorded them (masked where the policy masks)
    decision_id: str | None
    decision_seq: int | None


def _row(cur: Any) -> dict[str, Any] | None:
    found = cur.fetchone()
    if found is None:
        return None
    return dict(zip([d[0] for d in cur.description], found, strict=True))


def _seqs(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s)


def _json_text(text: str | None) -> Any:
    import orjson

    return orjson.loads(text) if text else None


class Calls:
    def __init__(self, lease_seconds: float, retention: float = DEFAULT_RETENTION) -> None:
        self.lease_seconds = lease_seconds
        self.retention = retention

    # -- reading ---------------------------------------------------------------------

    def find(self, tx: WriteTx, agent: str, tool: str, key: str) -> dict[str, Any] | None:
        return self.get(tx, call_id_of(agent, tool, key))

    def unknown(self, tx: WriteTx, agent: str | None, tool: str, limit: int) -> list[UnknownCall]:
        """Unknown calls of ``tool`` (of ``agent``, or any), oldest first, each with the
        arguments its decision recorded (masked where the policy masks them). Read where
        the sweeper looks (rows since its mark, and those it listed): never the table."""
        row = tx.sql("SELECT mark FROM proctor_sweep_marks WHERE name = 'calls'").fetchone()
        mark = int(row[0]) if row is not None else 0
        of_agent = " AND agent = ?" if agent is not None else ""
        found = _rows(
            tx.sql(
                f"SELECT {_COLUMNS} FROM proctor_calls WHERE status = 'unknown' AND tool = ?"
                f"{of_agent} AND (n >= ? OR n IN (SELECT n FROM proctor_calls_open))"
                " ORDER BY n LIMIT ?",
                (tool, *((agent,) if agent is not None else ()), mark, limit),
            )
        )
        for call in found:
            rec = tx.sql(
                "SELECT record FROM proctor_audit_log WHERE seq = ?", (call["decision_seq"],)
            ).fetchone()
            record = decode(rec[0]) if rec is not None else {}
            call["args"] = record.get("action", {}).get("args", {})
        return [
            UnknownCall(
                c["id"],
                c["agent"],
                c["tool"],
                c["key"],
                c["args"],
                c["decision_id"],
                c["decision_seq"],
            )
            for c in found
        ]

    def get(self, tx: WriteTx, call_id: str) -> dict[str, Any] | None:
        return _row(tx.sql(f"SELECT {_COLUMNS} FROM proctor_calls WHERE id = ?", (call_id,)))

    def lapsed(self, row: dict[str, Any], now: float) -> str | None:
        """Why a claimed call's runner can no longer be trusted to finish, if it can't."""
        expires = row.get("lease_expires_at") or 0.0
        if expires < now:
            return f"its lease expired {now - expires:.1f} s ago"
        if certainly_dead(row.get("claim_owner")):
            return "its runner's process is gone"
        return None

    # -- deciding --------------------------------------------------------------------

    def repeat(
        self, tx: WriteTx, row: dict[str, Any], digest: str, ref: CallRef
    ) -> CallState | None:
        """A call with this identity was seen before: what this repeat gets, or None when
        it is to be decided again (it failed, was refused, or was held before a claim)."""
        if row["args_digest"] != digest:
            raise Conflict(
                f"call {row['key']!r} of {row['agent']}'s {row['tool']} was made with other"
                f" arguments (digest {row['args_digest']}); these have digest {digest}"
            )
        status = row["status"]
        if status == "executing" and row["claim_token"] == token_hash(ref.token):
            return self._state(row, "claimed")  # our own claim, asked again (a retry)
        if status == "executing":
            why = self.lapsed(row, _clock.now())
            if why is None:
                return self._state(row, "busy")
            self.to_unknown(tx, row, why)
            return self._state(row, "unknown")
        if status in ("done", "unknown", "pending"):
            return self._state(row, status)
        return None

    def record(
        self,
        tx: WriteTx,
        row: dict[str, Any] | None,
        agent: str,
        tool: str,
        digest: str,
        ref: CallRef,
        status: str,
        decision_id: str,
        decision_seq: int,
        item_id: str | None,
    ) -> CallState:
        """Record the decision on the call (a new row, or the row of a call decided again):
        an allowed call is claimed by its caller at once, under a lease."""
        now = _clock.now()
        claimed = status == "claimed"
        stored = "executing" if claimed else status
        token = token_hash(ref.token) if claimed else None
        lease = now + self.lease_seconds if claimed else None
        if row is None:
            call_id = call_id_of(agent, tool, ref.key)
            tx.sql(
                "INSERT INTO proctor_calls (id, agent, tool, key, args_digest, status, attempts,"
                " decision_id, decision_seq, item_id, claim_token, claim_owner, lease_expires_at,"
                " seqs, created_at, updated_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id,
                    agent,
                    tool,
                    ref.key,
                    digest,
                    stored,
                    1 if claimed else 0,
                    decision_id,
                    decision_seq,
                    item_id,
                    token,
                    ref.owner[:200] if claimed else None,
                    lease,
                    str(decision_seq),
                    now,
                    now,
                    now + self.retention,
                ),
            )
            return CallState(call_id, ref.key, status, lease_seconds=self.lease_seconds)
        tx.sql(
            "UPDATE proctor_calls SET status = ?, attempts = attempts + ?, decision_id = ?,"
            " decision_seq = ?, item_id = ?, claim_token = ?, claim_owner = ?,"
            " lease_expires_at = ?, result = NULL, result_error = NULL, seqs = ?,"
            " updated_at = ?, expires_at = ?"
            " WHERE id = ?",
            (
                stored,
                1 if claimed else 0,
                decision_id,
                decision_seq,
                item_id,
                token,
                ref.owner[:200] if claimed else None,
                lease,
                _append(row["seqs"], decision_seq),
                now,
                now + self.retention,
                row["id"],
            ),
        )
        if claimed:  # in flight again, perhaps behind the sweeper's mark
            _reopen(tx, row["n"])
        return CallState(row["id"], ref.key, status, lease_seconds=self.lease_seconds)

    # -- running ---------------------------------------------------------------------

    def renew(self, tx: WriteTx, call_id: str, token: str) -> bool:
        cur = tx.sql(
            "UPDATE proctor_calls SET lease_expires_at = ?"
            " WHERE id = ? AND status = 'executing' AND claim_token = ?",
            (_clock.now() + self.lease_seconds, call_id, token_hash(token)),
        )
        return bool(cur.rowcount == 1)

    def finish(
        self,
        tx: WriteTx,
        call_id: str,
        token: str | None,
        status: str,
        result: Any,
        error: str | None,
        max_bytes: int,
        seq: int,
    ) -> bool:
        """Record how the call ended (``done``, ``failed`` or ``unknown``), and that record
        ``seq`` says so. Only its claim's holder may; False when this holder's outcome is
        already recorded (a retried write whose first attempt committed), and nothing more
        is to be written."""
        text = None
        if status == "done":
            data = storable_json(result)
            text = data.decode() if len(data) <= max_bytes else '{"_omitted":"too large"}'
        # One guarded statement on the common path: it finishes only the token's own claim.
        done = tx.sql(
            "UPDATE proctor_calls SET status = ?, result = ?, result_error = ?,"
            " lease_expires_at = NULL, updated_at = ?,"
            " seqs = CASE WHEN seqs = '' THEN ? ELSE seqs || ',' || ? END"
            " WHERE id = ? AND claim_token = ? AND (status = 'executing'"
            " OR (status = 'unknown' AND ? <> 'unknown'))",
            (
                status,
                text,
                storable_text(error)[:1000] if error else None,
                _clock.now(),
                str(seq),
                str(seq),
                call_id,
                token_hash(token) if token is not None else "",
                status,
            ),
        )
        if done.rowcount == 1:
            if status == "unknown":  # rare: only then is the row read again
                found = self.get(tx, call_id)
                assert found is not None
                why = "it failed in a way that may have committed: " + (error or "an error")
                webhooks.on_call_unknown(tx, found, storable_text(why)[:1000])
            return True
        row = self.get(tx, call_id)  # why not: say so
        if row is None or token is None or row["claim_token"] != token_hash(token):
            raise Forbidden(
                f"only the runner holding call {call_id}'s claim may record its outcome"
            )
        if row["status"] in ("done", "failed", "unknown"):
            return False  # this holder's outcome is recorded already
        raise Conflict(f"call {call_id} is {row['status']}: no outcome can be recorded")

    def add_seq(self, tx: WriteTx, call_id: str, seq: int) -> None:
        tx.sql(
            "UPDATE proctor_calls SET seqs = CASE WHEN seqs = '' THEN ? ELSE seqs || ',' || ? END"
            " WHERE id = ?",
            (str(seq), str(seq), call_id),
        )

    def to_unknown(self, tx: WriteTx, row: dict[str, Any], why: str) -> None:
        """A claimed call whose runner went silent: it may or may not have happened."""
        now = _clock.now()
        tx.sql(
            "UPDATE proctor_calls SET status = 'unknown', result_error = ?, updated_at = ?"
            " WHERE id = ?",
            (f"the runner stopped answering: {why}", now, row["id"]),
        )
        row["updated_at"] = now
        rec = tx.append(
            "call.unknown",
            {"call_id": row["id"], "key": row["key"], "why": why, "owner": row["claim_owner"]},
            agent=row["agent"],
            tool=row["tool"],
        )
        self.add_seq(tx, row["id"], rec.seq)
        row["status"] = "unknown"
        webhooks.on_call_unknown(tx, row, f"the runner stopped answering: {why}", rec)

    def settle(
        self,
        tx: WriteTx,
        row: dict[str, Any],
        committed: bool,
        result: Any,
        token: str | None,
        owner: str | None,
        max_bytes: int,
    ) -> CallState:
        """An unknown call settled (by its tool's lookup or a person): committed closes it
        with ``result``; not committed allows exactly one more run, claimed by ``token``."""
        now = _clock.now()
        if committed:
            data = storable_json(result)
            tx.sql(
                "UPDATE proctor_calls SET status = 'done', result = ?, result_error = NULL,"
                " claim_token = NULL, updated_at = ? WHERE id = ?",
                (data.decode() if len(data) <= max_bytes else None, now, row["id"]),
            )
            return CallState(row["id"], row["key"], "done", result=result)
        if token is None:  # a person said so: the next repeat runs it once
            tx.sql(
                "UPDATE proctor_calls SET status = 'failed', retried = ?, claim_token = NULL,"
                " result_error = ?, updated_at = ? WHERE id = ?",
                (False, "settled: it did not happen", now, row["id"]),
            )
            return CallState(row["id"], row["key"], "failed")
        tx.sql(
            "UPDATE proctor_calls SET status = 'executing', retried = ?, attempts = attempts + 1,"
            " claim_token = ?, claim_owner = ?, lease_expires_at = ?, result_error = NULL,"
            " updated_at = ? WHERE id = ?",
            (
                True,
                token_hash(token),
                (owner or "")[:200],
                now + self.lease_seconds,
                now,
                row["id"],
            ),
        )
        return CallState(
            row["id"], row["key"], "claimed", lease_seconds=self.lease_seconds, retry=True
        )

    def _state(self, row: dict[str, Any], status: str) -> CallState:
        return CallState(
            row["id"],
            row["key"],
            status,
            result=_json_text(row["result"]) if status == "done" else None,
            error=row["result_error"],
            lease_seconds=self.lease_seconds,
            seqs=_seqs(row["seqs"]),
        )

    # -- sweeping --------------------------------------------------------------------

    def sweep(self, tx: WriteTx, now: float) -> tuple[list[str], list[dict[str, Any]]]:
        """Lapsed leases become unknown; calls past their retention are forgotten (never
        one that is running, unknown or waiting for a review). Returns the ids it changed
        and the calls left unknown.

        Only rows decided since the last sweep, and the in-flight ones it has passed, are
        read: what a sweep costs follows the traffic since the last one, not the table."""
        row = tx.sql("SELECT mark FROM proctor_sweep_marks WHERE name = 'calls'").fetchone()
        mark = int(row[0]) if row is not None else 0
        top = tx.sql("SELECT MAX(n) FROM proctor_calls").fetchone()[0]
        in_flight = "status IN ('executing', 'unknown')"
        rows = _rows(
            tx.sql(f"SELECT {_COLUMNS} FROM proctor_calls WHERE n >= ? AND {in_flight}", (mark,))
        ) + _rows(
            tx.sql(
                f"SELECT {_COLUMNS} FROM proctor_calls WHERE n < ? AND {in_flight}"
                " AND n IN (SELECT n FROM proctor_calls_open)",
                (mark,),
            )
        )
        changed = []
        for call in rows:
            if call["status"] != "executing":
                continue
            why = self.lapsed(call, now)
            if why is not None:
                self.to_unknown(tx, call, why)
                changed.append(call["id"])
        new_mark = int(top) + 1 if top is not None else mark
        # The sweeper's own list of what it passed and must see again.
        kept = {int(call["n"]) for call in rows}
        listed = {int(n) for (n,) in tx.sql("SELECT n FROM proctor_calls_open").fetchall()}
        for n in listed - kept:
            tx.sql("DELETE FROM proctor_calls_open WHERE n = ?", (n,))
        for n in sorted(kept - listed):
            if n < new_mark:
                _reopen(tx, n)
        if row is None:
            tx.sql("INSERT INTO proctor_sweep_marks (name, mark) VALUES ('calls', ?)", (new_mark,))
        elif new_mark != mark:
            tx.sql("UPDATE proctor_sweep_marks SET mark = ? WHERE name = 'calls'", (new_mark,))
        self._forget_expired(tx, now, top)
        return changed, [call for call in rows if call["status"] == "unknown"]

    def _forget_expired(self, tx: WriteTx, now: float, top: int | None) -> None:
        """Rows are in the order calls were first decided: the expired ones are at the
        front, so the walk stops at the first call still within its retention. The newest
        row is always kept, so row numbers never start again below the mark."""
        if top is None:
            return
        first_kept = tx.sql(
            "SELECT n FROM proctor_calls WHERE created_at >= ? ORDER BY n LIMIT 1",
            (now - self.retention,),
        ).fetchone()
        bound = min(int(first_kept[0]) if first_kept is not None else int(top), int(top))
        tx.sql(
            "DELETE FROM proctor_calls WHERE n IN (SELECT n FROM proctor_calls WHERE n < ?"
            " AND expires_at < ? AND status IN ('done', 'failed', 'denied', 'decided')"
            " ORDER BY n LIMIT ?)",
            (bound, now, FORGET_CHUNK),
        )


def _rows(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, found, strict=True)) for found in cur.fetchall()]


def _reopen(tx: WriteTx, n: int) -> None:
    tx.sql("INSERT INTO proctor_calls_open (n) VALUES (?) ON CONFLICT DO NOTHING", (n,))


@functools.lru_cache(maxsize=4096)
def call_id_of(agent: str, tool: str, key: str) -> str:
    """A call's id: a digest of its identity, so finding it needs no index but the key."""
    return hashlib.sha256(f"{agent}\x00{tool}\x00{key}".encode()).hexdigest()[:32]


def _append(seqs: str, seq: int) -> str:
    return f"{seqs},{seq}" if seqs else str(seq)

"""Reviewer decisions and the grants that let an approved action run exactly once.

Every change happens inside one write transaction that also appends its audit record,
and those transactions hold the audit chain's lock: two reviewers deciding the same item
are serialized, the second sees the first's decision and gets ``Conflict``.

Item life: pending -> approved -> executing -> done | failed
                   -> rejected | expired            executing -> in_doubt (its runner died)
An escalation moves a pending item to another queue; it stays pending.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .._errors import Conflict, Forbidden, InvalidRequest, NotFound
from .._settings import setting
from .._values import storable_json
from .._values import text as storable_text
from ..audit.chain import canonical
from ..controls import load as load_controls
from ..policy import Action, CompiledPolicy, evaluate
from ..store import WriteTx
from ..telemetry.notifications import enqueue
from .params import check_edit

if TYPE_CHECKING:
    from ..gate import Gate

DEFAULT_GRANT_TTL = 24 * 3600.0
SYSTEM = "proctor"


def owner_id() -> str:
    """host:pid:start-time:nonce of one claim attempt in this process.

    The first three let a later reader tell whether the runner died; the nonce makes two
    claims from one process distinct, and lets a retried request recognise its own claim.
    """
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}:{os.urandom(4).hex()}"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def owner_alive(owner: str | None) -> bool:
    """False only when the owner certainly died (same host, pid gone or reused)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    ticks = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another host: cannot tell, so do not guess
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return ticks == "?" or _start_ticks(pid) == ticks


@dataclass(frozen=True)
class Claim:
    """What ``claim`` found: run it now, someone else is, or it already ran."""

    state: str  # claimed | busy | done | failed | pending | rejected | expired | in_doubt
    item: dict[str, Any]


def load(tx: WriteTx, item_id: str) -> dict[str, Any]:
    cur = tx.sql("SELECT * FROM proctor_review_items WHERE id = ?", (item_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"no review item {item_id!r}")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


class ReviewService:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.store = gate.store

    # -- helpers -----------------------------------------------------------------------

    def _update(self, tx: WriteTx, item_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        tx.sql(f"UPDATE proctor_review_items SET {cols} WHERE id = ?", (*fields.values(), item_id))

    def _log(self, tx: WriteTx, kind: str, item: dict[str, Any], **body: Any) -> None:
        tx.append(
            kind,
            {"item_id": item["id"], "queue": item["queue"], **body},
            agent=item["agent"],
            tool=item["tool"],
        )
        tx.wake(item["id"])

    @staticmethod
    def _open_for_decision(item: dict[str, Any], by: str, *, allow_in_doubt: bool = False) -> None:
        if not by or not isinstance(by, str):
            raise InvalidRequest("a decision needs the reviewer's name (by=)")
        ok = ("pending", "in_doubt") if allow_in_doubt else ("pending",)
        if item["status"] not in ok:
            raise Conflict(f"item {item['id']} is already {item['status']}")
        if by == item["agent"]:
            raise Forbidden(f"agent '{by}' cannot decide a review of its own action")

    def _policy(self, tx: WriteTx) -> CompiledPolicy | None:
        return self.gate.policy_for(tx)

    def _grant(
        self, tx: WriteTx, item: dict[str, Any], by: str, final_args: Any, **extra: Any
    ) -> None:
        policy = self._policy(tx)
        ttl = policy.document.defaults.grant_ttl if policy is not None else DEFAULT_GRANT_TTL
        digest = (
            hashlib.sha256(canonical(final_args)).hexdigest() if final_args is not None else None
        )
        now = time.time()
        self._update(
            tx,
            item["id"],
            status="approved",
            decided_by=by,
            decided_at=now,
            grant_digest=digest,
            grant_policy_version=item["policy_version"],
            grant_expires_at=now + ttl,
            claim_owner=None,
            claimed_at=None,
            **extra,
        )

    def _reevaluate(
        self, tx: WriteTx, item: dict[str, Any], tool: str, args: dict[str, Any], what: str
    ) -> str | None:
        """An edit or a choice can never approve what the policy denies."""
        policy = self._policy(tx)
        if policy is None:
            raise Forbidden(f"no policy is active: the {what} cannot be checked, so it is refused")
        meta = _json(item["params"]) or {}
        action = Action(
            item["agent"],
            tool,
            args,
            _json(item["context"]) or {},
            bool(meta.get("reversible", True)),
            tuple(meta.get("reads", ())),
        )
        decision = evaluate(policy, action)
        if decision.decision == "deny":
            raise Forbidden(f"the policy denies the {what}: {decision.reason}")
        return policy.version

    # -- reviewer decisions ------------------------------------------------------------

    def approve(self, item_id: str, by: str, note: str | None = None) -> None:
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by, allow_in_doubt=True)
            if item["kind"] == "choice":
                raise InvalidRequest("a choice item is decided by choosing one of its options")
            if item["status"] == "in_doubt":  # a human explicitly allows one more run
                self._grant(tx, item, by, _json(item["exec_args"]), note=note)
                self._log(tx, "review.approve", item, by=by, note=note, rerun_in_doubt=True)
                return
            votes = self._vote(tx, item, by, "approve", note)
            granted = votes >= item["quorum"]
            if granted:
                final = _json(item["edited_args"]) or _json(item["exec_args"])
                self._grant(tx, item, by, final, note=note)
            self._log(
                tx,
                "review.approve",
                item,
                by=by,
                note=note,
                votes=votes,
                quorum=item["quorum"],
                granted=granted,
            )

    def _vote(self, tx: WriteTx, item: dict[str, Any], by: str, vote: str, note: str | None) -> int:
        seen = tx.sql(
            "SELECT vote FROM proctor_review_votes WHERE item_id = ? AND reviewer = ?",
            (item["id"], by),
        ).fetchone()
        if seen is not None:
            raise Conflict(f"{by} already voted on item {item['id']}: one reviewer counts once")
        tx.sql(
            "INSERT INTO proctor_review_votes (item_id, reviewer, vote, note, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (item["id"], by, vote, note, time.time()),
        )
        row = tx.sql(
            "SELECT COUNT(*) FROM proctor_review_votes WHERE item_id = ? AND vote = ?",
            (item["id"], "approve"),
        ).fetchone()
        return int(row[0])

    def reject(self, item_id: str, by: str, reason: str) -> None:
        if not reason or not str(reason).strip():
            raise InvalidRequest("a rejection needs a reason: the agent receives it")
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by, allow_in_doubt=True)
            self._update(
                tx, item_id, status="rejected", decided_by=by, decided_at=time.time(), note=reason
            )
            self._log(tx, "review.reject", item, by=by, reason=reason)

    def edit(
        self, item_id: str, by: str, args: dict[str, Any], note: str | None = None
    ) -> dict[str, Any]:
        """Approve with changed arguments; returns the diff ``{name: [old, new]}``."""
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by)
            if item["kind"] not in ("approval", "exception"):
                raise InvalidRequest(f"a {item['kind']} item has no arguments to edit")
            meta = _json(item["params"])
            check_edit(meta, args)
            base = _json(item["exec_args"]) or _json(item["args"]) or {}
            merged = {**base, **args}
            diff = {k: [base.get(k), v] for k, v in args.items() if base.get(k) != v}
            if not diff:
                raise InvalidRequest("the edit changes nothing; approve the item instead")
            version = self._reevaluate(tx, item, item["tool"], merged, "edited action")
            edits = {**(_json(item["edited_args"]) or {}), **args}
            votes = self._vote(tx, item, by, "approve", note)
            final = {**(_json(item["exec_args"]) or {}), **edits} if item["exec_args"] else None
            fields: dict[str, Any] = {"edited_args": canonical(edits).decode()}
            if votes >= item["quorum"]:
                self._grant(tx, item, by, final, note=note, **fields)
            else:
                self._update(tx, item_id, **fields)
            self._log(
                tx,
                "review.edit",
                item,
                by=by,
                note=note,
                diff=diff,
                policy_version=version,
                granted=votes >= item["quorum"],
            )
            return diff

    def escalate(self, item_id: str, by: str, to: str, note: str | None = None) -> None:
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by)
            self._move(tx, item, to, by, note)

    def _move(self, tx: WriteTx, item: dict[str, Any], to: str, by: str, note: str | None) -> None:
        policy = self._policy(tx)
        queues = policy.queues if policy is not None else {}
        if to not in queues:
            known = ", ".join(sorted(queues)) or "none"
            raise InvalidRequest(f"unknown queue '{to}' (queues: {known})")
        if to == item["queue"]:
            raise InvalidRequest(f"item {item['id']} is already in queue '{to}'")
        q = queues[to]
        now = time.time()
        assert policy is not None
        timeout = q.review_timeout or policy.document.defaults.review_timeout
        self._update(
            tx,
            item["id"],
            queue=to,
            escalated_from=item["queue"],
            note=note,
            sla_due=now + q.sla if q.sla else None,
            quorum=q.quorum,
            expires_at=now + timeout,
        )
        self._log(tx, "review.escalate", item, by=by, to=to, note=note)

    def choose(self, item_id: str, by: str, option: int, note: str | None = None) -> None:
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by)
            if item["kind"] != "choice":
                raise InvalidRequest(f"item {item_id} is not a choice item (it is {item['kind']})")
            options = _json(item["options"]) or []
            if (
                isinstance(option, bool)
                or not isinstance(option, int)
                or not 0 <= option < len(options)
            ):
                raise InvalidRequest(f"option must be a number from 0 to {len(options) - 1}")
            picked = options[option]
            self._reevaluate(tx, item, picked["tool"], picked["args"], "chosen option")
            self._grant(tx, item, by, picked.get("exec_args"), chosen=option, note=note)
            self._log(
                tx, "review.choose", item, by=by, option=option, tool=picked["tool"], note=note
            )

    # -- expiry ------------------------------------------------------------------------

    def sweep(self, now: float | None = None, item_id: str | None = None) -> list[str]:
        """Expire or escalate items past their review timeout; flag dead runners in_doubt."""
        now = time.time() if now is None else now
        changed: list[str] = []
        with self.store.write() as tx:
            where = "status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ?"
            params: tuple[Any, ...] = (now,)
            if item_id is not None:
                where += " AND id = ?"
                params = (now, item_id)
            ids = [
                r[0]
                for r in tx.sql(
                    f"SELECT id FROM proctor_review_items WHERE {where}", params
                ).fetchall()
            ]
            policy = self._policy(tx)
            for iid in ids:
                item = load(tx, iid)
                q = policy.queues.get(item["queue"]) if policy is not None else None
                on_timeout = (
                    q.on_timeout
                    if q and q.on_timeout
                    else policy.document.defaults.on_timeout
                    if policy
                    else "deny"
                )
                target = q.escalate_to if q is not None else None
                if on_timeout == "escalate" and target and policy is not None:
                    self._move(tx, item, target, SYSTEM, "review timeout passed")
                else:
                    self._update(tx, iid, status="expired", decided_by=SYSTEM, decided_at=now)
                    self._log(tx, "review.expire", item, by=SYSTEM, on_timeout=on_timeout)
                changed.append(iid)
            for iid, owner in tx.sql(
                "SELECT id, claim_owner FROM proctor_review_items WHERE status = 'executing'"
            ).fetchall():
                if (item_id is None or iid == item_id) and not owner_alive(owner):
                    item = load(tx, iid)
                    self._update(tx, iid, status="in_doubt")
                    self._log(tx, "grant.in_doubt", item, owner=owner)
                    changed.append(iid)
            for (iid,) in tx.sql(
                "SELECT id FROM proctor_review_items WHERE status = 'pending'"
                " AND sla_due IS NOT NULL AND sla_due <= ?"
                " AND (sla_breached_at IS NULL OR sla_breached_at < sla_due)",
                (now,),
            ).fetchall():
                if item_id is None or iid == item_id:
                    self._breach(tx, load(tx, iid), policy, now)
                    changed.append(iid)
        return changed

    def _breach(
        self, tx: WriteTx, item: dict[str, Any], policy: CompiledPolicy | None, now: float
    ) -> None:
        """An item past its SLA: its queue's owners are told and it moves up to the queue's
        ``escalate_to`` (where a new SLA starts). Once per queue it waits in."""
        q = policy.queues.get(item["queue"]) if policy is not None else None
        owners = list(q.owners) if q is not None else []
        target = q.escalate_to if q is not None else None
        overdue = now - item["sla_due"]
        self._log(
            tx,
            "review.sla_breach",
            item,
            owners=owners,
            escalate_to=target,
            overdue_s=round(overdue, 3),
        )
        if policy is not None and owners:
            link = setting("public_url").rstrip("/")
            enqueue(
                tx,
                source=f"sla:{item['id']}",
                names=owners,
                targets=dict(policy.document.notify),
                severity="warning",
                title=f"[SLA] a review in queue '{item['queue']}' is past its SLA",
                body=(
                    f"{item['agent']} wants to call {item['tool']}; the item has waited"
                    f" {_age(now - item['created_at'])} ({_age(overdue)} past its SLA)."
                    + (f"\nIt moves to queue '{target}'." if target else "")
                    + f"\nitem: {item['id']}"
                    + (f"\n{link}/items/{item['id']}" if link else "")
                ),
            )
        if target is not None and target != item["queue"] and policy is not None:
            self._move(tx, item, target, SYSTEM, "SLA breached")
        self._update(tx, item["id"], sla_breached_at=now)

    # -- grants ------------------------------------------------------------------------

    def claim(self, item_id: str, original_digest: str | None, owner: str | None = None) -> Claim:
        """Atomically take the right to run an approved action, or learn why not.

        ``owner`` identifies the claiming attempt (see ``owner_id``); the same owner asking
        again (a retried request) gets its claim back instead of waiting on itself.
        """
        owner = owner or owner_id()
        with self.store.write() as tx:
            item = load(tx, item_id)
            status = item["status"]
            if status == "executing" and item["claim_owner"] == owner:
                return Claim("claimed", item)
            if status == "executing" and not owner_alive(item["claim_owner"]):
                self._update(tx, item_id, status="in_doubt")
                self._log(tx, "grant.in_doubt", item, owner=item["claim_owner"])
                return Claim("in_doubt", item)
            if status == "executing":
                return Claim("busy", item)
            if status != "approved":
                return Claim(status, item)
            if load_controls(tx).kill_reason(item["agent"]) is not None:
                return Claim("frozen", item)  # a stopped agent's grants wait for a revive
            if item["grant_expires_at"] is not None and item["grant_expires_at"] < time.time():
                self._update(tx, item_id, status="expired")
                self._log(tx, "grant.expire", item)
                return Claim("expired", item)
            if (
                original_digest is not None
                and item["kind"] != "choice"
                and (original_digest != item["args_digest"])
            ):
                raise Forbidden("these arguments are not the ones that were approved")
            self._update(tx, item_id, status="executing", claim_owner=owner, claimed_at=time.time())
            self._log(tx, "grant.claim", item, owner=owner, grant_digest=item["grant_digest"])
            item["status"] = "executing"
            return Claim("claimed", item)

    def finish(self, tx: WriteTx, item_id: str, result: Any, error: BaseException | None) -> None:
        """Record the outcome on the item, in the transaction that records the outcome."""
        if error is None:
            data = storable_json(result)  # it has happened: stored whatever it holds
            text = (
                data.decode()
                if len(data) <= self.gate.max_args_bytes
                else canonical({"_omitted": f"{len(data)} bytes"}).decode()
            )
            self._update(tx, item_id, status="done", result=text)
        else:
            kind = getattr(error, "error_type", None) or type(error).__name__  # remote reports
            message = storable_text(f"{kind}: {error}")[:1000]
            self._update(tx, item_id, status="failed", result_error=message)
        tx.wake(item_id)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

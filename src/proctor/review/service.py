"""Reviewer decisions and the grants that let an approved action run exactly once.

Every change happens inside one write transaction that also appends its audit record,
and those transactions hold the audit chain's lock: two reviewers deciding the same item
are serialized, the second sees the first's decision and gets ``Conflict``.

Item life: pending -> approved -> executing -> done | failed
                   -> rejected | expired            executing -> in_doubt (its lease lapsed)
An escalation moves a pending item to another queue; it stays pending. Claims, leases and
outcomes of approved items live in ``grants``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson

from .. import _clock
from .._canonical import canonical
from .._errors import Conflict, Forbidden, InvalidRequest
from .._settings import setting
from ..execution import breakers
from ..execution.leases import DEFAULT_LEASE_SECONDS
from ..policy import Action, CompiledPolicy, Decision
from ..store import WriteTx
from ..telemetry.notifications import enqueue
from .grants import Claim, Grants
from .params import check_edit
from .rows import load, log, open_for_decision, update
from .settling import Settling

if TYPE_CHECKING:
    from ..gate import Gate

DEFAULT_GRANT_TTL = 24 * 3600.0
SYSTEM = "proctor"


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text else None


class ReviewService:
    def __init__(self, gate: Gate, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.gate = gate
        self.store = gate.store
        self.grants = Grants(gate.store, lease_seconds)
        self.settling = Settling(gate)

    # -- helpers -----------------------------------------------------------------------

    _update = staticmethod(update)
    _log = staticmethod(log)

    _open_for_decision = staticmethod(open_for_decision)

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
        now = _clock.now()
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
            claim_token=None,
            lease_expires_at=None,
            **extra,
        )

    def _judge(
        self, tx: WriteTx, item: dict[str, Any], tool: str, args: dict[str, Any], what: str
    ) -> Decision:
        """Judge an edit or a choice like a new action; the policy's deny is final."""
        meta = _json(item["params"]) or {}
        action = Action(
            item["agent"],
            tool,
            args,
            _json(item["context"]) or {},
            bool(meta.get("reversible", True)),
            tuple(meta.get("reads", ())),
        )
        decision = self.gate.judge(tx, action)
        if decision.decision == "deny":
            raise Forbidden(f"the policy denies the {what}: {decision.reason}")
        return decision

    # -- reviewer decisions ------------------------------------------------------------

    def approve(
        self, item_id: str, by: str, note: str | None = None, confirm_not_run: bool = False
    ) -> None:
        """One vote toward the quorum. An item in doubt may have run already: approving it
        again lets it run once more, so the reviewer must say they checked that it did not
        (``confirm_not_run``), and the log records that they did."""
        with self.store.write() as tx:
            item = load(tx, item_id)
            self._open_for_decision(item, by, allow_in_doubt=True)
            if item["kind"] == "choice" and item["status"] != "in_doubt":
                raise InvalidRequest("a choice item is decided by choosing one of its options")
            if item["status"] == "in_doubt":
                if confirm_not_run is not True:
                    raise InvalidRequest(
                        f"item {item_id} is in doubt: its first run may have happened."
                        " Approve it again only after checking that the effect did not happen,"
                        " and say so (API: confirm_not_run=true; CLI: --confirm-not-run;"
                        " console: the confirmation box)"
                    )
                final = (
                    _json(item["options"])[item["chosen"]].get("exec_args")
                    if item["kind"] == "choice"
                    else _json(item["edited_args"]) or _json(item["exec_args"])
                )
                self._grant(tx, item, by, final, note=note)
                self._log(
                    tx,
                    "review.approve",
                    item,
                    by=by,
                    note=note,
                    rerun_in_doubt=True,
                    confirmed_not_run=True,
                    previous_owner=item["claim_owner"],
                )
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
            (item["id"], by, vote, note, _clock.now()),
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
                tx, item_id, status="rejected", decided_by=by, decided_at=_clock.now(), note=reason
            )
            self._log(tx, "review.reject", item, by=by, reason=reason)

    def edit(
        self, item_id: str, by: str, args: dict[str, Any], note: str | None = None
    ) -> dict[str, Any]:
        """Approve with changed arguments; returns the diff ``{name: [old, new]}``.

        The edited action is judged like a new one: a deny refuses the edit; a review the
        policy routes elsewhere moves the item there, unapproved; otherwise the edit is
        this reviewer's approval.
        """
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
            decision = self._judge(tx, item, item["tool"], merged, "edited action")
            edits = {**(_json(item["edited_args"]) or {}), **args}
            fields: dict[str, Any] = {"edited_args": canonical(edits).decode()}
            if self._reroute(tx, item, decision, by, note, diff, fields):
                return diff
            votes = self._vote(tx, item, by, "approve", note)
            final = {**(_json(item["exec_args"]) or {}), **edits} if item["exec_args"] else None
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
                policy_version=decision.policy_version,
                granted=votes >= item["quorum"],
            )
            return diff

    def _reroute(
        self,
        tx: WriteTx,
        item: dict[str, Any],
        decision: Decision,
        by: str,
        note: str | None,
        diff: dict[str, Any],
        fields: dict[str, Any],
    ) -> bool:
        """An edited action the policy would send to review elsewhere (another queue, a
        stricter quorum, other rules) goes there as a new decision would: the edit is
        recorded, the item moves, and no approval given so far counts. True if it moved."""
        if decision.decision != "review":
            return False
        policy = self._policy(tx)
        assert policy is not None  # judged under it a moment ago
        target = decision.queue or "default"
        q = policy.queues.get(target)
        quorum = q.quorum if q is not None else 1
        same_rules = set(decision.rule_ids) == set(_json(item["rule_ids"]) or [])
        if target == item["queue"] and same_rules and quorum <= item["quorum"]:
            return False
        now = _clock.now()
        timeout = (
            q.review_timeout if q is not None and q.review_timeout else None
        ) or policy.document.defaults.review_timeout
        tx.sql("DELETE FROM proctor_review_votes WHERE item_id = ?", (item["id"],))
        self._update(
            tx,
            item["id"],
            queue=target,
            escalated_from=item["queue"] if target != item["queue"] else item["escalated_from"],
            rule_ids=orjson.dumps(list(decision.rule_ids)).decode(),
            reason=decision.reason,
            risk=decision.risk,
            policy_version=decision.policy_version,
            quorum=quorum,
            sla_due=now + q.sla if q is not None and q.sla else None,
            expires_at=now + timeout,
            note=note,
            **fields,
        )
        self._log(
            tx,
            "review.edit",
            item,
            by=by,
            note=note,
            diff=diff,
            policy_version=decision.policy_version,
            granted=False,
            rerouted_to=target,
            rules=list(decision.rule_ids),
        )
        if target != item["queue"]:
            self._log(
                tx,
                "review.escalate",
                item,
                by=by,
                to=target,
                note=f"the edited action needs a decision in '{target}': {decision.reason}",
                by_edit=True,
            )
        return True

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
        now = _clock.now()
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
            self._judge(tx, item, picked["tool"], picked["args"], "chosen option")
            self._grant(tx, item, by, picked.get("exec_args"), chosen=option, note=note)
            self._log(
                tx, "review.choose", item, by=by, option=option, tool=picked["tool"], note=note
            )

    def settle(self, item_id: str, by: str, happened: bool, note: str | None = None) -> None:
        """Settle a call that may or may not have happened: ``happened`` closes it, else its
        next repeat runs it once."""
        self.settling.by_person(item_id, by, happened, note)

    # -- expiry ------------------------------------------------------------------------

    def sweep(self, now: float | None = None, item_id: str | None = None) -> list[str]:
        """Expire or escalate items past their review timeout; move runs whose lease lapsed
        to in_doubt; tell and escalate past their SLA."""
        now = _clock.now() if now is None else now
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
            changed.extend(self.grants.expire_leases(tx, item_id, now))
            if item_id is None:
                changed.extend(self.settling.sweep(tx, now))
                if policy is not None and policy.healing:
                    changed.extend(self._escalate_breakers(tx, policy))
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

    def _escalate_breakers(self, tx: WriteTx, policy: CompiledPolicy) -> list[str]:
        """Breakers open longer than their tool's ``escalate.breaker_open_for``: each is
        put in front of a person once per opening, as an exception item."""
        bounds = {
            tool: h.escalate.breaker_open_for
            for tool, h in policy.healing.items()
            if h.escalate is not None and h.escalate.breaker_open_for is not None
        }
        if not bounds:
            return []
        opened: list[str] = []
        for found in breakers.overdue(tx, bounds):
            healing = policy.healing[found.tool]
            assert healing.escalate is not None
            queue = healing.escalate.queue or policy.document.defaults.queue or "default"
            why = (
                f"the circuit breaker for {found.tool} ({found.scope}) has been open for"
                f" {_clock.now() - (found.opened_at or 0):.0f}s: the tool keeps failing"
            )
            decision = Decision("review", (breakers.rule_id(found.tool),), why, policy.version)
            action = Action(found.agent, found.tool, {}, {})
            item_id = self.gate.open_item(
                tx,
                "exception",
                decision,
                action,
                decision_id="",
                decision_seq=0,
                run=None,
                stored=self.gate.stored(action, policy, "", 0),
                policy=policy,
                queue=queue,
                expires_in=None,
                detail=orjson.dumps(found.as_dict()).decode(),
            )
            breakers.mark_escalated(tx, found.scope)
            tx.append(
                "heal.escalate",
                {"review_item": item_id, "queue": queue, "why": why, "breaker": found.scope},
                agent=None if found.agent == "*" else found.agent,
                tool=found.tool,
            )
            opened.append(item_id)
        return opened

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

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> Claim:
        return self.grants.claim(item_id, original_digest, owner, token)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

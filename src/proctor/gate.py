"""The decision point: evaluate an action, record the decision durably, open review items.

Everything a decision needs from the database (chain head, active policy version) is read
inside the same write transaction that appends the record, so a decision is made under
exactly one policy version and is durable before the caller may run the tool.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from . import _clock
from ._canonical import canonical
from ._errors import Conflict, PolicyError, StoreError
from ._masking import mask
from ._values import omitted, problem, text
from .controls import Controls
from .controls import load as load_controls
from .execution import holds
from .execution.breakers import Breakers
from .execution.breakers import rule_id as breaker_rule
from .execution.calls import DEFAULT_RETENTION, CallRef, Calls, CallState
from .execution.leases import DEFAULT_LEASE_SECONDS
from .limits import check_and_count
from .policy import Action, CompiledPolicy, Decision, compile_policy, evaluate
from .policy.evaluate import refuse, sampled
from .policy.healing import CompiledHealing
from .runstate import RunState
from .store import Store, WriteTx

NO_POLICY = "no-policy"
KILL_SWITCH = "kill-switch"
STORE_UNAVAILABLE = "store-unavailable"
SERVER_UNREACHABLE = "server-unreachable"
PAYLOAD_TOO_LARGE = "payload-too-large"
INVALID_INPUT = "invalid-input"
RUN_REJECTED = "run-rejected"
RUN_HELD = "run-held"
CALL_REPEAT = "call-repeat"
CALL_CONFLICT = "call-conflict"
DEFAULT_REVIEW_TIMEOUT = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class StoredAction:
    """An action's arguments and context as stored, and whether ``args`` are exact."""

    args: dict[str, Any]
    context: dict[str, Any]
    digest: str
    masked: tuple[str, ...]
    exact: bool


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How a call with an identity ended, from the runner holding its claim."""

    id: str
    token: str
    result: Any = None
    ambiguous: bool = False  # the error may have committed: the call is unknown
    has_lookup: bool = False  # its tool can settle an unknown call itself


@dataclass(frozen=True, slots=True)
class Verdict:
    """A recorded decision, and where a review item was opened for it."""

    decision: Decision
    id: str | None  # the decision record's id; None when nothing could be recorded
    seq: int | None
    item_id: str | None = None
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT
    on_timeout: str = "deny"
    held_by: tuple[str, ...] = ()  # allowed, but pending approvals hold its run: wait, decide again
    call: CallState | None = None  # where a call with an identity stands
    # the tool's healing settings (retry, timeout, fallback, escalate) and, when it has a
    # fallback, the fallback call built from this call's arguments; None: no healing
    healing: dict[str, Any] | None = None


class Gate:
    """Shared by every tool of one Proctor instance; safe to call from many threads."""

    def __init__(
        self,
        store: Store,
        *,
        max_args_bytes: int = 1 << 20,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        call_retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.store = store
        self.max_args_bytes = max_args_bytes
        self.calls = Calls(lease_seconds, call_retention)
        self.breakers = Breakers()
        self._policies: dict[str, CompiledPolicy] = {}
        self._controls: tuple[int, Controls] | None = None
        self._policies_lock = threading.Lock()

    # -- policy ------------------------------------------------------------------------

    def controls_for(self, tx: WriteTx) -> Controls:
        """The agents' controls, reloaded only when their epoch moved."""
        cached = self._controls
        if cached is None or cached[0] != tx.controls_epoch:
            cached = self._controls = (tx.controls_epoch, load_controls(tx))
        return cached[1]

    def policy_for(self, tx: WriteTx) -> CompiledPolicy | None:
        return self.version_for(tx, tx.policy_version)

    def version_for(self, tx: WriteTx, version: str | None) -> CompiledPolicy | None:
        if version is None:
            return None
        policy = self._policies.get(version)
        if policy is None:
            row = tx.sql(
                "SELECT text FROM proctor_policies WHERE version = ?", (version,)
            ).fetchone()
            if row is None:
                raise PolicyError(f"the active policy version {version[:12]} is not stored")
            policy = compile_policy(row[0], f"policy {version[:12]}")
            with self._policies_lock:
                if len(self._policies) >= 8:
                    self._policies.clear()
                self._policies[version] = policy
        return policy

    # -- decisions ---------------------------------------------------------------------

    def decide(
        self,
        action: Action,
        run: RunState | None,
        params: dict[str, Any] | None = None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict:
        """Evaluate and record; a store failure yields an unrecorded deny, never an allow.

        With ``call`` (an identity), a repeat of a known call gets where that call stands
        instead of a new decision, and an allowed call is claimed by its caller at once.
        """
        action, invalid = admitted(action)
        args_bytes = canonical(action.args)
        digest = hashlib.sha256(args_bytes).hexdigest()
        try:
            with self.store.write() as tx:
                verdict = self._decide_in(
                    tx, action, run, digest, len(args_bytes), params, invalid, call, waited_on
                )
        except StoreError as exc:
            return Verdict(refuse(f"failing closed: {exc}", STORE_UNAVAILABLE, None), None, None)
        if run is not None:
            run.started = True
            run.actions += 1
            run.remember(action.tool, verdict.decision.decision, verdict.id)
        return verdict

    def decide_in(
        self,
        tx: WriteTx,
        action: Action,
        run: RunState | None,
        params: dict[str, Any] | None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict:
        """``decide`` inside a transaction the caller holds (the server stores an
        idempotency key in the same one)."""
        action, invalid = admitted(action)
        args_bytes = canonical(action.args)
        digest = hashlib.sha256(args_bytes).hexdigest()
        return self._decide_in(
            tx, action, run, digest, len(args_bytes), params, invalid, call, waited_on
        )

    def _decide_in(
        self,
        tx: WriteTx,
        action: Action,
        run: RunState | None,
        digest: str,
        size: int,
        params: dict[str, Any] | None,
        invalid: str | None = None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict:
        known: dict[str, Any] | None = None
        healing: CompiledHealing | None = None
        if call is not None:
            known = self.calls.find(tx, action.agent, action.tool, call.key)
            if known is not None:
                try:
                    state = self.calls.repeat(tx, known, digest, call)
                except Conflict as exc:
                    return self._conflict(tx, action, run, known, str(exc))
                if state is not None:
                    if run is not None and not run.started:  # a resumed run's first call
                        usable = self._usable_policy(tx)
                        sensitive = usable.sensitive if usable is not None else ()
                        self._record_run_start(tx, run, sensitive)
                    return self._repeat(tx, action, known, state)
        hold = holds.check(tx, run.lineage, waited_on=waited_on) if run is not None else None
        policy: CompiledPolicy | None = None
        controls = self.controls_for(tx)
        stopped = controls.kill_reason(action.agent)
        stage = controls.stage_for(action.agent, action.tool)
        shadow: dict[str, Any] | None = None
        # Refusals made before evaluation still load the policy: its ``sensitive:`` paths
        # mask what is stored of the action.
        if stopped is not None:
            decision = refuse(
                f"agent '{action.agent}' is stopped by the kill switch: {stopped}",
                KILL_SWITCH,
                tx.policy_version,
            )
            policy = self._usable_policy(tx)
        elif invalid is not None:
            decision = refuse(invalid, INVALID_INPUT, tx.policy_version)
            policy = self._usable_policy(tx)
        elif size > self.max_args_bytes:
            decision = refuse(
                f"the arguments are {size} bytes, over the {self.max_args_bytes}-byte limit",
                PAYLOAD_TOO_LARGE,
                tx.policy_version,
            )
            policy = self._usable_policy(tx)
        else:
            try:
                policy = self.policy_for(tx)
            except PolicyError as exc:
                decision = refuse(
                    f"the active policy cannot be used: {exc}",
                    NO_POLICY,
                    tx.policy_version,
                    error="PolicyError",
                )
            else:
                if policy is None:
                    decision = refuse(
                        "no policy has been applied; everything is denied", NO_POLICY, None
                    )
                else:
                    decision = evaluate(policy, action, stage)
                    shadow = self._shadow(tx, action, stage, decision)
                    decision = check_and_count(
                        tx, policy, action, run.id if run is not None else None, decision
                    )
                    healing = policy.healing.get(action.tool) if policy.healing else None
                    if healing is not None:
                        decision = self._breaker_check(tx, action, healing, decision)
        if hold is not None and hold.refused_by is not None and decision.decision != "deny":
            decision = refuse(
                f"run {run.id if run else ''} depends on review item {hold.refused_by}, which"
                f" a reviewer rejected: {hold.reason}",
                RUN_REJECTED,
                decision.policy_version,
            )
        stored = self.stored(action, policy, digest, size)
        if run is not None and not run.started:
            self._record_run_start(tx, run, policy.sensitive if policy is not None else ())
        decision_id = os.urandom(16).hex()
        item_id = None
        timeout, on_timeout = _timeouts(policy, decision.queue)
        if decision.decision == "review":
            item_id = self.open_item(
                tx,
                "approval",
                decision,
                action,
                decision_id=decision_id,
                decision_seq=tx.head_seq + 1,
                run=run,
                stored=stored,
                policy=policy,
                queue=decision.queue or "default",
                expires_in=timeout,
                params=params,
                call_id=known["id"] if known is not None else None,
            )
        held = hold.pending if hold is not None and decision.decision == "allow" else ()
        body = self.decision_body(decision, action, stored, run, item_id)
        if stage is not None:
            body["autonomy"] = stage
        if shadow is not None:
            body["shadow"] = shadow
        if held:
            body["held_by"] = list(held)
        if call is not None:
            body["call_key"] = call.key
        rec = tx.append(
            "decision",
            body,
            agent=action.agent,
            tool=action.tool,
            decision=decision.decision,
            record_id=decision_id,
        )
        state = None
        if call is not None:
            status = {"deny": "denied", "review": "pending"}.get(decision.decision, "claimed")
            state = self.calls.record(
                tx,
                known,
                action.agent,
                action.tool,
                digest,
                call,
                "decided" if held else status,
                decision_id,
                rec.seq,
                item_id,
            )
            if item_id is not None and known is None:
                tx.sql(
                    "UPDATE proctor_review_items SET call_id = ? WHERE id = ?", (state.id, item_id)
                )
        wire = _healing_wire(healing, action) if healing is not None and healing.settings else None
        return Verdict(decision, rec.id, rec.seq, item_id, timeout, on_timeout, held, state, wire)

    def _breaker_check(
        self, tx: WriteTx, action: Action, healing: CompiledHealing, decision: Decision
    ) -> Decision:
        """An open breaker refuses what would otherwise run or wait for a person."""
        if healing.breaker is None or decision.decision == "deny":
            return decision
        why = self.breakers.admit(tx, action.agent, action.tool, healing.breaker)
        if why is None:
            return decision
        return refuse(why, breaker_rule(action.tool), decision.policy_version)

    def _repeat(
        self, tx: WriteTx, action: Action, row: dict[str, Any], state: CallState
    ) -> Verdict:
        """A known call asked again: where it stands, no new decision. A completed one
        returns its recorded result, and the repeat is logged against the call."""
        reason = {
            "done": f"call {row['key']!r} already ran: its recorded result stands",
            "busy": f"call {row['key']!r} is being run by another runner",
            "unknown": f"call {row['key']!r} may or may not have happened: it is reconciled first",
            "pending": f"call {row['key']!r} waits for a reviewer (item {row['item_id']})",
            "claimed": f"call {row['key']!r} is this caller's own claim",
        }[state.status]
        kind = "review" if state.status == "pending" else "allow"
        queue = None
        if state.status == "pending":
            found = tx.sql(
                "SELECT queue FROM proctor_review_items WHERE id = ?", (row["item_id"],)
            ).fetchone()
            queue = found[0] if found is not None else None
        decision = Decision(kind, (CALL_REPEAT,), reason, tx.policy_version, queue=queue)
        if state.status == "done":
            rec = tx.append(
                "call.repeat",
                {"call_id": row["id"], "key": row["key"], "decision_id": row["decision_id"]},
                agent=action.agent,
                tool=action.tool,
            )
            self.calls.add_seq(tx, row["id"], rec.seq)
        return Verdict(
            decision, row["decision_id"], row["decision_seq"], row["item_id"], call=state
        )

    def _conflict(
        self,
        tx: WriteTx,
        action: Action,
        run: RunState | None,
        row: dict[str, Any],
        reason: str,
    ) -> Verdict:
        """The same identity with other arguments: refused and recorded, never run."""
        args_bytes = canonical(action.args)
        digest = hashlib.sha256(args_bytes).hexdigest()
        decision = refuse(reason, CALL_CONFLICT, tx.policy_version)
        stored = self.stored(action, self._usable_policy(tx), digest, len(args_bytes))
        body = self.decision_body(decision, action, stored, run, None)
        body["call_key"] = row["key"]
        rec = tx.append("decision", body, agent=action.agent, tool=action.tool, decision="deny")
        self.calls.add_seq(tx, row["id"], rec.seq)
        state = CallState(row["id"], row["key"], "conflict", error=reason)
        return Verdict(decision, rec.id, rec.seq, call=state)

    def judge(self, tx: WriteTx, action: Action) -> Decision:
        """The decision a new action would get now, recorded nowhere and counting toward no
        limit: a reviewer's edit or choice is judged like one."""
        stopped = self.controls_for(tx).kill_reason(action.agent)
        if stopped is not None:
            return refuse(
                f"agent '{action.agent}' is stopped by the kill switch: {stopped}",
                KILL_SWITCH,
                tx.policy_version,
            )
        action, invalid = admitted(action)
        if invalid is not None:
            return refuse(invalid, INVALID_INPUT, tx.policy_version)
        try:
            policy = self.policy_for(tx)
        except PolicyError as exc:
            return refuse(f"the active policy cannot be used: {exc}", NO_POLICY, tx.policy_version)
        if policy is None:
            return refuse("no policy has been applied; everything is denied", NO_POLICY, None)
        return evaluate(policy, action, self.controls_for(tx).stage_for(action.agent, action.tool))

    def _usable_policy(self, tx: WriteTx) -> CompiledPolicy | None:
        try:
            return self.policy_for(tx)
        except PolicyError:
            return None

    def _shadow(
        self, tx: WriteTx, action: Action, stage: int | None, decision: Decision
    ) -> dict[str, Any] | None:
        """Evaluate the shadow candidate beside the active policy; report disagreement only."""
        if tx.shadow_version is None or tx.shadow_version == tx.policy_version:
            return None
        try:
            candidate = self.version_for(tx, tx.shadow_version)
        except PolicyError:
            return None
        if candidate is None:
            return None
        theirs = evaluate(candidate, action, stage)
        if theirs.decision == decision.decision and theirs.rule_ids == decision.rule_ids:
            return None
        return {
            "version": candidate.version,
            "decision": theirs.decision,
            "rules": list(theirs.rule_ids),
            "reason": theirs.reason,
        }

    def stored(
        self, action: Action, policy: CompiledPolicy | None, digest: str, size: int
    ) -> StoredAction:
        """The action as it may be stored: secrets masked, oversized arguments omitted."""
        sensitive = policy.sensitive if policy is not None else ()
        masked: list[str] = []
        if size <= self.max_args_bytes:
            args = mask("args", action.args, sensitive, masked)
        else:
            args = {"_omitted": f"{size} bytes"}
        context = mask("context", action.context, sensitive, masked)
        exact = size <= self.max_args_bytes and not any(m.startswith("args") for m in masked)
        return StoredAction(args, context, digest, tuple(masked), exact)

    def record_refusal(
        self, action: Action, run: RunState | None, reason: str, rule_id: str
    ) -> Verdict:
        """Log an action refused before policy was consulted (a held run, say)."""
        action, _ = admitted(action)
        digest = hashlib.sha256(canonical(action.args)).hexdigest()
        with self.store.write() as tx:
            policy = self.policy_for(tx)
            decision = refuse(reason, rule_id, tx.policy_version)
            stored = self.stored(action, policy, digest, 0)
            rec = tx.append(
                "decision",
                self.decision_body(decision, action, stored, run, None),
                agent=action.agent,
                tool=action.tool,
                decision="deny",
            )
        return Verdict(decision, rec.id, rec.seq)

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: RunState | None,
        queue: str | None,
        reason: str,
    ) -> Verdict:
        """A choice item: the agent offers ranked options and a human picks one.

        Options the policy denies are never offered; if none remain, the choice is denied.
        """
        with self.store.write() as tx:
            policy = self.policy_for(tx)
            if policy is None:
                decision = refuse(
                    "no policy has been applied; everything is denied", NO_POLICY, None
                )
                return Verdict(decision, None, None)
            if run is not None and not run.started:
                self._record_run_start(tx, run, policy.sensitive)
            invalid = _invalid_options(offered)
            options = []
            for action, meta in offered if invalid is None else ():
                verdict = evaluate(policy, action)
                if verdict.decision == "deny":
                    continue
                digest = hashlib.sha256(canonical(action.args)).hexdigest()
                stored = self.stored(action, policy, digest, 0)
                options.append(
                    {
                        **meta,
                        "tool": action.tool,
                        "args": stored.args,
                        "exec_args": action.args if stored.exact else None,
                        "decision": verdict.decision,
                        "risk": verdict.risk,
                    }
                )
            first = offered[0][0]
            queue = queue or policy.document.defaults.queue or next(iter(policy.queues), None)
            if not options or queue is None:
                rule = "choice" if invalid is None else INVALID_INPUT
                if invalid is not None:
                    why = invalid
                elif not options:
                    why = "the policy denies every option"
                else:
                    why = "the policy names no queue for choices (set defaults.queue)"
                decision = refuse(why, rule, policy.version)
                rec = tx.append(
                    "decision",
                    {
                        "choice": True,
                        "reason": why,
                        "rules": [rule],
                        "policy_version": policy.version,
                        **_run_fields(run),
                    },
                    agent=agent,
                    tool=first.tool,
                    decision="deny",
                )
                return Verdict(decision, rec.id, rec.seq)
            decision = Decision("review", ("choice",), reason, policy.version, queue=queue)
            timeout, on_timeout = _timeouts(policy, queue)
            decision_id = os.urandom(16).hex()
            digest = hashlib.sha256(canonical(first.args)).hexdigest()
            stored = self.stored(first, policy, digest, 0)
            item_id = self.open_item(
                tx,
                "choice",
                decision,
                first,
                decision_id=decision_id,
                decision_seq=tx.head_seq + 1,
                run=run,
                stored=stored,
                policy=policy,
                queue=queue,
                expires_in=timeout,
                options=options,
            )
            body = self.decision_body(decision, first, stored, run, item_id)
            body["options"] = [
                {k: o[k] for k in ("tool", "args", "probability", "risks")} for o in options
            ]
            rec = tx.append(
                "decision",
                body,
                agent=agent,
                tool=first.tool,
                decision="review",
                record_id=decision_id,
            )
        if run is not None:
            run.started = True
        return Verdict(decision, rec.id, rec.seq, item_id, timeout, on_timeout)

    @staticmethod
    def decision_body(
        decision: Decision,
        action: Action,
        stored: StoredAction,
        run: RunState | None,
        item_id: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": {
                "args": stored.args,
                "args_digest": stored.digest,
                "context": stored.context,
                "reversible": action.reversible,
                "reads": list(action.reads),
            },
            "rules": list(decision.rule_ids),
            "reason": decision.reason,
            "risk": decision.risk,
            "policy_version": decision.policy_version,
            **_run_fields(run),
        }
        # Optional fields only when they say something: smaller records, cheaper commits.
        if decision.queue:
            body["queue"] = decision.queue
        if decision.on_error:
            body["on_error"] = "review"
        if decision.sample:
            body["sample"] = decision.sample
            if decision.sample_queue:
                body["sample_queue"] = decision.sample_queue
        if decision.error:
            body["error"] = decision.error
        if item_id:
            body["review_item"] = item_id
        if stored.masked:
            body["masked"] = list(stored.masked)
        return body

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        error: BaseException | None,
        duration: float,
        params: dict[str, Any] | None = None,
        item_id: str | None = None,
        in_tx: Callable[[WriteTx], bool] | None = None,
        call: CallOutcome | None = None,
        healed: dict[str, Any] | None = None,
    ) -> str | None:
        """Record how the tool call ended; opens exception, sample and settle items. Returns
        an item id.

        ``in_tx`` runs first in the same transaction (a grant's item is finished with it);
        when it returns False the outcome is already recorded and nothing more is written.
        ``call`` finishes a call with an identity (only its claim's holder may); an error
        that may have committed leaves it ``unknown``, and, when the tool has no lookup to
        settle it, opens an item for a person to.
        """
        action, _ = admitted(action)  # a tool may have changed its arguments as it ran
        decision = verdict.decision
        unknown = error is not None and call is not None and call.ambiguous
        with self.store.write() as tx:
            if in_tx is not None and not in_tx(tx):
                return None
            outcome_seq = tx.head_seq + 1  # nothing else is appended before the outcome
            if call is not None and not self.calls.finish(
                tx,
                call.id,
                call.token,
                "done" if error is None else "unknown" if unknown else "failed",
                call.result,
                _error_text(error) if error is not None else None,
                self.max_args_bytes,
                outcome_seq,
            ):
                return None
            opened = None
            kind = queue = None
            if unknown and call is not None and not call.has_lookup:
                kind, queue = "settle", decision.queue or self._any_queue(tx)
            elif error is not None and decision.on_error:
                kind, queue = "exception", decision.queue
            elif error is None and verdict.id and sampled(verdict.id, decision.sample):
                kind, queue = "sample", decision.sample_queue
            if kind is not None:
                policy = self.policy_for(tx)
                digest = hashlib.sha256(canonical(action.args)).hexdigest()
                opened = self.open_item(
                    tx,
                    kind,
                    _why_item(kind, decision, action, error),
                    action,
                    decision_id=verdict.id or "",
                    decision_seq=verdict.seq or 0,
                    run=run,
                    stored=self.stored(action, policy, digest, 0),
                    policy=policy,
                    queue=queue or "default",
                    expires_in=None,
                    params=params,
                    detail=_error_text(error) if error is not None else None,
                    call_id=call.id if call is not None else None,
                )
            body: dict[str, Any] = {
                "decision_id": verdict.id,
                "decision_seq": verdict.seq,
                "outcome": "ok" if error is None else "unknown" if unknown else "error",
                "duration_ms": round(duration * 1000, 3),
                **_run_fields(run),
            }
            if error is not None:
                body["error_type"] = error_type(error)
                body["error"] = _error_text(error)
            if opened or item_id:
                body["review_item"] = opened or item_id
            if call is not None:
                body["call_id"] = call.id
            if healed:
                body.update(healed)
            rec = tx.append("outcome", body, agent=action.agent, tool=action.tool)
            assert rec.seq == outcome_seq, "the outcome is the next record after finishing"
            self._count_for_breaker(tx, action, error is not None)
        if run is not None:
            run.remember(action.tool, "error" if error is not None else "ok", verdict.id)
        return opened

    def _count_for_breaker(self, tx: WriteTx, action: Action, failed: bool) -> str | None:
        """Count a call's outcome toward its tool's breaker, if the policy sets one."""
        policy = self._usable_policy(tx)
        healing = policy.healing.get(action.tool) if policy is not None else None
        if healing is None or healing.breaker is None:
            return None
        return self.breakers.record(tx, action.agent, action.tool, healing.breaker, failed)

    def record_attempt(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        attempt: int,
        error: BaseException,
        detail: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        """A failed try that another follows: a record of the same call (its decision),
        counted toward the breaker. Returns the breaker's state ("" without one)."""
        action, _ = admitted(action)
        with self.store.write() as tx:
            body: dict[str, Any] = {
                "decision_id": verdict.id,
                "decision_seq": verdict.seq,
                "attempt": attempt,
                "error_type": error_type(error),
                "error": _error_text(error),
                **(detail or {}),
                **_run_fields(run),
            }
            if call_id is not None:
                body["call_id"] = call_id
            rec = tx.append("call.attempt", body, agent=action.agent, tool=action.tool)
            if call_id is not None:
                self.calls.add_seq(tx, call_id, rec.seq)  # on the call's receipt
            return self._count_for_breaker(tx, action, True) or ""

    def escalate_failure(
        self,
        verdict: Verdict,
        action: Action,
        run: RunState | None,
        *,
        why: str,
        history: list[dict[str, Any]],
        params: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> str:
        """Persistent failure in front of a person: an exception item with the failure
        history (tries, errors, breaker state) in the queue the tool's policy names."""
        action, _ = admitted(action)
        with self.store.write() as tx:
            policy = self._usable_policy(tx)
            healing = policy.healing.get(action.tool) if policy is not None else None
            escalate = healing.escalate if healing is not None else None
            queue = (escalate.queue if escalate is not None else None) or self._any_queue(tx)
            timeout, _ = _timeouts(policy, queue)
            digest = hashlib.sha256(canonical(action.args)).hexdigest()
            decision = replace(
                verdict.decision,
                rule_ids=(f"heal.{action.tool}",),
                reason=why,
                queue=queue,
            )
            item_id = self.open_item(
                tx,
                "exception",
                decision,
                action,
                decision_id=verdict.id or "",
                decision_seq=verdict.seq or 0,
                run=run,
                stored=self.stored(action, policy, digest, 0),
                policy=policy,
                queue=queue,
                expires_in=timeout,
                params=params,
                detail=orjson.dumps(history).decode()[:4000],
                call_id=call_id,
            )
            tx.append(
                "heal.escalate",
                {
                    "decision_id": verdict.id,
                    "review_item": item_id,
                    "queue": queue,
                    "why": why,
                    "attempts": len(history),
                    **_run_fields(run),
                },
                agent=action.agent,
                tool=action.tool,
            )
        return item_id

    def _any_queue(self, tx: WriteTx) -> str:
        policy = self._usable_policy(tx)
        if policy is None:
            return "default"
        return policy.document.defaults.queue or next(iter(policy.queues), "default")

    def open_item(
        self,
        tx: WriteTx,
        kind: str,
        decision: Decision,
        action: Action,
        *,
        decision_id: str,
        decision_seq: int,
        run: RunState | None,
        stored: StoredAction,
        policy: CompiledPolicy | None,
        queue: str,
        expires_in: float | None,
        params: dict[str, Any] | None = None,
        detail: str | None = None,
        options: list[dict[str, Any]] | None = None,
        call_id: str | None = None,
    ) -> str:
        """A durable review item holding what a reviewer needs to decide without redoing
        the agent's work: arguments, context, the run so far, the rule and its reason."""
        item_id = os.urandom(12).hex()
        now = _clock.now()
        q = policy.queues.get(queue) if policy is not None else None
        impact = action.context.get("impact")
        meta = {**(params or {}), "reversible": action.reversible, "reads": list(action.reads)}
        history = list(run.history) if run is not None else []
        holds_run = kind in ("approval", "choice") and decision.hold_run
        tx.sql(
            "INSERT INTO proctor_review_items (id, kind, status, queue, agent, tool, decision_id,"
            " decision_seq, run_id, policy_version, rule_ids, reason, risk, args, args_digest,"
            " context, detail, created_at, expires_at, updated_at, sla_due, impact, quorum,"
            " params, history, options, exec_args, hold_run, on_reject, call_id)"
            " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, ?, ?)",
            (
                item_id,
                kind,
                queue,
                action.agent,
                action.tool,
                decision_id,
                decision_seq,
                run.id if run else None,
                decision.policy_version,
                orjson.dumps(list(decision.rule_ids)).decode(),
                decision.reason,
                decision.risk,
                canonical(stored.args).decode(),
                stored.digest,
                canonical(stored.context).decode(),
                detail,
                now,
                now + expires_in if expires_in is not None else None,
                now,
                now + q.sla if q is not None and q.sla else None,
                float(impact)
                if isinstance(impact, int | float) and not isinstance(impact, bool)
                else None,
                q.quorum if q is not None else 1,
                canonical(meta).decode(),
                canonical(history).decode(),
                canonical(options).decode() if options is not None else None,
                canonical(action.args).decode() if stored.exact else None,
                holds_run,
                # only an approval that held its run has dependents to refuse
                "refuse_dependents" if holds_run and decision.refuse_dependents else "release",
                call_id,
            ),
        )
        return item_id

    # -- runs --------------------------------------------------------------------------

    def _record_run_start(
        self, tx: WriteTx, run: RunState, sensitive: tuple[tuple[str, ...], ...]
    ) -> None:
        masked: list[str] = []
        invalid = problem(run.context, "context")
        context = run.context if invalid is None else omitted(invalid)
        holds.record_run(tx, run.id, run.parent_id, run.agent)
        tx.append(
            "run.resume" if getattr(run, "resumed", False) else "run.start",
            {
                "context": mask("context", context, sensitive, masked),
                "masked": masked,
                **_run_fields(run),
            },
            agent=run.agent,
        )

    def end_run(self, run: RunState, error: BaseException | None) -> None:
        with self.store.write() as tx:
            tx.append(
                "run.end",
                {
                    "status": "completed" if error is None else "failed",
                    "error_type": error_type(error) if error is not None else None,
                    "actions": run.actions,
                    **_run_fields(run),
                },
                agent=run.agent,
            )


def admitted(action: Action) -> tuple[Action, str | None]:
    """The action as it may be recorded, and why it must be refused without evaluation
    (None: it may be evaluated). Arguments or context nested too deep, holding a lone
    surrogate or a non-finite number (see ``_values``) are stored as a placeholder that
    says why, so the refusal itself is always recorded."""
    args = problem(action.args, "args")
    context = problem(action.context, "context")
    if args is None and context is None:
        return action, None
    safe = replace(
        action,
        args=action.args if args is None else omitted(args),
        context=action.context if context is None else omitted(context),
    )
    return safe, args or context


def _invalid_options(offered: list[tuple[Action, dict[str, Any]]]) -> str | None:
    """Why a choice cannot even be offered: an option's arguments, what the agent says of
    it (probability, risks) or the context cannot be stored or evaluated."""
    for i, (action, meta) in enumerate(offered):
        found = (
            problem(action.args, f"options[{i}].args")
            or problem(meta, f"options[{i}]")
            or problem(action.context, "context")
        )
        if found is not None:
            return found
    return None


def _why_item(
    kind: str, decision: Decision, action: Action, error: BaseException | None
) -> Decision:
    """The decision an item opened after the call ran says why a person sees it."""
    failure = f"{error_type(error)}: {_error_text(error)}" if error is not None else ""
    if kind == "settle":
        reason = f"{action.tool} may or may not have happened ({failure}); a person settles it"
        return replace(decision, rule_ids=("call-unknown",), reason=reason)
    if kind == "exception":
        reason = f"{action.tool} failed ({failure}); its rule sends failures to a person"
        return replace(decision, reason=reason)
    return decision


def _timeouts(policy: CompiledPolicy | None, queue: str | None) -> tuple[float, str]:
    if policy is None:
        return DEFAULT_REVIEW_TIMEOUT, "deny"
    defaults = policy.document.defaults
    q = policy.queues.get(queue) if queue else None
    timeout = q.review_timeout if q is not None and q.review_timeout else defaults.review_timeout
    on_timeout = q.on_timeout if q is not None and q.on_timeout else defaults.on_timeout
    return timeout, on_timeout


def _run_fields(run: RunState | None) -> dict[str, Any]:
    if run is None:
        return {}
    return {
        "run_id": run.id,
        "trace_id": run.trace_id,
        "parent_run_id": run.parent_id,
    }


class ReportedError(Exception):
    """A tool failure reported by a remote agent: its type name and message, no object."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def error_type(error: BaseException) -> str:
    return error.error_type if isinstance(error, ReportedError) else type(error).__name__


def _error_text(error: BaseException) -> str:
    """The error's message as it is stored: at most 500 characters, lone surrogates
    replaced by U+FFFD (a message may quote undecodable input)."""
    message = text(str(error))
    return message if len(message) <= 500 else message[:497] + "..."


def _healing_wire(healing: CompiledHealing, action: Action) -> dict[str, Any]:
    """The tool's healing settings for the SDK, with the fallback call this call would make
    (or why it cannot be built: then no fallback runs)."""
    wire = dict(healing.settings)
    try:
        built = healing.fallback_call(action.args, action.context)
    except PolicyError as exc:
        wire["fallback_call"] = {"error": str(exc)}
    else:
        if built is not None:
            wire["fallback_call"] = {"tool": built[0], "args": built[1]}
    return wire

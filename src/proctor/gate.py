"""The decision point: evaluate an action, record the decision durably, open review items.

Everything a decision needs from the database (chain head, active policy version) is read
inside the same write transaction that appends the record, so a decision is made under
exactly one policy version and is durable before the caller may run the tool.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ._errors import PolicyError, StoreError
from ._masking import mask
from .audit.chain import canonical
from .policy import Action, CompiledPolicy, Decision, compile_policy, evaluate
from .policy.evaluate import refuse, sampled
from .runs import Run
from .store import Store, WriteTx

NO_POLICY = "no-policy"
STORE_UNAVAILABLE = "store-unavailable"
PAYLOAD_TOO_LARGE = "payload-too-large"
DEFAULT_REVIEW_TIMEOUT = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """A recorded decision, and where a review item was opened for it."""

    decision: Decision
    id: str | None  # the decision record's id; None when nothing could be recorded
    seq: int | None
    item_id: str | None = None
    review_timeout: float = DEFAULT_REVIEW_TIMEOUT
    on_timeout: str = "deny"


class Gate:
    """Shared by every tool of one Proctor instance; safe to call from many threads."""

    def __init__(self, store: Store, *, max_args_bytes: int = 1 << 20) -> None:
        self.store = store
        self.max_args_bytes = max_args_bytes
        self._policies: dict[str, CompiledPolicy] = {}
        self._policies_lock = threading.Lock()

    # -- policy ------------------------------------------------------------------------

    def policy_for(self, tx: WriteTx) -> CompiledPolicy | None:
        version = tx.policy_version
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

    def decide(self, action: Action, run: Run | None) -> Verdict:
        """Evaluate and record; a store failure yields an unrecorded deny, never an allow."""
        args_bytes = canonical(action.args)
        digest = hashlib.sha256(args_bytes).hexdigest()
        try:
            with self.store.write() as tx:
                verdict = self._decide_in(tx, action, run, digest, len(args_bytes))
        except StoreError as exc:
            return Verdict(refuse(f"failing closed: {exc}", STORE_UNAVAILABLE, None), None, None)
        if run is not None:
            run.started = True
            run.actions += 1
        return verdict

    def _decide_in(
        self, tx: WriteTx, action: Action, run: Run | None, digest: str, size: int
    ) -> Verdict:
        policy: CompiledPolicy | None = None
        if size > self.max_args_bytes:
            decision = refuse(
                f"the arguments are {size} bytes, over the {self.max_args_bytes}-byte limit",
                PAYLOAD_TOO_LARGE,
                tx.policy_version,
            )
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
                decision = (
                    evaluate(policy, action)
                    if policy is not None
                    else refuse("no policy has been applied; everything is denied", NO_POLICY, None)
                )
        sensitive = policy.sensitive if policy is not None else ()
        masked: list[str] = []
        args = (
            mask("args", action.args, sensitive, masked)
            if size <= self.max_args_bytes
            else {"_omitted": f"{size} bytes"}
        )
        context = mask("context", action.context, sensitive, masked)
        if run is not None and not run.started:
            self._record_run_start(tx, run, sensitive)
        decision_id = os.urandom(16).hex()
        item_id = None
        timeout, on_timeout = _timeouts(policy, decision.queue)
        if decision.decision == "review":
            item_id = self.open_item(
                tx,
                "approval",
                decision,
                action,
                decision_id,
                tx.head_seq + 1,
                run,
                args,
                digest,
                context,
                queue=decision.queue or "default",
                expires_in=timeout,
            )
        body = {
            "action": {
                "args": args,
                "args_digest": digest,
                "context": context,
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
        if decision.error:
            body["error"] = decision.error
        if item_id:
            body["review_item"] = item_id
        if masked:
            body["masked"] = masked
        rec = tx.append(
            "decision",
            body,
            agent=action.agent,
            tool=action.tool,
            decision=decision.decision,
            record_id=decision_id,
        )
        return Verdict(decision, rec.id, rec.seq, item_id, timeout, on_timeout)

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: Run | None,
        *,
        error: BaseException | None,
        duration: float,
    ) -> str | None:
        """Record how the tool call ended; opens exception and sample items. Returns an item id."""
        decision = verdict.decision
        with self.store.write() as tx:
            item_id = None
            kind = None
            if error is not None and decision.on_error:
                kind, queue = "exception", decision.queue
            elif error is None and verdict.id and sampled(verdict.id, decision.sample):
                kind, queue = "sample", decision.sample_queue
            if kind is not None:
                policy = self.policy_for(tx)
                sensitive = policy.sensitive if policy is not None else ()
                masked: list[str] = []
                item_id = self.open_item(
                    tx,
                    kind,
                    decision,
                    action,
                    verdict.id or "",
                    verdict.seq or 0,
                    run,
                    mask("args", action.args, sensitive, masked),
                    hashlib.sha256(canonical(action.args)).hexdigest(),
                    mask("context", action.context, sensitive, masked),
                    queue=queue or "default",
                    expires_in=None,
                    detail=_error_text(error) if error is not None else None,
                )
            tx.append(
                "outcome",
                {
                    "decision_id": verdict.id,
                    "decision_seq": verdict.seq,
                    "outcome": "ok" if error is None else "error",
                    "error_type": type(error).__name__ if error is not None else None,
                    "error": _error_text(error) if error is not None else None,
                    "duration_ms": round(duration * 1000, 3),
                    "review_item": item_id,
                    **_run_fields(run),
                },
                agent=action.agent,
                tool=action.tool,
            )
        return item_id

    def open_item(
        self,
        tx: WriteTx,
        kind: str,
        decision: Decision,
        action: Action,
        decision_id: str,
        decision_seq: int,
        run: Run | None,
        args: dict[str, Any],
        digest: str,
        context: dict[str, Any],
        *,
        queue: str,
        expires_in: float | None,
        detail: str | None = None,
    ) -> str:
        item_id = os.urandom(12).hex()
        now = time.time()
        tx.sql(
            "INSERT INTO proctor_review_items (id, kind, status, queue, agent, tool, decision_id,"
            " decision_seq, run_id, policy_version, rule_ids, reason, risk, args, args_digest,"
            " context, detail, created_at, expires_at, updated_at)"
            " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                canonical(args).decode(),
                digest,
                canonical(context).decode(),
                detail,
                now,
                now + expires_in if expires_in is not None else None,
                now,
            ),
        )
        return item_id

    # -- runs --------------------------------------------------------------------------

    def _record_run_start(
        self, tx: WriteTx, run: Run, sensitive: tuple[tuple[str, ...], ...]
    ) -> None:
        masked: list[str] = []
        tx.append(
            "run.start",
            {
                "context": mask("context", run.context, sensitive, masked),
                "masked": masked,
                **_run_fields(run),
            },
            agent=run.agent,
        )

    def end_run(self, run: Run, error: BaseException | None) -> None:
        with self.store.write() as tx:
            tx.append(
                "run.end",
                {
                    "status": "completed" if error is None else "failed",
                    "error_type": type(error).__name__ if error is not None else None,
                    "actions": run.actions,
                    **_run_fields(run),
                },
                agent=run.agent,
            )


def _timeouts(policy: CompiledPolicy | None, queue: str | None) -> tuple[float, str]:
    if policy is None:
        return DEFAULT_REVIEW_TIMEOUT, "deny"
    defaults = policy.document.defaults
    q = policy.queues.get(queue) if queue else None
    timeout = q.review_timeout if q is not None and q.review_timeout else defaults.review_timeout
    on_timeout = q.on_timeout if q is not None and q.on_timeout else defaults.on_timeout
    return timeout, on_timeout


def _run_fields(run: Run | None) -> dict[str, Any]:
    if run is None:
        return {}
    return {
        "run_id": run.id,
        "trace_id": run.trace_id,
        "parent_run_id": run.parent.id if run.parent else None,
    }


def _error_text(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 500 else text[:497] + "..."

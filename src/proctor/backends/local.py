"""Embedded mode: decisions made in this process, on the database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _clock
from .._errors import PolicyError
from ..execution import holds
from ..execution.calls import DEFAULT_RETENTION, CallRef, CallState, Settlement, UnknownCall
from ..execution.leases import DEFAULT_LEASE_SECONDS
from ..gate import CallOutcome, Gate, Verdict
from ..policy import Action, CompiledPolicy, compile_policy, run_tests
from ..policy.lifecycle import active_source
from ..review.items import ReviewItem, get_item, list_items, status_of, wait_while
from ..review.service import ReviewService
from ..runstate import RunState
from ..store import Store
from . import _NOT_GIVEN, ClaimAnswer


class LocalBackend:
    """Decisions made in this process, on the database."""

    def __init__(
        self,
        store: Store,
        *,
        max_args_bytes: int,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        call_retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.store = store
        self.gate = Gate(
            store,
            max_args_bytes=max_args_bytes,
            lease_seconds=lease_seconds,
            call_retention=call_retention,
        )
        self.service = ReviewService(self.gate, lease_seconds)

    # -- the agent's side --------------------------------------------------------------

    def decide(
        self,
        action: Action,
        run: RunState | None,
        params: dict[str, Any] | None,
        call: CallRef | None = None,
        waited_on: tuple[str, ...] = (),
    ) -> Verdict:
        return self.gate.decide(action, run, params, call, waited_on)

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
        result: Any = _NOT_GIVEN,
        claim_token: str | None = None,
        call: CallOutcome | None = None,
        healed: dict[str, Any] | None = None,
    ) -> str | None:
        finish = None
        if item_id is not None and result is not _NOT_GIVEN:
            grants, limit = self.service.grants, self.gate.max_args_bytes

            def finish(tx: Any) -> bool:
                return grants.finish(tx, item_id, claim_token, result, error, limit)

        return self.gate.record_outcome(
            verdict,
            action,
            run,
            error=error,
            duration=duration,
            params=params,
            item_id=item_id,
            in_tx=finish,
            call=call,
            healed=healed,
        )

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
        return self.gate.record_attempt(
            verdict, action, run, attempt=attempt, error=error, detail=detail, call_id=call_id
        )

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
        return self.gate.escalate_failure(
            verdict, action, run, why=why, history=history, params=params, call_id=call_id
        )

    def record_refusal(
        self, action: Action, run: RunState | None, reason: str, rule_id: str
    ) -> Verdict:
        return self.gate.record_refusal(action, run, reason, rule_id)

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: RunState | None,
        queue: str | None,
        reason: str,
    ) -> Verdict:
        return self.gate.open_choice(agent, offered, run, queue, reason)

    def end_run(self, run: RunState, error: BaseException | None) -> None:
        self.gate.end_run(run, error)

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> ClaimAnswer:
        found = self.service.grants.claim(item_id, original_digest, owner, token)
        return ClaimAnswer(found.state, found.lease_seconds, found.held_by, found.reason)

    def renew(self, item_id: str, token: str) -> bool:
        return self.service.grants.renew(item_id, token)

    def renew_call(self, call_id: str, token: str) -> bool:
        with self.store.write() as tx:
            return self.gate.calls.renew(tx, call_id, token)

    def settle_call(self, call_id: str, settlement: Settlement) -> CallState:
        return self.service.settling.by_lookup(call_id, settlement)

    def unknown_calls(self, agent: str | None, tool: str, limit: int) -> list[UnknownCall]:
        with self.store.write() as tx:
            return self.gate.calls.unknown(tx, agent, tool, limit)

    def escalate_call(self, call_id: str, why: str) -> str:
        return self.service.settling.by_agent(call_id, why)

    def lineage(self, run_id: str) -> list[str]:
        with self.store.write() as tx:
            return holds.lineage(tx, run_id)

    def sweep_item(self, item_id: str) -> None:
        self.service.sweep(item_id=item_id)

    def item(self, item_id: str) -> ReviewItem:
        return get_item(self.store, item_id)

    def status(self, item_id: str) -> str:
        return status_of(self.store, item_id)

    def wait_while(self, item_id: str, statuses: Iterable[str], timeout: float) -> str:
        return wait_while(self.store, item_id, frozenset(statuses), timeout)

    # -- the reviewer's side -----------------------------------------------------------

    def items(self, status: str | None, queue: str | None) -> list[ReviewItem]:
        return list_items(self.store, status=status, queue=queue)

    def review(self, verb: str, item_id: str, by: str, **fields: Any) -> ReviewItem:
        getattr(self.service, verb)(item_id, by, **fields)
        return self.item(item_id)

    def sweep(self) -> list[str]:
        return self.service.sweep()

    # -- policy ------------------------------------------------------------------------

    def apply_policy(self, text: str, source: str, author: str | None, message: str | None) -> str:
        policy = compile_policy(text, source)
        failed = [r for r in run_tests(policy) if not r.passed]
        if failed:
            first = failed[0]
            raise PolicyError(
                f"policy test {first.index + 1} ({first.name}) fails: {first.message}",
                source=source,
                line=0,
                column=0,
            )
        with self.store.write() as tx:
            exists = tx.sql(
                "SELECT 1 FROM proctor_policies WHERE version = ?", (policy.version,)
            ).fetchone()
            if not exists:
                tx.sql(
                    "INSERT INTO proctor_policies"
                    " (version, name, text, created_at, author, message)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (policy.version, policy.name, text, _clock.now(), author, message),
                )
            tx.append(
                "policy.apply",
                {
                    "version": policy.version,
                    "name": policy.name,
                    "previous": tx.policy_version,
                    "author": author,
                    "message": message,
                },
            )
            tx.set_policy_version(policy.version)
        return policy.version

    def active_policy(self) -> CompiledPolicy | None:
        found = active_source(self.store)
        return compile_policy(found[1], f"policy {found[0][:12]}") if found else None

    def close(self) -> None:
        self.store.close()

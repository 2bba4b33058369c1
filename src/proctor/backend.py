"""The seam between the SDK and where decisions are made.

``LocalBackend`` runs the gate and the review service on a database (embedded mode);
``client.RemoteBackend`` sends the same calls to ``proctor serve``. The tool wrapper and
the SDK's APIs only ever talk to a ``Backend``, so both modes share every rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from ._errors import PolicyError
from .gate import Gate, Verdict
from .policy import Action, CompiledPolicy, Decision, compile_policy, run_tests
from .policy.lifecycle import active_source
from .review.grants import DEFAULT_LEASE_SECONDS
from .review.items import ReviewItem, get_item, list_items, status_of, wait_while
from .review.service import ReviewService
from .runs import Run
from .store import Store

_NOT_GIVEN: Any = object()


class Backend(Protocol):
    """Everything the SDK asks of Proctor's core."""

    def decide(self, action: Action, run: Run | None, params: dict[str, Any] | None) -> Verdict: ...

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: Run | None,
        *,
        error: BaseException | None,
        duration: float,
        params: dict[str, Any] | None = None,
        item_id: str | None = None,
        result: Any = _NOT_GIVEN,
        claim_token: str | None = None,
    ) -> str | None: ...

    def record_refusal(
        self, action: Action, run: Run | None, reason: str, rule_id: str
    ) -> Verdict: ...

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: Run | None,
        queue: str | None,
        reason: str,
    ) -> Verdict: ...

    def end_run(self, run: Run, error: BaseException | None) -> None: ...

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> tuple[str, float]:
        """Claim an approved item's grant with a token of the runner's own making:
        (state, lease seconds)."""
        ...

    def renew(self, item_id: str, token: str) -> bool:
        """Extend the lease of a held claim; False when it is no longer held."""
        ...

    def sweep_item(self, item_id: str) -> None: ...

    def item(self, item_id: str) -> ReviewItem: ...

    def status(self, item_id: str) -> str: ...

    def wait_while(self, item_id: str, statuses: Iterable[str], timeout: float) -> str: ...

    def items(self, status: str | None, queue: str | None) -> list[ReviewItem]: ...

    def review(self, verb: str, item_id: str, by: str, **fields: Any) -> ReviewItem: ...

    def sweep(self) -> list[str]: ...

    def apply_policy(
        self, text: str, source: str, author: str | None, message: str | None
    ) -> str: ...

    def active_policy(self) -> CompiledPolicy | None: ...

    def close(self) -> None: ...


class LocalBackend:
    """Decisions made in this process, on the database."""

    def __init__(
        self, store: Store, *, max_args_bytes: int, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        self.store = store
        self.gate = Gate(store, max_args_bytes=max_args_bytes)
        self.service = ReviewService(self.gate, lease_seconds)

    # -- the agent's side --------------------------------------------------------------

    def decide(self, action: Action, run: Run | None, params: dict[str, Any] | None) -> Verdict:
        return self.gate.decide(action, run, params)

    def record_outcome(
        self,
        verdict: Verdict,
        action: Action,
        run: Run | None,
        *,
        error: BaseException | None,
        duration: float,
        params: dict[str, Any] | None = None,
        item_id: str | None = None,
        result: Any = _NOT_GIVEN,
        claim_token: str | None = None,
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
        )

    def record_refusal(self, action: Action, run: Run | None, reason: str, rule_id: str) -> Verdict:
        return self.gate.record_refusal(action, run, reason, rule_id)

    def open_choice(
        self,
        agent: str,
        offered: list[tuple[Action, dict[str, Any]]],
        run: Run | None,
        queue: str | None,
        reason: str,
    ) -> Verdict:
        return self.gate.open_choice(agent, offered, run, queue, reason)

    def end_run(self, run: Run, error: BaseException | None) -> None:
        self.gate.end_run(run, error)

    def claim(
        self, item_id: str, original_digest: str | None, owner: str | None, token: str
    ) -> tuple[str, float]:
        found = self.service.grants.claim(item_id, original_digest, owner, token)
        return found.state, found.lease_seconds

    def renew(self, item_id: str, token: str) -> bool:
        return self.service.grants.renew(item_id, token)

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
                    (policy.version, policy.name, text, time.time(), author, message),
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


# -- wire forms shared by the server and the remote client -----------------------------------


def verdict_to_wire(v: Verdict) -> dict[str, Any]:
    d = asdict(v.decision)
    d["rule_ids"] = list(v.decision.rule_ids)
    return {
        "decision": d,
        "id": v.id,
        "seq": v.seq,
        "item_id": v.item_id,
        "review_timeout": v.review_timeout,
        "on_timeout": v.on_timeout,
    }


def verdict_from_wire(data: dict[str, Any]) -> Verdict:
    d = dict(data["decision"])
    d["rule_ids"] = tuple(d["rule_ids"])
    return Verdict(
        Decision(**d),
        data["id"],
        data["seq"],
        data.get("item_id"),
        data["review_timeout"],
        data["on_timeout"],
    )


def item_to_wire(item: ReviewItem) -> dict[str, Any]:
    return asdict(item)


def item_from_wire(data: dict[str, Any]) -> ReviewItem:
    return ReviewItem(**data)


def read_text(path_or_text: str | Path) -> tuple[str, str]:
    from .sdk import read_policy_source

    return read_policy_source(path_or_text)

"""Approvals: waiting for a human, claiming the grant, running the approved action once.

Everything blocking here is synchronous; async tools run it on a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _clock
from ._canonical import canonical
from ._errors import (
    Denied,
    InDoubt,
    InvalidRequest,
    Rejected,
    ReviewPending,
    StillRunning,
    StoreError,
    ToolFailed,
)
from .execution.leases import owner_id
from .gate import RUN_HELD, RUN_REJECTED, Verdict
from .policy import Action, Decision
from .review.items import RECHECK_SECONDS, ReviewItem
from .runs import Run

if TYPE_CHECKING:
    from .sdk import Proctor
    from .tools import ToolSpec


def pending_error(item_id: str, reason: str, verdict: Verdict | None = None) -> ReviewPending:
    """The message names the item and how to decide it, so whoever reads it can act."""
    d = verdict.decision if verdict is not None else None
    return ReviewPending(
        f"{reason.rstrip('. ')}. Decide it in the console, or:"
        f" proctor queue approve {item_id} --by NAME",
        item_id=item_id,
        rule_ids=d.rule_ids if d else (),
        decision_id=verdict.id if verdict else None,
        policy_version=d.policy_version if d else None,
    )


# -- waiting for the human -----------------------------------------------------------------


def answer(px: Proctor, spec: ToolSpec, verdict: Verdict, run: Run | None) -> ReviewItem:
    """Wait for a human within ``wait``; past the review timeout apply ``on_timeout``."""
    item_id = verdict.item_id
    if item_id is None:
        raise Denied("the review item could not be opened", decision_id=verdict.id)
    d = verdict.decision
    if spec.wait == 0 and px.backend.status(item_id) == "pending":
        raise pending_error(
            item_id,
            f"review item {item_id} waits for a human in queue '{d.queue}': {d.reason}",
            verdict,
        )
    give_up = time.monotonic() + spec.wait if spec.wait is not None else None
    while True:
        item = px.backend.item(item_id)
        expires = item.expires_at if item.expires_at is not None else _clock.now() + 3600
        until_expiry = expires - _clock.now()
        budget = until_expiry if give_up is None else min(until_expiry, give_up - time.monotonic())
        status = px.backend.wait_while(item_id, ("pending",), max(budget, 0.0))
        if status == "pending" and _clock.now() >= expires:
            px.backend.sweep_item(item_id)  # expire, or escalate to the next queue
            status = px.backend.status(item_id)
            if status == "pending" and (give_up is None or time.monotonic() < give_up):
                continue  # escalated: keep waiting on the next queue
        if status == "pending":
            raise pending_error(
                item_id, f"no reviewer has decided review item {item_id} yet", verdict
            )
        item = px.backend.item(item_id)
        return _settled(item, verdict)


def _settled(item: ReviewItem, verdict: Verdict | None = None) -> ReviewItem:
    d = verdict.decision if verdict is not None else None
    ids = d.rule_ids if d else tuple(item.rule_ids)
    if item.status == "rejected":
        raise Rejected(
            item.note or "a reviewer rejected the action",
            rule_ids=ids,
            decision_id=item.decision_id,
            policy_version=item.policy_version,
        )
    if item.status == "expired":
        raise Denied(
            f"no reviewer decided item {item.id} in time (or its grant expired);"
            " the policy's on_timeout is deny",
            rule_ids=ids,
            decision_id=item.decision_id,
            policy_version=item.policy_version,
        )
    return item


# -- exactly once --------------------------------------------------------------------------


@dataclass(frozen=True)
class Granted:
    item: ReviewItem
    edited_args: dict[str, Any] | None
    token: str  # the claim's secret: renews the lease and records the outcome
    lease_seconds: float


CLAIM_WAIT = 60.0  # how long a claim waits for another runner of the same item, by default


def claim_grant(
    px: Proctor, item_id: str, original_digest: str | None, wait: float | None = None
) -> Granted | None:
    """Claim the right to run; None when it already ran (its recorded result stands).

    While another runner holds the claim this waits for its outcome, at most ``wait``
    seconds (default ``CLAIM_WAIT``): past that, ``StillRunning``. If that runner's lease
    lapses meanwhile, ``InDoubt``.
    """
    backend = px.backend
    owner = owner_id()
    token = secrets.token_hex(16)
    deadline = time.monotonic() + (CLAIM_WAIT if wait is None else wait)
    while True:
        found = backend.claim(item_id, original_digest, owner, token)
        state = found.state
        if state == "claimed":
            item = backend.item(item_id)
            return Granted(item, item.edited_args, token, found.lease_seconds)
        if state == "held":  # approved, but other approvals pending in its run come first
            wait_for_holds(px, found.held_by, deadline - time.monotonic(), item_id)
            continue
        if state == "refused":
            raise Denied(
                found.reason or f"item {item_id}'s run was refused", rule_ids=(RUN_REJECTED,)
            )
        if state == "busy":  # another runner holds it: wait for its outcome, claiming again
            # every few seconds, which notices when its lease lapses
            left = deadline - time.monotonic()
            if left <= 0:
                raise StillRunning(
                    f"item {item_id} is being run by another process, which still holds its"
                    " claim; its outcome is not recorded yet. Ask again later.",
                    item_id=item_id,
                )
            backend.wait_while(item_id, ("executing",), min(left, RECHECK_SECONDS))
            continue
        if state == "done":
            return None
        item = backend.item(item_id)
        if state == "frozen":
            raise Denied(
                f"agent '{item.agent}' is stopped by the kill switch: its approved"
                f" action {item_id} is frozen until the agent is revived",
                rule_ids=("kill-switch",),
                decision_id=item.decision_id,
            )
        if state == "failed":
            error_type = (item.result_error or "Error").split(":", 1)[0]
            raise ToolFailed(
                f"the approved action ran and failed: {item.result_error}",
                error_type=error_type,
                item_id=item_id,
            )
        if state == "in_doubt":
            raise InDoubt(
                f"item {item_id} was claimed by a runner that stopped answering before it"
                " recorded the outcome; the action may or may not have happened. A human must"
                " check, then approve it again (confirming it did not happen) or reject it.",
                item_id=item_id,
            )
        if state == "pending":
            raise pending_error(item_id, f"item {item_id} has not been approved yet")
        _settled(item)
        raise Denied(f"item {item_id} cannot run: it is {item.status}")


def wait_for_holds(px: Proctor, held_by: tuple[str, ...], budget: float | None, what: str) -> None:
    """Wait while any of ``held_by`` is pending, at most ``budget`` seconds (None: until each
    one's review timeout); still pending then: ``Denied`` (rule ``run-held``)."""
    give_up = None if budget is None else time.monotonic() + max(budget, 0.0)
    for item_id in held_by:
        if give_up is None:
            item = px.backend.item(item_id)
            left = max(0.0, (item.expires_at or _clock.now() + 3600) - _clock.now())
        else:
            left = max(0.0, give_up - time.monotonic())
        status = (
            px.backend.status(item_id)
            if left == 0
            else (px.backend.wait_while(item_id, ("pending",), left))
        )
        if status == "pending":
            raise Denied(
                f"{what} waits: review item {item_id} in the same run awaits a human (the"
                " policy holds a run while an approval in it is pending)",
                rule_ids=(RUN_HELD,),
            )


def _grant_verdict(item: ReviewItem) -> Verdict:
    decision = Decision(
        "allow",
        tuple(item.rule_ids),
        f"approved by {item.decided_by}",
        item.policy_version,
        item.risk,
    )
    return Verdict(decision, item.decision_id, item.decision_seq, item.id)


def _granted_action(spec: ToolSpec, item: ReviewItem, args: dict[str, Any]) -> Action:
    return Action(item.agent, spec.name, args, item.context, spec.reversible, spec.reads)


def run_sync(
    px: Proctor,
    spec: ToolSpec,
    granted: Granted,
    run: Run | None,
    call: tuple[tuple[Any, ...], dict[str, Any]],
) -> Any:
    item = granted.item
    action = _granted_action(spec, item, spec.named(spec.bind(*call)))
    start = time.perf_counter()
    try:
        with px.heartbeat.holding(("item", item.id), granted.token, granted.lease_seconds):
            result = spec.fn(*call[0], **call[1])
    except Exception as exc:
        _finish(px, granted, action, run, None, exc, start)
        raise
    _finish(px, granted, action, run, result, None, start)
    return result


async def run_async(
    px: Proctor,
    spec: ToolSpec,
    granted: Granted,
    run: Run | None,
    call: tuple[tuple[Any, ...], dict[str, Any]],
) -> Any:
    item = granted.item
    action = _granted_action(spec, item, spec.named(spec.bind(*call)))
    start = time.perf_counter()
    try:
        with px.heartbeat.holding(("item", item.id), granted.token, granted.lease_seconds):
            result = await spec.fn(*call[0], **call[1])
    except (Exception, asyncio.CancelledError) as exc:
        # shielded: a cancelled caller must not stop the outcome from being recorded
        await asyncio.shield(asyncio.to_thread(_finish, px, granted, action, run, None, exc, start))
        raise
    await asyncio.shield(asyncio.to_thread(_finish, px, granted, action, run, result, None, start))
    return result


def _finish(
    px: Proctor,
    granted: Granted,
    action: Action,
    run: Run | None,
    result: Any,
    error: BaseException | None,
    start: float,
) -> None:
    item = granted.item
    duration = time.perf_counter() - start
    with_retries(
        lambda: px.backend.record_outcome(
            _grant_verdict(item),
            action,
            run,
            error=error,
            duration=duration,
            item_id=item.id,
            result=result,
            claim_token=granted.token,
        ),
        granted.lease_seconds,
        f"item {item.id} goes in doubt when its lease runs out, for a human to settle",
    )


def with_retries(write: Callable[[], Any], bound: float, then: str) -> Any:
    """An outcome write, retried while the store is unavailable, for at most ``bound``
    seconds: the tool has run, and its outcome is worth waiting a little for."""
    deadline = time.monotonic() + bound
    delay = 0.05
    while True:
        try:
            return write()
        except StoreError as exc:
            if time.monotonic() + delay > deadline:
                raise StoreError(
                    f"the tool ran, but its outcome could not be recorded within {bound:g} s"
                    f" ({exc}); {then}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def resume_call(
    spec: ToolSpec, item: ReviewItem, args: dict[str, Any] | None
) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """The call to make for an approved item, from its stored exact arguments or ``args``."""
    if spec.skip_first:
        raise InvalidRequest(f"'{spec.name}' is a method: resume it where its instance lives")
    if args is None:
        if item.kind == "choice" and item.options is not None and item.chosen is not None:
            args = item.options[item.chosen].get("exec_args")
        else:
            args = item.exec_args
        if args is None:
            raise InvalidRequest(
                f"item {item.id}'s arguments had masked fields; pass args= with the originals"
            )
    digest = hashlib.sha256(canonical(args)).hexdigest()
    if item.kind != "choice" and digest != item.args_digest:
        raise InvalidRequest("these arguments are not the ones the item was opened for")
    named = {**args, **(item.edited_args or {})}
    positional = [
        p for p in spec.signature.parameters.values() if p.kind is inspect.Parameter.VAR_POSITIONAL
    ]
    if positional and positional[0].name in named:
        values = named.pop(positional[0].name)
        return tuple(values), named, digest
    return (), named, digest

"""Decide a call, then run it under that decision: the two steps every wrapped tool takes,
and framework adapters take separately (``px.decide`` then ``px.execute``).

Everything that may block (deciding, waiting for a human, for a hold, for another runner,
reconciling) happens in ``prepare``, which is synchronous: async tools run it on a worker
thread and only await the body itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, Conflict, DeadlineExceeded, Denied, InDoubt, StillRunning
from .approvals import (
    CLAIM_WAIT,
    Granted,
    answer,
    claim_grant,
    run_async,
    run_sync,
    with_retries,
)
from .execution.calls import CallRef
from .execution.leases import owner_id
from .gate import RUN_HELD, CallOutcome, Verdict
from .healing import (
    RECOVERED_BY_LOOKUP,
    RECOVERED_BY_RETRY,
    Healing,
    breaker_refused,
    fallback_for,
    healing_of,
    run_with_healing,
    run_with_healing_async,
)
from .heartbeat import Held
from .policy import Action, Decision
from .reconcile import is_ambiguous, reconcile
from .runs import Run

if TYPE_CHECKING:
    from .sdk import Proctor
    from .tools import ToolSpec

_CALL_ID: ContextVar[str | None] = ContextVar("proctor_call_id", default=None)
BUSY_POLL = (0.05, 1.0)  # first and longest pause between looks at another runner's call


@contextmanager
def call_id(value: str) -> Iterator[None]:
    """Give the gated call made inside the block this identity (a framework's tool-call id,
    a business key): a repeat with the same identity and arguments returns the recorded
    result instead of running again."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ConfigError("a call id is a non-empty string of at most 200 characters")
    token = _CALL_ID.set(value)
    try:
        yield
    finally:
        _CALL_ID.reset(token)


@dataclass
class Call:
    """A decided call: what the gate said, and, for a call with an identity, where it stands.

    ``status``: ``allowed`` (run it), ``denied``, ``review`` (a human decides first),
    ``held`` (allowed, but an approval pending in its run comes first), ``done`` (it ran;
    ``result`` is what it returned), ``busy`` (another runner is running it), ``unknown``
    (it may or may not have happened) or ``conflict`` (the identity was used with other
    arguments).
    """

    agent: str
    tool: str
    args: dict[str, Any]
    key: str | None
    verdict: Verdict
    spec: ToolSpec = field(repr=False)
    run: Run | None = field(default=None, repr=False)
    call_args: tuple[tuple[Any, ...], dict[str, Any]] = field(default=((), {}), repr=False)
    token: str | None = field(default=None, repr=False)
    owner: str = field(default="", repr=False)
    executed: bool = field(default=False, repr=False)
    waited_on: tuple[str, ...] = field(default=(), repr=False)  # items that held it
    fallback_of: str | None = field(default=None, repr=False)  # the call it stands in for

    @property
    def id(self) -> str | None:
        """The call's id: its identity's record, or its decision record without one."""
        return self.verdict.call.id if self.verdict.call is not None else self.verdict.id

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def item_id(self) -> str | None:
        return self.verdict.item_id

    @property
    def result(self) -> Any:
        state = self.verdict.call
        return state.result if state is not None and state.status == "done" else None

    @property
    def status(self) -> str:
        state = self.verdict.call
        if state is not None and state.status in ("done", "busy", "unknown", "conflict"):
            return state.status
        if self.verdict.decision.decision == "deny":
            return "denied"
        if self.verdict.decision.decision == "review":
            return "review"
        return "held" if self.verdict.held_by else "allowed"

    def action(self) -> Action:
        context = self.run.context if self.run is not None else {}
        if self.fallback_of is not None:
            context = {**context, "fallback_of": self.fallback_of}
        return Action(
            self.agent, self.tool, self.args, context, self.spec.reversible, self.spec.reads
        )


def decide(
    px: Proctor,
    spec: ToolSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: str | None = None,
) -> Call:
    action, run = spec.action(args, kwargs)
    key = key or _CALL_ID.get() or spec.key_for(action.args)
    if key is None and run is not None:
        key = run.next_durable_key(action.tool)
    token = os.urandom(16).hex() if key is not None else None
    call = Call(
        action.agent,
        action.tool,
        action.args,
        key,
        px.backend.decide(action, run, spec.params, _ref(key, token, owner := owner_id())),
        spec,
        run,
        (args, kwargs),
        token,
        owner,
    )
    return call


def _ref(key: str | None, token: str | None, owner: str) -> CallRef | None:
    return CallRef(key, token, owner) if key is not None and token is not None else None


def redecide(px: Proctor, call: Call) -> Call:
    """Ask again: after a hold cleared, or while another runner works on the same call. A
    rejection of an item that held it refuses it (it depended on that item)."""
    waited_on = tuple(dict.fromkeys((*call.waited_on, *call.verdict.held_by)))
    verdict = px.backend.decide(
        call.action(),
        call.run,
        call.spec.params,
        _ref(call.key, call.token, call.owner),
        waited_on,
    )
    return replace(call, verdict=verdict, waited_on=waited_on)


# -- what a decided call needs before its body may run ------------------------------------


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` settled: a recorded result, a grant to run under, or a plain run."""

    call: Call
    done: bool = False
    result: Any = None
    granted: Granted | None = None
    refused: Denied | None = None  # its breaker refused it and a fallback may stand in


def prepare(px: Proctor, call: Call, wait: float | None) -> Prepared:
    """Everything before the body: denials raised, holds and other runners waited for,
    unknown calls reconciled, reviews answered and grants claimed."""
    if call.executed:
        raise Conflict(f"call {call.id} was already executed by this handle")
    give_up = None if wait is None else time.monotonic() + wait
    # Another runner on the same call finishes in moments: waiting for it is not waiting
    # for a human, so even wait=0 waits for it (up to the claim's own bound).
    busy_until = time.monotonic() + (wait if wait else CLAIM_WAIT)
    pause = BUSY_POLL[0]
    while True:
        verdict, state = call.verdict, call.verdict.call
        if state is not None and state.status == "conflict":
            raise Conflict(state.error or "this call's identity was used with other arguments")
        if verdict.decision.decision == "deny":
            d = verdict.decision
            denied = Denied(
                d.reason,
                rule_ids=d.rule_ids,
                decision_id=verdict.id,
                policy_version=d.policy_version,
            )
            if breaker_refused(denied, call.tool) and verdict.healing:
                return Prepared(call, refused=denied)
            raise denied
        if state is not None and state.status == "done":
            return Prepared(call, done=True, result=state.result)
        if state is not None and state.status == "busy":
            left = busy_until - time.monotonic()
            if left <= 0:
                raise StillRunning(
                    f"call {call.key!r} is being run by another runner, which still holds"
                    " its claim; its outcome is not recorded yet",
                    item_id=state.id,
                )
            time.sleep(min(pause, left))
            pause = min(pause * 2, BUSY_POLL[1])
            call = redecide(px, call)
            continue
        if state is not None and state.status == "unknown":
            call = reconcile(px, call)  # done, claimed for one retry, or InDoubt
            continue
        if verdict.held_by:
            from .approvals import wait_for_holds

            if wait == 0:
                raise Denied(
                    f"run {call.run.id if call.run else ''} is held: review item"
                    f" {verdict.held_by[0]} awaits a human",
                    rule_ids=(RUN_HELD,),
                    decision_id=verdict.id,
                )
            wait_for_holds(px, verdict.held_by, _left_or_none(give_up), f"{call.tool}")
            call = redecide(px, call)
            continue
        if verdict.decision.decision == "review":
            item = answer(px, replace(call.spec, wait=wait), verdict, call.run)
            granted = claim_grant(px, item.id, item.args_digest, wait)
            if granted is None:
                return Prepared(call, done=True, result=px.recorded_result(item.id))
            return Prepared(call, granted=granted)
        return Prepared(call)


def _left_or_none(give_up: float | None) -> float | None:
    return None if give_up is None else max(0.0, give_up - time.monotonic())


# -- running the body --------------------------------------------------------------------


def run(px: Proctor, prepared: Prepared) -> Any:
    call = prepared.call
    if prepared.done:
        return prepared.result
    spec = call.spec
    call.executed = True
    if prepared.refused is not None:
        heal = healing_of(call)
        assert heal is not None
        return recover(px, call, heal, prepared.refused)
    if prepared.granted is not None:
        edited = spec.with_edits(*call.call_args, prepared.granted.edited_args)
        return run_sync(px, spec, prepared.granted, call.run, edited)
    args, kwargs = call.call_args
    heal = healing_of(call)
    start = time.perf_counter()
    held = _hold_lease(px, call)
    try:
        result = spec.fn(*args, **kwargs) if heal is None else run_with_healing(px, call, heal)
    except Exception as exc:
        _release(px, held)
        if heal is None:
            record(px, call, None, exc, start, _healed(call, heal, ok=False))
            raise
        if heal.committed is not None:  # a lookup found the effect: done, with its result
            record(px, call, heal.committed[0], None, start, heal.healed(RECOVERED_BY_LOOKUP))
            return heal.committed[0]
        record(px, call, None, exc, start, _healed(call, heal, ok=False))
        return recover(px, call, heal, exc)
    except BaseException:
        _release(px, held)
        raise
    _release(px, held)
    record(px, call, result, None, start, _healed(call, heal, ok=True))
    return result


def _healed(call: Call, heal: Healing | None, ok: bool) -> dict[str, Any] | None:
    """What the outcome says of healing: its tries, what recovered it (a success after
    more than one try was a retry), and, for a fallback, the call it stood in for."""
    fields: dict[str, Any] = {}
    if heal is not None:
        recovered = RECOVERED_BY_RETRY if ok and heal.attempts > 1 else None
        fields = heal.healed(recovered)
    if call.fallback_of:
        fields["fallback_of"] = call.fallback_of
    return fields or None


def recover(px: Proctor, call: Call, heal: Healing, error: BaseException) -> Any:
    """After the last try failed (or the breaker refused): the fallback, once, if the
    policy names one; then, if failure persists, a person. The error is raised otherwise,
    and at once when it is not a failure of the service (not named in ``retry.on``): a
    declined card is an answer, not an outage."""
    if not breaker_refused(error, call.tool) and not heal.is_service_failure(error):
        raise error
    fallback = fallback_for(heal) if call.fallback_of is None else None  # never a chain
    if fallback is not None and heal.may_have_happened(call, error):
        error.add_note(
            f"no fallback ran: {call.tool} may have happened ({type(error).__name__}), and"
            f" {fallback[0]} in its place could do it twice"
        )
        fallback = None
    if fallback is not None:
        try:
            return _run_fallback(px, call, *fallback)
        except Exception as failed:  # noqa: BLE001 - recorded in the history and the note
            heal.history.append(_failed_entry("fallback", fallback[0], failed))
            error.add_note(
                f"its fallback {fallback[0]} did not help: {type(failed).__name__}: {failed}"
            )
    elif "fallback_call" in heal.settings and call.fallback_of is None:
        error.add_note(f"no fallback ran: {heal.settings['fallback_call'].get('error')}")
    if heal.escalate is None:
        raise error
    return _escalate(px, call, heal, error)


def _failed_entry(what: str, tool: str, error: BaseException) -> dict[str, Any]:
    return {"what": what, "tool": tool, "error_type": type(error).__name__, "error": str(error)}


def _run_fallback(px: Proctor, call: Call, tool: str, args: dict[str, Any]) -> Any:
    """The fallback is a call of its own: decided by the gate (its envelope, rules and
    limits), linked to the call it stands in for, run once and never falling back again."""
    spec = px.registered(call.agent, tool)
    stand_in = Call(
        call.agent,
        tool,
        args,
        f"{call.key}/fallback" if call.key else None,
        call.verdict,
        spec,
        call.run,
        ((), args),
        fallback_of=call.id,
    )
    decided = px.backend.decide(
        stand_in.action(),
        call.run,
        spec.params,
        _ref(stand_in.key, (token := os.urandom(16).hex()), call.owner),
    )
    stand_in = replace(stand_in, verdict=decided, token=token, owner=call.owner)
    prepared = prepare(px, stand_in, spec.wait)
    if spec.is_async:
        return asyncio.run(run_async_prepared(px, prepared))
    return run(px, prepared)


def _escalate(px: Proctor, call: Call, heal: Healing, error: BaseException) -> Any:
    """An exception item for a person with the failure history. ``run: stop`` raises the
    error, naming the item; ``run: wait`` waits for the person: approving runs the call
    once more (exactly once), rejecting raises ``Rejected`` with their reason."""
    escalate = heal.escalate or {}
    tries = max(heal.attempts, 1)
    why = (
        f"{call.tool} failed {tries} time{'s' if tries != 1 else ''}"
        f" ({type(error).__name__}: {str(error)[:200]}); self-healing could not recover it"
    )
    item_id = px.backend.escalate_failure(
        call.verdict,
        call.action(),
        call.run,
        why=why,
        history=heal.history,
        params=call.spec.params,
        call_id=call.id if call.verdict.call is not None else None,
    )
    if escalate.get("run") != "wait":
        error.add_note(f"escalated to a person: review item {item_id}")
        raise error
    verdict = replace(call.verdict, item_id=item_id)
    item = answer(px, call.spec, verdict, call.run)
    granted = claim_grant(px, item.id, item.args_digest, call.spec.wait)
    if granted is None:
        return px.recorded_result(item.id)
    edited = call.spec.with_edits(*call.call_args, granted.edited_args)
    if call.spec.is_async:
        return asyncio.run(run_async(px, call.spec, granted, call.run, edited))
    return run_sync(px, call.spec, granted, call.run, edited)


async def run_async_prepared(px: Proctor, prepared: Prepared) -> Any:
    call = prepared.call
    if prepared.done:
        return prepared.result
    spec = call.spec
    call.executed = True
    if prepared.refused is not None:
        heal = healing_of(call)
        assert heal is not None
        return await asyncio.to_thread(recover, px, call, heal, prepared.refused)
    if prepared.granted is not None:
        edited = spec.with_edits(*call.call_args, prepared.granted.edited_args)
        return await run_async(px, spec, prepared.granted, call.run, edited)
    args, kwargs = call.call_args
    heal = healing_of(call)
    start = time.perf_counter()
    held = _hold_lease(px, call)
    try:
        if heal is None:
            result = await spec.fn(*args, **kwargs)
        else:
            result = await run_with_healing_async(px, call, heal)
    except (Exception, asyncio.CancelledError) as exc:
        _release(px, held)
        if heal is not None and heal.committed is not None and isinstance(exc, Exception):
            found = heal.committed[0]
            by_lookup = heal.healed(RECOVERED_BY_LOOKUP)
            await asyncio.shield(asyncio.to_thread(record, px, call, found, None, start, by_lookup))
            return found
        # shielded: a cancelled caller must not stop the outcome from being recorded
        failed = _healed(call, heal, ok=False)
        await asyncio.shield(asyncio.to_thread(record, px, call, None, exc, start, failed))
        if heal is not None and isinstance(exc, Exception):
            return await asyncio.to_thread(recover, px, call, heal, exc)
        raise
    except BaseException:
        _release(px, held)
        raise
    _release(px, held)
    healed = _healed(call, heal, ok=True)
    await asyncio.shield(asyncio.to_thread(record, px, call, result, None, start, healed))
    return result


def _hold_lease(px: Proctor, call: Call) -> Held | None:
    """A claimed call's lease is renewed while its body runs (until ``_release``)."""
    state = call.verdict.call
    if state is None or call.token is None:
        return None
    held: Held = ("call", state.id)
    px.heartbeat.hold(held, call.token, state.lease_seconds)
    return held


def _release(px: Proctor, held: Held | None) -> None:
    if held is not None:
        px.heartbeat.release(held)


def record(
    px: Proctor,
    call: Call,
    result: Any,
    error: BaseException | None,
    start: float,
    healed: dict[str, Any] | None = None,
) -> None:
    """The outcome, retried while the store is unavailable (the body has run)."""
    state = call.verdict.call
    outcome = None
    if state is not None and call.token is not None:
        outcome = CallOutcome(
            state.id,
            call.token,
            result,
            ambiguous=error is not None
            and (isinstance(error, DeadlineExceeded) or is_ambiguous(call.spec, error)),
            has_lookup=call.spec.lookup is not None,
        )
    duration = time.perf_counter() - start
    with_retries(
        lambda: px.backend.record_outcome(
            call.verdict,
            call.action(),
            call.run,
            error=error,
            duration=duration,
            params=call.spec.params if error is not None else None,
            call=outcome,
            healed=healed,
        ),
        px.lease_seconds,
        "its decision is recorded, its outcome is not"
        if outcome is None
        else f"call {call.key!r} becomes unknown when its lease runs out, to be reconciled",
    )


def raise_in_doubt(call: Call, why: str, item_id: str | None) -> InDoubt:
    return InDoubt(
        f"call {call.key!r} of {call.tool} may or may not have happened ({why}); it is never"
        " run blindly" + (f": a person settles it in review item {item_id}" if item_id else ""),
        item_id=item_id or "",
        call_id=call.id,
    )

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

from ._errors import ConfigError, Conflict, Denied, InDoubt, StillRunning
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
            raise Denied(
                d.reason,
                rule_ids=d.rule_ids,
                decision_id=verdict.id,
                policy_version=d.policy_version,
            )
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
    if prepared.granted is not None:
        edited = spec.with_edits(*call.call_args, prepared.granted.edited_args)
        return run_sync(px, spec, prepared.granted, call.run, edited)
    args, kwargs = call.call_args
    start = time.perf_counter()
    held = _hold_lease(px, call)
    try:
        result = spec.fn(*args, **kwargs)
    except Exception as exc:
        _release(px, held)
        record(px, call, None, exc, start)
        raise
    except BaseException:
        _release(px, held)
        raise
    _release(px, held)
    record(px, call, result, None, start)
    return result


async def run_async_prepared(px: Proctor, prepared: Prepared) -> Any:
    call = prepared.call
    if prepared.done:
        return prepared.result
    spec = call.spec
    call.executed = True
    if prepared.granted is not None:
        edited = spec.with_edits(*call.call_args, prepared.granted.edited_args)
        return await run_async(px, spec, prepared.granted, call.run, edited)
    args, kwargs = call.call_args
    start = time.perf_counter()
    held = _hold_lease(px, call)
    try:
        result = await spec.fn(*args, **kwargs)
    except (Exception, asyncio.CancelledError) as exc:
        _release(px, held)
        # shielded: a cancelled caller must not stop the outcome from being recorded
        await asyncio.shield(asyncio.to_thread(record, px, call, None, exc, start))
        raise
    except BaseException:
        _release(px, held)
        raise
    _release(px, held)
    await asyncio.shield(asyncio.to_thread(record, px, call, result, None, start))
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


def record(px: Proctor, call: Call, result: Any, error: BaseException | None, start: float) -> None:
    """The outcome, retried while the store is unavailable (the body has run)."""
    state = call.verdict.call
    outcome = None
    if state is not None and call.token is not None:
        outcome = CallOutcome(
            state.id,
            call.token,
            result,
            ambiguous=error is not None and is_ambiguous(call.spec, error),
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

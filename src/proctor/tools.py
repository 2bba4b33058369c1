"""``@px.tool``: put a sync or async callable behind the gate, and run approved actions once."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from . import _clock
from ._canonical import canonical
from ._errors import (
    ConfigError,
    Denied,
    InDoubt,
    InvalidRequest,
    Rejected,
    ReviewPending,
    StillRunning,
    StoreError,
    ToolFailed,
)
from .gate import Verdict
from .policy import Action, Decision
from .review.grants import owner_id
from .review.items import RECHECK_SECONDS, ReviewItem
from .review.params import describe
from .runs import Run, current_run
from .telemetry.tracing import describe_decision, tool_span, wait_span

if TYPE_CHECKING:
    from .sdk import Proctor

RUN_HELD = "run-held"


class _Unset:
    """Distinct from None: ``wait=None`` means "the policy's review timeout"."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    name: str
    agent: str | None
    reversible: bool
    wait: float | None
    reads: tuple[str, ...]
    signature: inspect.Signature
    skip_first: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def named(self, bound: inspect.BoundArguments) -> dict[str, Any]:
        named: dict[str, Any] = {}
        for i, (key, value) in enumerate(bound.arguments.items()):
            if i == 0 and self.skip_first:
                continue
            kind = self.signature.parameters[key].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                named[key] = list(value)
            else:
                named[key] = value
        return named

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        return bound

    def agent_for(self, run: Run | None) -> str:
        agent = self.agent or (run.agent if run is not None else None)
        if agent is None:
            raise ConfigError(
                f"tool '{self.name}' has no agent: pass agent= to @px.tool"
                " or call it inside px.run()"
            )
        return agent

    def action(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Action, Run | None]:
        run = current_run()
        agent = self.agent_for(run)
        named = self.named(self.bind(args, kwargs))
        context = run.context if run is not None else {}
        return Action(agent, self.name, named, context, self.reversible, self.reads), run

    def with_edits(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], edits: dict[str, Any] | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The original call with a reviewer's edits applied, by parameter name."""
        if not edits:
            return args, kwargs
        bound = self.bind(args, kwargs)
        var_kw = next(
            (
                p.name
                for p in self.signature.parameters.values()
                if p.kind is inspect.Parameter.VAR_KEYWORD
            ),
            None,
        )
        for name, value in edits.items():
            if name in self.signature.parameters:
                bound.arguments[name] = value
            elif var_kw is not None:
                bound.arguments[var_kw] = {**bound.arguments.get(var_kw, {}), name: value}
        return bound.args, bound.kwargs


def make_spec(
    fn: Callable[..., Any],
    *,
    agent: str | None,
    name: str | None,
    reversible: bool,
    wait: float | None,
    reads: tuple[str, ...],
) -> ToolSpec:
    if wait is not None and (isinstance(wait, bool) or wait < 0):
        raise ConfigError("wait must be None or a number of seconds >= 0")
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    skip_first = bool(params) and params[0] in ("self", "cls")
    return ToolSpec(
        fn=fn,
        name=name or fn.__name__,
        agent=agent,
        reversible=reversible,
        wait=wait,
        reads=tuple(reads),
        signature=sig,
        skip_first=skip_first,
        params=describe(fn, skip_first),
    )


def wrap(px: Proctor, spec: ToolSpec) -> Callable[..., Any]:
    if spec.is_async:

        async def call_async(args: tuple[Any, ...], kwargs: dict[str, Any], span: Any) -> Any:
            action, run = spec.action(args, kwargs)
            await asyncio.to_thread(_hold, px, spec, action, run)
            verdict = _decide(px, spec, action, run, span)
            _raise_if_denied(verdict)
            if verdict.decision.decision == "review":
                item = await asyncio.to_thread(_answer_traced, px, spec, verdict, run, span)
                claim = await asyncio.to_thread(claim_grant, px, item.id, item.args_digest)
                if claim is None:
                    return px.recorded_result(item.id)
                call = spec.with_edits(args, kwargs, claim.edited_args)
                return await run_async(px, spec, claim, run, call)
            return await execute_async(px, spec, verdict, action, run, args, kwargs)

        @functools.wraps(spec.fn)
        async def async_tool(*args: Any, **kwargs: Any) -> Any:
            tracer = px.tracer
            if tracer is None:
                return await call_async(args, kwargs, None)
            with tool_span(tracer, spec.agent_for(current_run()), spec.name) as span:
                return await call_async(args, kwargs, span)

        async_tool.__proctor_tool__ = spec  # type: ignore[attr-defined]
        px.register(spec)
        return async_tool

    def call(args: tuple[Any, ...], kwargs: dict[str, Any], span: Any) -> Any:
        action, run = spec.action(args, kwargs)
        _hold(px, spec, action, run)
        verdict = _decide(px, spec, action, run, span)
        _raise_if_denied(verdict)
        if verdict.decision.decision == "review":
            item = _answer_traced(px, spec, verdict, run, span)
            claim = claim_grant(px, item.id, item.args_digest)
            if claim is None:
                return px.recorded_result(item.id)
            return run_sync(px, spec, claim, run, spec.with_edits(args, kwargs, claim.edited_args))
        return execute(px, spec, verdict, action, run, args, kwargs)

    @functools.wraps(spec.fn)
    def tool(*args: Any, **kwargs: Any) -> Any:
        tracer = px.tracer
        if tracer is None:  # tracing off: no spans, no attribute work
            return call(args, kwargs, None)
        with tool_span(tracer, spec.agent_for(current_run()), spec.name) as span:
            return call(args, kwargs, span)

    tool.__proctor_tool__ = spec  # type: ignore[attr-defined]
    px.register(spec)
    return tool


def _decide(px: Proctor, spec: ToolSpec, action: Action, run: Run | None, span: Any) -> Verdict:
    verdict = px.backend.decide(action, run, spec.params)
    if span is not None:
        describe_decision(span, verdict.decision, verdict.id, verdict.item_id)
    _note_hold(verdict, run)
    return verdict


def _answer_traced(
    px: Proctor, spec: ToolSpec, verdict: Verdict, run: Run | None, span: Any
) -> ReviewItem:
    if span is None or verdict.item_id is None or px.tracer is None:
        return answer(px, spec, verdict, run)
    with wait_span(px.tracer, verdict.item_id, span):
        return answer(px, spec, verdict, run)


def _note_hold(verdict: Verdict, run: Run | None) -> None:
    """A pending approval holds the rest of its run unless its rule says ``hold_run: false``."""
    if run is not None and verdict.item_id and verdict.decision.hold_run:
        run.holding.add(verdict.item_id)


def _raise_if_denied(verdict: Verdict) -> None:
    d = verdict.decision
    if d.decision == "deny":
        raise Denied(
            d.reason, rule_ids=d.rule_ids, decision_id=verdict.id, policy_version=d.policy_version
        )


def _pending(item_id: str, reason: str, verdict: Verdict | None = None) -> ReviewPending:
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


# -- holding a run -------------------------------------------------------------------------


def _hold(px: Proctor, spec: ToolSpec, action: Action, run: Run | None) -> None:
    """While an approval is pending in a run, the run's next actions wait (or are refused)."""
    if run is None or not run.holding:
        return
    for item_id in sorted(run.holding):
        status = px.backend.status(item_id)
        if status == "pending" and spec.wait != 0:
            budget = spec.wait if spec.wait is not None else _seconds_left(px, item_id)
            status = px.backend.wait_while(item_id, ("pending",), budget)
        if status == "pending":
            reason = (
                f"run {run.id} is held: review item {item_id} awaits a human"
                " (the policy does not let this run go on in parallel)"
            )
            verdict = px.backend.record_refusal(action, run, reason, RUN_HELD)
            raise Denied(reason, rule_ids=(RUN_HELD,), decision_id=verdict.id)
        run.holding.discard(item_id)


def _seconds_left(px: Proctor, item_id: str) -> float:
    item = px.backend.item(item_id)
    return max(0.0, (item.expires_at or _clock.now() + 3600) - _clock.now())


# -- waiting for the human -----------------------------------------------------------------


def answer(px: Proctor, spec: ToolSpec, verdict: Verdict, run: Run | None) -> ReviewItem:
    """Wait for a human within ``wait``; past the review timeout apply ``on_timeout``."""
    item_id = verdict.item_id
    if item_id is None:
        raise Denied("the review item could not be opened", decision_id=verdict.id)
    d = verdict.decision
    if spec.wait == 0:
        raise _pending(
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
            raise _pending(item_id, f"no reviewer has decided review item {item_id} yet", verdict)
        if run is not None:
            run.holding.discard(item_id)
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
        state, lease = backend.claim(item_id, original_digest, owner, token)
        if state == "claimed":
            item = backend.item(item_id)
            return Granted(item, item.edited_args, token, lease)
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
            raise _pending(item_id, f"review item {item_id} has not been approved yet")
        _settled(item)
        raise Denied(f"item {item_id} cannot run: it is {item.status}")


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
        with px.heartbeat.holding(item.id, granted.token, granted.lease_seconds):
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
        with px.heartbeat.holding(item.id, granted.token, granted.lease_seconds):
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
    _with_retries(
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


def _with_retries(write: Callable[[], Any], bound: float, then: str) -> Any:
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


# -- plain execution -----------------------------------------------------------------------


def _record(
    px: Proctor,
    spec: ToolSpec,
    verdict: Verdict,
    action: Action,
    run: Run | None,
    start: float,
    error: BaseException | None,
) -> None:
    duration = time.perf_counter() - start
    _with_retries(
        lambda: px.backend.record_outcome(
            verdict,
            action,
            run,
            error=error,
            duration=duration,
            params=spec.params if error is not None else None,
        ),
        px.lease_seconds,
        "its decision is recorded, its outcome is not",
    )


def execute(
    px: Proctor,
    spec: ToolSpec,
    verdict: Verdict,
    action: Action,
    run: Run | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    start = time.perf_counter()
    try:
        result = spec.fn(*args, **kwargs)
    except Exception as exc:
        _record(px, spec, verdict, action, run, start, exc)
        raise
    _record(px, spec, verdict, action, run, start, None)
    return result


async def execute_async(
    px: Proctor,
    spec: ToolSpec,
    verdict: Verdict,
    action: Action,
    run: Run | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    start = time.perf_counter()
    try:
        result = await spec.fn(*args, **kwargs)
    except (Exception, asyncio.CancelledError) as exc:
        _record(px, spec, verdict, action, run, start, exc)
        raise
    _record(px, spec, verdict, action, run, start, None)
    return result

"""``@px.tool``: put a sync or async callable behind the gate."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._errors import ConfigError, Denied, Rejected, ReviewPending
from .gate import Verdict
from .policy import Action
from .review.items import wait_for_answer, wait_for_answer_async
from .runs import Run, current_run

if TYPE_CHECKING:
    from .sdk import Proctor


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

    def action(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Action, Run | None]:
        run = current_run()
        agent = self.agent or (run.agent if run is not None else None)
        if agent is None:
            raise ConfigError(
                f"tool '{self.name}' has no agent: pass agent= to @px.tool"
                " or call it inside px.run()"
            )
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
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
        context = run.context if run is not None else {}
        return Action(agent, self.name, named, context, self.reversible, self.reads), run


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
    return ToolSpec(
        fn=fn,
        name=name or fn.__name__,
        agent=agent,
        reversible=reversible,
        wait=wait,
        reads=tuple(reads),
        signature=sig,
        skip_first=bool(params) and params[0] in ("self", "cls"),
    )


def wrap(px: Proctor, spec: ToolSpec) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(spec.fn):

        @functools.wraps(spec.fn)
        async def async_tool(*args: Any, **kwargs: Any) -> Any:
            action, run = spec.action(args, kwargs)
            verdict = px.gate.decide(action, run)
            if verdict.decision.decision == "review":
                await _await_review(px, spec, verdict)
            _raise_unless_allowed(verdict)
            return await _execute_async(px, spec, verdict, action, run, args, kwargs)

        async_tool.__proctor_tool__ = spec  # type: ignore[attr-defined]
        return async_tool

    @functools.wraps(spec.fn)
    def tool(*args: Any, **kwargs: Any) -> Any:
        action, run = spec.action(args, kwargs)
        verdict = px.gate.decide(action, run)
        if verdict.decision.decision == "review":
            _handle_answer(px, spec, verdict, _wait_sync(px, spec, verdict))
        _raise_unless_allowed(verdict)
        return _execute(px, spec, verdict, action, run, args, kwargs)

    tool.__proctor_tool__ = spec  # type: ignore[attr-defined]
    return tool


def _raise_unless_allowed(verdict: Verdict) -> None:
    d = verdict.decision
    if d.decision == "deny":
        raise Denied(
            d.reason, rule_ids=d.rule_ids, decision_id=verdict.id, policy_version=d.policy_version
        )


def _wait_seconds(spec: ToolSpec, verdict: Verdict) -> float:
    return verdict.review_timeout if spec.wait is None else spec.wait


def _pending(verdict: Verdict) -> ReviewPending:
    d = verdict.decision
    return ReviewPending(
        f"waiting for a human in queue '{d.queue}': {d.reason}",
        item_id=verdict.item_id or "",
        rule_ids=d.rule_ids,
        decision_id=verdict.id,
        policy_version=d.policy_version,
    )


def _wait_sync(px: Proctor, spec: ToolSpec, verdict: Verdict) -> str:
    if verdict.item_id is None or _wait_seconds(spec, verdict) == 0:
        raise _pending(verdict)
    return wait_for_answer(px.store, verdict.item_id, _wait_seconds(spec, verdict))


async def _await_review(px: Proctor, spec: ToolSpec, verdict: Verdict) -> None:
    if verdict.item_id is None or _wait_seconds(spec, verdict) == 0:
        raise _pending(verdict)
    status = await wait_for_answer_async(px.store, verdict.item_id, _wait_seconds(spec, verdict))
    _handle_answer(px, spec, verdict, status)


def _handle_answer(px: Proctor, spec: ToolSpec, verdict: Verdict, status: str) -> None:
    """Turn the human's answer (or its absence) into what the agent sees."""
    d = verdict.decision
    if status == "approved":
        raise ReviewPending(  # running an approved action arrives with grants
            f"item {verdict.item_id} was approved; resume it with px.resume()",
            item_id=verdict.item_id or "",
            rule_ids=d.rule_ids,
            decision_id=verdict.id,
            policy_version=d.policy_version,
        )
    if status == "rejected":
        raise Rejected(
            "a reviewer rejected the action",
            rule_ids=d.rule_ids,
            decision_id=verdict.id,
            policy_version=d.policy_version,
        )
    if status == "expired" or _wait_seconds(spec, verdict) >= verdict.review_timeout:
        px.expire_item(verdict.item_id or "")
        raise Denied(
            f"no reviewer decided within {verdict.review_timeout:g}s; the policy's on_timeout "
            f"is {verdict.on_timeout}",
            rule_ids=d.rule_ids,
            decision_id=verdict.id,
            policy_version=d.policy_version,
        )
    raise _pending(verdict)


def _execute(
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
        px.gate.record_outcome(
            verdict, action, run, error=exc, duration=time.perf_counter() - start
        )
        raise
    px.gate.record_outcome(verdict, action, run, error=None, duration=time.perf_counter() - start)
    return result


async def _execute_async(
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
    except Exception as exc:
        px.gate.record_outcome(
            verdict, action, run, error=exc, duration=time.perf_counter() - start
        )
        raise
    except asyncio.CancelledError as exc:
        px.gate.record_outcome(
            verdict, action, run, error=exc, duration=time.perf_counter() - start
        )
        raise
    px.gate.record_outcome(verdict, action, run, error=None, duration=time.perf_counter() - start)
    return result

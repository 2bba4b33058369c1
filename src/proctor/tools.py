"""``@px.tool``: put a sync or async callable behind the gate.

A wrapped call is decided (``calls.decide``), prepared (held, reviewed, reconciled:
``calls.prepare``) and run once (``calls.run``); the pieces live in ``calls`` and
``approvals``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ._canonical import canonical
from ._errors import ConfigError
from .calls import Call, Prepared, decide, prepare, run, run_async_prepared
from .policy import Action
from .review.params import describe, from_json_schema
from .runs import Run, current_run
from .telemetry.tracing import describe_decision, tool_span, wait_span

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
    params: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, ...] | None = None  # named arguments whose values are the call's identity
    ambiguous: tuple[type[BaseException], ...] | None = None  # errors that may have committed
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict, compare=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def lookup(self) -> Callable[..., Any] | None:
        """The tool's reconciliation lookup (``@tool.reconcile``), if it has one."""
        return self.hooks.get("reconcile")

    def key_for(self, args: dict[str, Any]) -> str | None:
        """The identity the declared ``key`` arguments give this call (``order_id=A-17``)."""
        if not self.key:
            return None
        parts = []
        for name in self.key:
            value = args.get(name)
            text = value if isinstance(value, str) else canonical(value).decode()
            parts.append(f"{name}={text}")
        key = "&".join(parts)
        return key if len(key) <= 200 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()

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
    key: tuple[str, ...] | None = None,
    ambiguous: tuple[type[BaseException], ...] | None = None,
    schema: dict[str, Any] | None = None,
) -> ToolSpec:
    if wait is not None and (isinstance(wait, bool) or wait < 0):
        raise ConfigError("wait must be None or a number of seconds >= 0")
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    skip_first = bool(params) and params[0] in ("self", "cls")
    if key is not None:
        key = (key,) if isinstance(key, str) else tuple(key)
        unknown = [k for k in key if k not in sig.parameters]
        if not key or unknown:
            raise ConfigError(
                f"key= names arguments of the tool; {fn.__name__} has no {unknown or 'argument'}"
            )
    if ambiguous is not None and not all(
        isinstance(e, type) and issubclass(e, BaseException) for e in ambiguous
    ):
        raise ConfigError("ambiguous= is a tuple of exception classes")
    return ToolSpec(
        fn=fn,
        name=name or fn.__name__,
        agent=agent,
        reversible=reversible,
        wait=wait,
        reads=tuple(reads),
        signature=sig,
        skip_first=skip_first,
        params=from_json_schema(schema) if schema is not None else describe(fn, skip_first),
        key=key,
        ambiguous=tuple(ambiguous) if ambiguous is not None else None,
    )


def wrap(px: Proctor, spec: ToolSpec) -> Callable[..., Any]:
    if spec.is_async:

        async def call_async(args: tuple[Any, ...], kwargs: dict[str, Any], span: Any) -> Any:
            call = decide(px, spec, args, kwargs)
            if span is not None:
                describe_decision(span, call.decision, call.verdict.id, call.item_id)
            if _needs_waiting(call):
                prepared = await asyncio.to_thread(_prepare_traced, px, call, span)
            else:
                prepared = prepare(px, call, spec.wait)
            return await run_async_prepared(px, prepared)

        @functools.wraps(spec.fn)
        async def async_tool(*args: Any, **kwargs: Any) -> Any:
            tracer = px.tracer
            if tracer is None:
                return await call_async(args, kwargs, None)
            with tool_span(tracer, spec.agent_for(current_run()), spec.name) as span:
                return await call_async(args, kwargs, span)

        return _finish_wrapping(px, spec, async_tool)

    def call_sync(args: tuple[Any, ...], kwargs: dict[str, Any], span: Any) -> Any:
        call = decide(px, spec, args, kwargs)
        if span is not None:
            describe_decision(span, call.decision, call.verdict.id, call.item_id)
        return run(px, _prepare_traced(px, call, span))

    @functools.wraps(spec.fn)
    def tool(*args: Any, **kwargs: Any) -> Any:
        tracer = px.tracer
        if tracer is None:  # tracing off: no spans, no attribute work
            return call_sync(args, kwargs, None)
        with tool_span(tracer, spec.agent_for(current_run()), spec.name) as span:
            return call_sync(args, kwargs, span)

    return _finish_wrapping(px, spec, tool)


def _finish_wrapping(px: Proctor, spec: ToolSpec, fn: Callable[..., Any]) -> Callable[..., Any]:
    def reconcile(lookup: Callable[..., Any]) -> Callable[..., Any]:
        """Register the tool's lookup: asked whether a call that may or may not have
        happened did, it returns ``Committed(result)``, ``NotCommitted()`` or
        ``Conflicting(evidence)``."""
        spec.hooks["reconcile"] = lookup
        return lookup

    fn.__proctor_tool__ = spec  # type: ignore[attr-defined]
    fn.reconcile = reconcile  # type: ignore[attr-defined]
    px.register(spec)
    return fn


def _needs_waiting(call: Call) -> bool:
    """Whether ``prepare`` may block (a review, a hold, another runner, reconciling)."""
    state = call.verdict.call
    return bool(
        call.verdict.decision.decision == "review"
        or call.verdict.held_by
        or (state is not None and state.status in ("busy", "unknown"))
    )


def _prepare_traced(px: Proctor, call: Call, span: Any) -> Prepared:
    item_id = call.item_id
    if span is None or item_id is None or px.tracer is None or call.status != "review":
        return prepare(px, call, call.spec.wait)
    with wait_span(px.tracer, item_id, span):
        return prepare(px, call, call.spec.wait)

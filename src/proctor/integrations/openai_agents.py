"""The OpenAI Agents SDK, gated by Proctor: one decision per tool call, one approval authority.

``gated_tool(px, tool)`` turns a ``@px.tool`` function into an SDK ``FunctionTool`` whose
``needs_approval`` asks Proctor, keyed by the SDK's ``call_id``:

- allow: no SDK approval; the body runs under that very decision (``px.execute``), once;
- deny: no SDK approval either; the body is never run and the model reads the refusal in
  plain words (what was refused, why, the rule ids) instead of "please try again";
- review: the run is interrupted; ``item_for`` names the Proctor item of an interruption.

People decide in Proctor (console, API, CLI), and ``apply_decisions(px, state)`` carries
their decisions onto the ``RunState``: approve (an edit runs with the edited arguments),
reject (``rejection_message`` is the reviewer's reason). ``approve`` and ``reject`` here
record a reviewer's decision in Proctor first, then apply it. A bare ``state.approve(...)``
in the SDK grants nothing: the body finds Proctor's item pending and the run stops with
``ReviewPending`` naming the item, so there is never a second approval authority.

A resumed run (``RunState.from_json``) runs an approved body once however often the same
saved state is resumed, from any process: the call's identity is its ``call_id``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._errors import (
    DecisionError,
    Denied,
    InDoubt,
    InvalidRequest,
    ProctorError,
    Rejected,
    ReviewPending,
    ToolFailed,
)
from .._extras import missing
from ..calls import Call
from ..calls import decide as decide_call
from ..tools import ToolSpec

try:
    from agents import FunctionTool, RunContextWrapper, default_tool_error_function
    from agents.function_schema import FuncSchema, function_schema
    from agents.items import ToolApprovalItem
    from agents.run_state import RunState
    from agents.tool_context import ToolContext
except ImportError as exc:  # pragma: no cover - exercised by the install test
    raise missing("openai-agents", exc) from exc

if TYPE_CHECKING:
    from ..sdk import Proctor

__all__ = [
    "Applied",
    "BadArguments",
    "apply_decisions",
    "approve",
    "gated_tool",
    "item_for",
    "reject",
    "tool_error_message",
]

ErrorFunction = Callable[[RunContextWrapper[Any], Exception], str | Awaitable[str]]
_REMEMBERED = 4096  # decided calls waiting for their body, per tool (bounded)
_DECIDED_STATUSES = ("allowed", "denied", "done", "busy", "unknown", "conflict")


# -- what the model reads ---------------------------------------------------------------------


class BadArguments(InvalidRequest):
    """The model's arguments do not fit the tool: nothing was decided or run."""


def _rules(exc: DecisionError) -> str:
    return f" (rules: {', '.join(exc.rule_ids)})" if exc.rule_ids else ""


def _refusal(tool: str, exc: DecisionError) -> str:
    """A refusal in plain words: what was refused, by whom, why, and that it did not run."""
    reason = exc.reason.rstrip(". ")
    if isinstance(exc, Rejected):
        return (
            f"A human reviewer rejected the call to {tool}{_rules(exc)}: {reason}. It did not"
            " run. Do not repeat it as it was; tell the user or try another way."
        )
    return (
        f"Policy refused the call to {tool}{_rules(exc)}: {reason}. It did not run, and the"
        " same call would be refused again."
    )


def tool_error_message(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """A ``failure_error_function`` for any SDK tool: Proctor's refusals in plain words
    (what was refused and why, with the rule ids); other errors as the SDK says them."""
    tool = getattr(ctx, "tool_name", None) or "the tool"
    if isinstance(error, (Denied, Rejected)):
        return _refusal(tool, error)
    if isinstance(error, BadArguments):
        return f"The call to {tool} was not run: {error}. Call it again with valid arguments."
    if isinstance(error, InDoubt):
        return (
            f"The call to {tool} may or may not have happened; it will not be repeated until a"
            f" person settles it (Proctor review item {error.item_id}). Do not call it again."
        )
    if isinstance(error, ToolFailed):  # the error's text stays out, as the SDK keeps it
        return (
            f"The approved call to {tool} ran earlier and failed ({error.error_type}); it does"
            " not run again under that approval."
        )
    return default_tool_error_function(ctx, error)


# -- the gated tool ---------------------------------------------------------------------------


@dataclass
class _Failed:
    """A Proctor failure met while deciding: the body raises it, so the run stops visibly
    (the SDK would otherwise turn an error in ``needs_approval`` into a silent approval)."""

    error: ProctorError


class _Gate:
    """The ``on_invoke_tool`` and ``needs_approval`` of one gated tool."""

    def __init__(
        self, px: Proctor, spec: ToolSpec, schema: FuncSchema, on_error: ErrorFunction | None
    ) -> None:
        self.px = px
        self.spec = spec
        self.schema = schema
        self.on_error = on_error
        # Calls decided in needs_approval, for the body that follows in this process: an
        # allowed call is claimed by the decision, so its body must run under that claim.
        self._decided: OrderedDict[str, Call | _Failed] = OrderedDict()

    # -- deciding ------------------------------------------------------------------------

    def validate(self, raw: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The model's arguments as the function takes them (pydantic, as the SDK does)."""
        try:
            parsed = self.schema.params_pydantic_model(**raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise BadArguments(f"its arguments do not fit its parameters ({problems})") from None
        args, kwargs = self.schema.to_call_args(parsed)
        return tuple(args), kwargs

    def decide(self, raw: dict[str, Any], call_id: str) -> Call:
        """Proctor's decision on this call, keyed by its ``call_id``: a repeat gets where the
        call stands (its review item, its recorded result), never a second item."""
        return decide_call(self.px, self.spec, (), dict(raw), call_id)

    def _remember(self, call_id: str, entry: Call | _Failed) -> None:
        self._decided[call_id] = entry
        while len(self._decided) > _REMEMBERED:
            self._decided.popitem(last=False)

    def take(self, call_id: str) -> Call | _Failed | None:
        return self._decided.pop(call_id, None)

    async def needs_approval(
        self, ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        """SDK approval is needed only while a human (or a hold) decides in Proctor."""
        try:
            self.validate(params)
        except BadArguments:
            return False  # nothing to gate: the body tells the model what was wrong
        known = self._decided.get(call_id)
        if isinstance(known, _Failed) or (known is not None and not known.executed):
            return False
        try:
            call = await asyncio.to_thread(self.decide, params, call_id)
        except ProctorError as exc:
            self._remember(call_id, _Failed(exc))
            return False
        if call.status in _DECIDED_STATUSES:
            self._remember(call_id, call)
            return False
        return True  # review, or held by a pending approval in its run

    # -- running -------------------------------------------------------------------------

    async def __call__(self, ctx: ToolContext[Any], input: str) -> Any:
        try:
            return await self._invoke(ctx, input)
        except ReviewPending as exc:
            raise ReviewPending(
                f"{self.spec.name} call {ctx.tool_call_id} was approved in the Agents SDK,"
                f" but Proctor's review item {exc.item_id} is still pending: decide it in"
                " Proctor (console, API, `proctor queue approve`), apply it with"
                " apply_decisions(px, state) or approve it with approve(px, state,"
                " interruption, by=...), then resume from the saved state",
                item_id=exc.item_id,
                rule_ids=exc.rule_ids,
                decision_id=exc.decision_id,
                policy_version=exc.policy_version,
            ) from exc
        except (DecisionError, InDoubt, ToolFailed, BadArguments) as exc:
            if self.on_error is None:
                raise
            return await _message(self.on_error, ctx, exc)
        except ProctorError:
            raise  # Proctor itself failed (its store, its settings): the run stops, closed
        except Exception as exc:
            # The tool's own error, after Proctor recorded it as the call's outcome: the SDK's
            # contract is that failure_error_function turns it into text for the model.
            if self.on_error is None:
                raise
            return await _message(self.on_error, ctx, exc)

    async def _invoke(self, ctx: ToolContext[Any], input: str) -> Any:
        call_id = ctx.tool_call_id
        raw = _arguments(input)
        args, kwargs = self.validate(raw)
        known = self.take(call_id)
        if isinstance(known, _Failed):
            raise known.error
        if known is None or known.executed:
            known = await asyncio.to_thread(self.decide, raw, call_id)
        # Decided on the model's JSON (what reviewers see); run with the validated values.
        known.call_args = (args, kwargs)
        if self.spec.is_async:
            return await self.px.execute_async(known, wait=0)
        return await asyncio.to_thread(self.px.execute, known, wait=0)  # one thread hop


async def _message(on_error: ErrorFunction, ctx: RunContextWrapper[Any], exc: Exception) -> str:
    text = on_error(ctx, exc)
    if inspect.isawaitable(text):
        text = await text
    return str(text)


def _arguments(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise BadArguments(f"its arguments are not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadArguments("its arguments are not a JSON object")
    return value


def gated_tool(
    px: Proctor,
    tool: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    failure_error_function: ErrorFunction | None = tool_error_message,
    strict_mode: bool = True,
) -> FunctionTool:
    """An SDK ``FunctionTool`` for ``tool`` (a function decorated with ``@px.tool``): its
    schema and description come from the function, as ``@function_tool`` makes them;
    Proctor decides each call by its ``call_id``.

    ``failure_error_function``: the text the model reads when the call is refused or
    fails (default: ``tool_error_message``); ``None`` raises instead, failing the run.
    """
    spec = getattr(tool, "__proctor_tool__", None)
    if not isinstance(spec, ToolSpec):
        raise InvalidRequest("gated_tool() takes a function decorated with @px.tool")
    schema = function_schema(
        spec.fn,
        name_override=name or spec.name,
        description_override=description,
        strict_json_schema=strict_mode,
    )
    if schema.takes_context:
        raise InvalidRequest(
            f"{spec.name} takes the SDK's run context: a gated tool's arguments are the"
            " model's alone"
        )
    gate = _Gate(px, spec, schema, failure_error_function)
    return FunctionTool(
        name=schema.name,
        description=schema.description or "",
        params_json_schema=schema.params_json_schema,
        on_invoke_tool=gate,
        strict_json_schema=strict_mode,
        needs_approval=gate.needs_approval,
    )


# -- interruptions and Proctor's decisions ----------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What ``apply_decisions`` did with one interruption.

    ``outcome``: ``approved`` (Proctor allowed it, or a reviewer approved or edited it),
    ``rejected`` (refused by policy or a reviewer; ``message`` is what the model reads),
    ``pending`` (a human has not decided yet) or ``skipped`` (not a Proctor-gated tool).
    """

    interruption: ToolApprovalItem
    call_id: str | None
    tool: str | None
    outcome: str
    item_id: str | None = None
    message: str | None = None


def _gate_of(interruption: ToolApprovalItem) -> _Gate | None:
    agent = interruption.agent
    for tool in getattr(agent, "tools", None) or ():
        if (
            isinstance(tool, FunctionTool)
            and tool.name == interruption.tool_name
            and isinstance(tool.on_invoke_tool, _Gate)
        ):
            return tool.on_invoke_tool
    return None


def _call_id(interruption: ToolApprovalItem) -> str | None:
    raw = interruption.raw_item
    value = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    return value if isinstance(value, str) else None


def _settle(gate: _Gate, interruption: ToolApprovalItem) -> Applied:
    """Proctor's word on one interruption (nothing is applied to the state here)."""
    call_id = _call_id(interruption)
    tool = gate.spec.name
    if call_id is None:
        raise InvalidRequest(f"the interruption of {tool} carries no call_id")
    try:
        raw = _arguments(interruption.arguments)
        gate.validate(raw)
    except BadArguments as exc:
        message = f"The call to {tool} was not run: {exc}."
        return Applied(interruption, call_id, tool, "rejected", message=message)
    known = gate._decided.get(call_id)
    call = known if isinstance(known, Call) and not known.executed else gate.decide(raw, call_id)
    status = call.status
    if status in ("allowed", "done", "busy", "unknown"):
        gate._remember(call_id, call)
        return Applied(interruption, call_id, tool, "approved", call.item_id)
    if status == "denied":
        d = call.decision
        denied = Denied(d.reason, rule_ids=d.rule_ids, decision_id=call.verdict.id)
        return Applied(interruption, call_id, tool, "rejected", None, _refusal(tool, denied))
    if status == "conflict":
        state = call.verdict.call
        why = state.error if state is not None and state.error else "other arguments"
        message = f"The call to {tool} was not run: its call id was used with {why}."
        return Applied(interruption, call_id, tool, "rejected", message=message)
    if status == "held" or call.item_id is None:
        return Applied(interruption, call_id, tool, "pending", call.item_id)
    item = gate.px.reviews.get(call.item_id)
    if item.status == "pending":
        return Applied(interruption, call_id, tool, "pending", item.id)
    if item.status in ("rejected", "expired"):
        reason = (
            item.note or "a reviewer rejected the action"
            if item.status == "rejected"
            else f"no reviewer decided review item {item.id} in time"
        )
        refused = Rejected(reason, rule_ids=item.rule_ids) if item.status == "rejected" else None
        message = (
            _refusal(tool, refused)
            if refused is not None
            else _refusal(tool, Denied(reason, rule_ids=item.rule_ids))
        )
        return Applied(interruption, call_id, tool, "rejected", item.id, message)
    # approved (edited or not), or already running or run: the body runs it once or
    # returns what it returned
    return Applied(interruption, call_id, tool, "approved", item.id)


def _apply(state: RunState[Any, Any], applied: Applied) -> None:
    if applied.outcome == "approved":
        state.approve(applied.interruption)
    elif applied.outcome == "rejected":
        state.reject(applied.interruption, rejection_message=applied.message)


def apply_decisions(px: Proctor, state: RunState[Any, Any]) -> list[Applied]:
    """Carry Proctor's decisions onto an interrupted run's state: each interruption of a
    gated tool is approved or rejected as Proctor decided, or left pending. Interruptions
    of other tools are ``skipped``: the application decides those itself.

    Run it in the process that resumes the run (it may claim allowed calls for it)."""
    done = []
    for interruption in state.get_interruptions():
        gate = _gate_of(interruption)
        if gate is None or gate.px is not px:
            done.append(
                Applied(interruption, _call_id(interruption), interruption.tool_name, "skipped")
            )
            continue
        applied = _settle(gate, interruption)
        _apply(state, applied)
        done.append(applied)
    return done


def item_for(px: Proctor, interruption: ToolApprovalItem) -> str | None:
    """The Proctor review item an interruption waits on (None when nobody needs to decide)."""
    gate = _gate_of(interruption)
    if gate is None:
        raise InvalidRequest(f"{interruption.tool_name} is not a tool made with gated_tool()")
    applied = _settle(gate, interruption)
    return applied.item_id if applied.outcome == "pending" else None


def _pending_item(px: Proctor, interruption: ToolApprovalItem) -> tuple[_Gate, str]:
    gate = _gate_of(interruption)
    if gate is None:
        raise InvalidRequest(f"{interruption.tool_name} is not a tool made with gated_tool()")
    applied = _settle(gate, interruption)
    if applied.outcome != "pending" or applied.item_id is None:
        raise InvalidRequest(
            f"no Proctor review waits for this call of {applied.tool} (it is"
            f" {applied.outcome}): use apply_decisions(px, state)"
        )
    return gate, applied.item_id


def approve(
    px: Proctor,
    state: RunState[Any, Any],
    interruption: ToolApprovalItem,
    *,
    by: str = "",
    note: str | None = None,
) -> Applied:
    """Approve in Proctor as reviewer ``by`` (against a server: the token's reviewer), then
    in the run state. The item's quorum, the self-approval rule and the log apply."""
    gate, item_id = _pending_item(px, interruption)
    px.reviews.approve(item_id, by=by, note=note)
    applied = _settle(gate, interruption)
    _apply(state, applied)
    return applied


def reject(
    px: Proctor,
    state: RunState[Any, Any],
    interruption: ToolApprovalItem,
    *,
    by: str = "",
    reason: str,
) -> Applied:
    """Reject in Proctor as reviewer ``by``, then in the run state: the model reads the
    reason."""
    gate, item_id = _pending_item(px, interruption)
    px.reviews.reject(item_id, by=by, reason=reason)
    applied = _settle(gate, interruption)
    _apply(state, applied)
    return applied

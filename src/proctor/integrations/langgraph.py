"""Proctor in LangGraph and LangChain agents: every tool call decided once, by its id.

Two ways in, one gate behind them:

- ``ProctorMiddleware(px, agent=...)`` for ``langchain.agents.create_agent(middleware=[...])``
  (``wrap_tool_call`` and ``awrap_tool_call``);
- ``ProctorToolNode(tools, px, agent=...)``, a drop-in for ``langgraph.prebuilt.ToolNode``
  in a graph of one's own.

Each tool call is decided with its ``tool_call_id`` as the call's identity (``px.decide``)
and run under that decision (``px.execute``). LangGraph runs a node again from the top when
it resumes, so the node's second decision of the same tool call finds the same call and the
same review item: never a second item, never a second run. A review becomes ``interrupt()``
carrying an Agent Inbox ``HumanInterrupt``; the reviewer's response given to
``Command(resume=...)`` is recorded in Proctor (approve, edit, reject), and a decision made
in Proctor itself (the console, the API, the CLI) is picked up by a plain resume. A denial
or a rejection reaches the model as ``ToolMessage(status="error")`` saying why.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .. import _extras
from .._errors import (
    Conflict,
    DecisionError,
    Forbidden,
    InDoubt,
    InvalidRequest,
    Rejected,
    ToolFailed,
)
from ..calls import Call
from ..calls import decide as _decide
from ..review.items import ReviewItem
from ..sdk import Proctor
from ..tools import ToolSpec

try:
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool
    from langgraph.prebuilt import ToolNode
    from langgraph.prebuilt.tool_node import ToolCallRequest
    from langgraph.types import Command, interrupt
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise _extras.missing("langgraph", exc) from exc

__all__ = ["ProctorMiddleware", "ProctorToolNode", "human_interrupt"]

Result = ToolMessage | Command[Any]
Handler = Callable[[ToolCallRequest], Result]
AsyncHandler = Callable[[ToolCallRequest], Awaitable[Result]]

IGNORED = "the reviewer chose to ignore this call"
_ANY_ARGS: dict[str, Any] = {"type": "object", "additionalProperties": True}


@dataclass
class _Running:
    """What the registered tool body needs to run this one call through the framework."""

    request: ToolCallRequest
    handler: Callable[[ToolCallRequest], Any]
    output: list[Result] = field(default_factory=list)  # the live result, when it ran now


_RUNNING: ContextVar[_Running | None] = ContextVar("proctor_langgraph_call", default=None)


class _ToolReturnedError(Exception):
    """The framework turned the tool's failure into an error message: recorded as a failed
    outcome, and the message goes to the model as the framework made it."""

    def __init__(self, message: ToolMessage) -> None:
        super().__init__(_text(message.content))
        self.message = message


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text", ""))
            for part in content
            if isinstance(part, str | dict)
        )
    return str(content)


def _recordable(out: Any) -> Any:
    """What Proctor records of a tool's result (JSON): a message's content, or for a
    ``Command`` the text of the tool messages it carries."""
    if isinstance(out, ToolMessage):
        if out.status == "error":
            raise _ToolReturnedError(out)
        return out.content
    if isinstance(out, Command):
        update = out.update if isinstance(out.update, dict) else {}
        messages = update.get("messages", [])
        texts = [_text(m.content) for m in messages if isinstance(m, ToolMessage)]
        return "\n".join(texts) if texts else "the tool updated the graph's state"
    return out


def _body_sync(**kwargs: Any) -> Any:
    running = _RUNNING.get()
    if running is None:  # resumed by item id outside a graph: there is no framework call
        raise InvalidRequest("a LangGraph tool runs inside its graph: resume the graph instead")
    call = {**running.request.tool_call, "args": kwargs}
    out = running.handler(running.request.override(tool_call=call))  # type: ignore[arg-type]
    running.output.append(out)
    return _recordable(out)


async def _body_async(**kwargs: Any) -> Any:
    running = _RUNNING.get()
    if running is None:
        raise InvalidRequest("a LangGraph tool runs inside its graph: resume the graph instead")
    call = {**running.request.tool_call, "args": kwargs}
    out = await running.handler(running.request.override(tool_call=call))  # type: ignore[arg-type]
    running.output.append(out)
    return _recordable(out)


def _schema(tool: BaseTool | None) -> dict[str, Any]:
    """The arguments the model sees (injected state and runtime left out), as JSON Schema."""
    if tool is None:
        return _ANY_ARGS
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return schema
    if hasattr(schema, "model_json_schema"):  # pydantic 2
        return dict(schema.model_json_schema())
    return dict(schema.schema())  # a tool declared with a pydantic.v1 model


def human_interrupt(item: ReviewItem, *, problem: str | None = None) -> dict[str, Any]:
    """The Agent Inbox ``HumanInterrupt`` for a pending review item (plus a ``proctor`` key
    with the item's id, queue and rules, for clients that want them)."""
    actions = item.next_actions()
    rules = ", ".join(item.rule_ids) or "none"
    lines = [
        f"**{item.reason or 'Proctor asks a human before this call runs.'}**",
        "",
        f"- rules: {rules}",
        f"- queue: {item.queue}",
        f"- Proctor review item: `{item.id}`",
    ]
    if item.risk is not None:
        lines.append(f"- risk: {item.risk:.2f}")
    if item.context:
        lines.append("- context: " + ", ".join(f"{k}={v!r}" for k, v in item.context.items()))
    if problem:
        lines += ["", f"Your last response was not recorded: {problem}"]
    return {
        "action_request": {"action": item.tool, "args": dict(item.args)},
        "config": {
            "allow_accept": "approve" in actions,
            "allow_edit": "edit" in actions,
            "allow_respond": "reject" in actions,
            "allow_ignore": "reject" in actions,
        },
        "description": "\n".join(lines),
        "proctor": {
            "item_id": item.id,
            "queue": item.queue,
            "rule_ids": list(item.rule_ids),
            "reason": item.reason,
            "context": item.context,
            "call_id": item.call_id,
        },
    }


class _Gate:
    """The one gate behind the middleware and the tool node."""

    def __init__(self, px: Proctor, agent: str | None, wait: float, reviewer: str) -> None:
        if isinstance(wait, bool) or not wait >= 0:
            raise InvalidRequest("wait is a number of seconds >= 0")
        self.px = px
        self.agent = agent
        self.wait = wait
        self.reviewer = reviewer
        self._specs: dict[tuple[str, bool], ToolSpec] = {}
        self._lock = threading.Lock()

    def spec(self, request: ToolCallRequest, is_async: bool) -> ToolSpec:
        """The Proctor tool standing for this framework tool, registered on first use."""
        name = request.tool_call["name"]
        with self._lock:
            found = self._specs.get((name, is_async))
            if found is None:
                body: Any = _body_async if is_async else _body_sync
                wrapped = self.px.tool(
                    agent=self.agent, name=name, wait=0, schema=_schema(request.tool)
                )(body)
                found = self._specs[(name, is_async)] = wrapped.__proctor_tool__
            return found

    def decide(self, request: ToolCallRequest, is_async: bool) -> Call:
        call_id = request.tool_call.get("id")
        if not call_id:
            raise InvalidRequest(
                f"tool call {request.tool_call['name']!r} has no id: Proctor keys each"
                " LangGraph tool call by its tool_call_id"
            )
        args = dict(request.tool_call.get("args") or {})
        return _decide(self.px, self.spec(request, is_async), (), args, call_id)

    def respond(self, item: ReviewItem, response: Any) -> str | None:
        """Record an Agent Inbox response in Proctor; the reason when it was not recorded
        (None also when there was nothing to record: a plain resume)."""
        if isinstance(response, list) and response:
            response = response[0]
        if not isinstance(response, dict) or "type" not in response:
            return None  # a plain resume: the decision is Proctor's to make
        kind, given = response["type"], response.get("args")
        reviews, by = self.px.reviews, self.reviewer
        try:
            if kind == "accept":
                reviews.approve(item.id, by=by)
            elif kind == "edit":
                edited = given.get("args") if isinstance(given, dict) else None
                if not isinstance(edited, dict):
                    return "an edit carries {'args': {...}}: the changed arguments"
                changed = {
                    k: v for k, v in edited.items() if k not in item.args or item.args[k] != v
                }
                if changed:
                    reviews.edit(item.id, by=by, args=changed)
                else:
                    reviews.approve(item.id, by=by)
            elif kind == "response":
                reviews.reject(item.id, by=by, reason=str(given or "rejected by the reviewer"))
            elif kind == "ignore":
                reviews.reject(item.id, by=by, reason=IGNORED)
            else:
                return f"unknown response type {kind!r} (accept, edit, response or ignore)"
        except Conflict:
            return None  # decided meanwhile, elsewhere: that decision stands
        except (InvalidRequest, Forbidden) as exc:
            return str(exc)
        return None

    def pending(self, call: Call) -> tuple[ReviewItem | None, bool]:
        """The call's review item while a human has yet to decide it."""
        if call.status != "review" or call.item_id is None:
            return None, False
        item = self.px.reviews.get(call.item_id)
        return item, item.status == "pending"

    def handle(self, request: ToolCallRequest, handler: Handler) -> Result:
        call = self.decide(request, is_async=False)
        problem = None
        item, waiting = self.pending(call)
        while item is not None and waiting:
            # Raises GraphInterrupt the first time; on resume LangGraph replays the node and
            # this returns the reviewer's response instead.
            problem = self.respond(item, interrupt([human_interrupt(item, problem=problem)]))
            item, waiting = self.pending(call)
        running = _Running(request, handler)
        token = _RUNNING.set(running)
        try:
            result = self.px.execute(call, wait=self.wait)
        except (DecisionError, ToolFailed, InDoubt, Conflict, _ToolReturnedError) as exc:
            return refusal(request, exc, item)
        finally:
            _RUNNING.reset(token)
        return running.output[0] if running.output else recorded(request, result)

    async def ahandle(self, request: ToolCallRequest, handler: AsyncHandler) -> Result:
        call = await asyncio.to_thread(self.decide, request, True)
        problem = None
        item, waiting = await asyncio.to_thread(self.pending, call)
        while item is not None and waiting:
            response = interrupt([human_interrupt(item, problem=problem)])
            problem = await asyncio.to_thread(self.respond, item, response)
            item, waiting = await asyncio.to_thread(self.pending, call)
        running = _Running(request, handler)
        token = _RUNNING.set(running)
        try:
            result = await self.px.execute_async(call, wait=self.wait)
        except (DecisionError, ToolFailed, InDoubt, Conflict, _ToolReturnedError) as exc:
            return refusal(request, exc, item)
        finally:
            _RUNNING.reset(token)
        return running.output[0] if running.output else recorded(request, result)


def recorded(request: ToolCallRequest, result: Any) -> ToolMessage:
    """The result an earlier run of this very call recorded, given back without running."""
    content = result if isinstance(result, str | list) else json.dumps(result)
    return ToolMessage(
        content=content, tool_call_id=request.tool_call["id"], name=request.tool_call["name"]
    )


def refusal(
    request: ToolCallRequest, exc: Exception, item: ReviewItem | None = None
) -> ToolMessage:
    """What the model reads when a call did not run (or failed earlier), in plain words."""
    name = request.tool_call["name"]
    if isinstance(exc, _ToolReturnedError):
        return exc.message
    if isinstance(exc, DecisionError):
        # a rejection names the rules that asked for the review, not the repeat's
        ids = item.rule_ids if isinstance(exc, Rejected) and item is not None else exc.rule_ids
        rules = f" (rules: {', '.join(ids)})" if ids else ""
        if isinstance(exc, Rejected):
            text = f"A human reviewer rejected the call to {name}: {exc.reason}{rules}."
        else:
            text = f"Proctor refused the call to {name}: {exc.reason}{rules}."
    elif isinstance(exc, InDoubt):
        text = f"The call to {name} may or may not have happened; do not repeat it. {exc}"
    else:
        text = f"The call to {name} did not run: {exc}"
    return ToolMessage(
        content=text, tool_call_id=request.tool_call["id"], name=name, status="error"
    )


class ProctorMiddleware(AgentMiddleware):
    """Agent middleware gating every tool call of ``create_agent`` through Proctor.

    ``agent``: the Proctor agent the calls belong to (None: the enclosing ``px.run``'s).
    ``wait``: seconds a decided call may wait before it runs (for an approval pending
    elsewhere in its run, or another runner of the same call); a review never blocks, it
    interrupts the graph. ``reviewer``: the name recorded for responses given through
    ``Command(resume=...)`` (embedded Proctor; a server takes the token's identity).
    """

    def __init__(
        self,
        px: Proctor,
        *,
        agent: str | None = None,
        wait: float = 10.0,
        reviewer: str = "agent-inbox",
    ) -> None:
        super().__init__()
        self.gate = _Gate(px, agent, wait, reviewer)

    def wrap_tool_call(self, request: ToolCallRequest, handler: Handler) -> Result:
        return self.gate.handle(request, handler)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AsyncHandler) -> Result:
        return await self.gate.ahandle(request, handler)


class ProctorToolNode(ToolNode):
    """``ToolNode`` with every call gated through Proctor (arguments as ``ProctorMiddleware``;
    the rest as ``ToolNode``'s)."""

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        px: Proctor,
        *,
        agent: str | None = None,
        wait: float = 10.0,
        reviewer: str = "agent-inbox",
        **kwargs: Any,
    ) -> None:
        if "wrap_tool_call" in kwargs or "awrap_tool_call" in kwargs:
            raise InvalidRequest("ProctorToolNode sets wrap_tool_call itself: use middleware")
        self.gate = _Gate(px, agent, wait, reviewer)
        super().__init__(
            tools, wrap_tool_call=self.gate.handle, awrap_tool_call=self.gate.ahandle, **kwargs
        )

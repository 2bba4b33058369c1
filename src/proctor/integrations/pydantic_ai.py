"""PydanticAI: an agent's tools behind the gate, as a toolset that wraps the agent's own.

``ProctorToolset(px, toolset, agent="support-bot")`` decides every call once, keyed by
its ``tool_call_id``, and runs it under that decision:

- allowed: the wrapped tool runs (once: a repeat of the same ``tool_call_id`` returns the
  recorded result);
- denied, or rejected by a reviewer: the model gets a failed tool result in plain words
  (``pydantic_ai.exceptions.ToolFailed``: a terminal failure, so the model is not told to
  try again and no retry budget is spent; ``ModelRetry`` would invite the same call);
- review: the call is deferred through PydanticAI's own approval mechanism
  (``ApprovalRequired``), its metadata carrying the Proctor item id, and the run ends with
  ``DeferredToolRequests``. ``proctor_results(px, requests)`` turns the reviewers' decisions
  into ``DeferredToolResults``; resuming the run with them runs each approved call once,
  under Proctor's approval (with a reviewer's edits). Proctor is the only approval
  authority: a ``ToolApproved`` that Proctor has not granted defers the call again.

PydanticAI is imported here only (``pip install 'proctor[pydantic-ai]'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .._errors import DecisionError, Denied, InvalidRequest, Rejected, ReviewPending
from .._extras import missing
from ..calls import Call, Prepared, decide, prepare, run_async_prepared
from ..sdk import Proctor
from ..tools import ToolSpec, make_spec

try:
    from pydantic_ai import RunContext
    from pydantic_ai.exceptions import ApprovalRequired, ToolFailed
    from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolDenied
    from pydantic_ai.toolsets import AbstractToolset, ToolsetTool, WrapperToolset
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - exercised by the install test
    raise missing("pydantic-ai", exc) from exc

__all__ = ["METADATA_KEY", "ProctorToolset", "proctor_results", "refusal"]

METADATA_KEY = "proctor"
"""The key of a deferred call's metadata that holds its Proctor review item."""

# What the gated body needs besides the arguments: the run context and the wrapped tool.
_CURRENT: ContextVar[tuple[RunContext[Any], ToolsetTool[Any]] | None] = ContextVar(
    "proctor_pydantic_ai_call", default=None
)


def refusal(error: DecisionError) -> str:
    """What the model reads when Proctor refuses a call: what happened and why."""
    rules = f" (rules: {', '.join(error.rule_ids)})" if error.rule_ids else ""
    if isinstance(error, Rejected):
        return f"A reviewer rejected this call: {error.reason}{rules}. It was not carried out."
    return f"Refused by policy: {error.reason}{rules}. It was not carried out."


@dataclass
class ProctorToolset(WrapperToolset[Any]):
    """Gate every tool of ``wrapped``: ``Agent(model, toolsets=[ProctorToolset(px, ts)])``.

    ``agent``: the Proctor agent the calls are decided for (default: the enclosing
    ``px.run``'s). ``wait``: seconds to block for a reviewer before deferring the call
    (default 0: defer at once, the run ends with ``DeferredToolRequests``). ``key``: a call's
    identity from its run context, name and arguments (default: its ``tool_call_id``).
    ``reversible`` and ``reads`` describe every wrapped tool to the rules.
    """

    px: Proctor = field(kw_only=True)
    agent: str | None = field(default=None, kw_only=True)
    wait: float | None = field(default=0.0, kw_only=True)
    key: Callable[[RunContext[Any], str, dict[str, Any]], str] | None = field(
        default=None, kw_only=True
    )
    reversible: bool = field(default=True, kw_only=True)
    reads: Sequence[str] = field(default=(), kw_only=True)
    _specs: dict[str, ToolSpec] = field(default_factory=dict, init=False, repr=False)

    def __init__(
        self,
        px: Proctor,
        wrapped: AbstractToolset[Any],
        *,
        agent: str | None = None,
        wait: float | None = 0.0,
        key: Callable[[RunContext[Any], str, dict[str, Any]], str] | None = None,
        reversible: bool = True,
        reads: Sequence[str] = (),
    ) -> None:
        self.wrapped = wrapped
        self.px = px
        self.agent = agent
        self.wait = wait
        self.key = key
        self.reversible = reversible
        self.reads = reads
        self._specs = {}

    def _spec(self, name: str, tool: ToolsetTool[Any]) -> ToolSpec:
        """One ``@px.tool`` per wrapped tool, described by its JSON Schema (edits are
        checked against it), whose body calls the wrapped toolset."""
        spec = self._specs.get(name)
        if spec is None:
            wrapped = self.wrapped

            async def body(**args: Any) -> Any:
                current = _CURRENT.get()
                if current is None:  # only call_tool runs it, with the run context
                    raise InvalidRequest(
                        f"{name} is a PydanticAI tool: resume its agent run with"
                        " deferred_tool_results=proctor_results(px, requests)"
                    )
                ctx, tool = current
                # Arguments were decided as JSON (a reviewer may have edited them):
                # PydanticAI's validator turns them back into what the tool takes.
                validated = tool.args_validator.validate_python(args)
                return await wrapped.call_tool(name, validated, ctx, tool)

            spec = make_spec(
                body,
                agent=self.agent,
                name=name,
                reversible=self.reversible,
                wait=self.wait,
                reads=tuple(self.reads),
                schema=tool.tool_def.parameters_json_schema,
            )
            # Not registered with px: px.resume(item_id) cannot run it without a run
            # context, so it refuses (before claiming the approval) as for any unknown tool.
            self._specs[name] = spec
        return spec

    def _prepare(self, call: Call) -> Prepared:
        """Wait for whatever the call waits for (a reviewer, up to ``wait``; a hold; another
        runner); a review still pending defers the call, carrying its item."""
        try:
            return prepare(self.px, call, call.spec.wait)
        except ReviewPending as exc:
            raise ApprovalRequired(
                metadata={
                    METADATA_KEY: {
                        "item_id": exc.item_id,
                        "reason": call.decision.reason,
                        "rule_ids": list(call.decision.rule_ids),
                        "queue": call.decision.queue,
                    }
                }
            ) from exc

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        spec = self._spec(name, tool)
        args = to_jsonable_python(tool_args)
        key = self.key(ctx, name, args) if self.key is not None else ctx.tool_call_id
        token = _CURRENT.set((ctx, tool))
        try:
            # As for async @px.tool functions: the decision is made on the loop, and only
            # what may wait for long (a reviewer, a hold, another runner) on a worker thread.
            call = decide(self.px, spec, (), args, key)
            if call.status in ("review", "held", "busy", "unknown"):
                prepared = await asyncio.to_thread(self._prepare, call)
            else:
                prepared = self._prepare(call)
            return await run_async_prepared(self.px, prepared)
        except (Denied, Rejected) as exc:
            raise ToolFailed(refusal(exc)) from exc
        finally:
            _CURRENT.reset(token)


def proctor_results(
    px: Proctor, requests: DeferredToolRequests, *, wait: float | None = 0.0
) -> DeferredToolResults:
    """The reviewers' decisions on deferred calls, to resume the run with.

    Approved items become ``ToolApproved`` (the call then runs under Proctor's grant, with
    any edits); rejected and expired ones ``ToolDenied`` with the reviewer's reason; still
    pending ones are left out (``requests.remaining(results)`` lists them). ``wait``: seconds
    to wait for each pending item (None: until it is decided or expires). Calls deferred by
    something other than Proctor are left for the caller.
    """
    results = DeferredToolResults()
    for part in requests.approvals:
        meta = requests.metadata.get(part.tool_call_id, {}).get(METADATA_KEY)
        if not isinstance(meta, dict) or "item_id" not in meta:
            continue
        item_id = str(meta["item_id"])
        status = px.backend.status(item_id)
        if status == "pending" and wait != 0:
            status = px.backend.wait_while(item_id, ("pending",), 10**9 if wait is None else wait)
        if status == "pending":
            continue
        item = px.reviews.get(item_id)
        if item.status in ("approved", "executing", "done", "failed", "in_doubt"):
            results.approvals[part.tool_call_id] = True
        else:
            why = item.note or f"review item {item_id} was {item.status}"
            results.approvals[part.tool_call_id] = ToolDenied(
                f"A reviewer rejected this call: {why}. It was not carried out."
                if item.status == "rejected"
                else f"This call was not approved: {why}. It was not carried out."
            )
    return results

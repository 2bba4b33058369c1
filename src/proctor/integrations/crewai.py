"""CrewAI: a crew's tools behind the gate, as tools that wrap the crew's own.

``gated(px, tool, agent="support-bot")`` takes a ``BaseTool`` (a ``@tool`` function or a
subclass) and returns a ``BaseTool`` with the same name, description and arguments, whose
every call is decided by Proctor first:

- allowed: the wrapped tool runs and its result goes back to the agent;
- denied, or rejected by a reviewer: the agent reads a plain refusal with the reason and
  rule ids as the tool's output (nothing raised: CrewAI would dress an exception up as
  "Error executing tool" and the agent would try again);
- review: the call waits for a reviewer up to ``wait`` seconds (default: the policy's review
  timeout) and then runs once under the approval, with a reviewer's edits; if the wait runs
  out the agent reads that the call awaits a human, naming the review item.

CrewAI hands a tool no call id, so a call's identity is a business key: ``key="order_id"``
(argument names, as for ``@px.tool``). With a key, a repeat of a completed call returns the
recorded result and a repeat of a pending one finds the same review item, which runs once
when approved. Without a key every call is a new decision.

CrewAI is imported here only (``pip install 'proctor[crewai]'``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from pydantic import PrivateAttr

from .._errors import ConfigError, DecisionError, Denied, Rejected, ReviewPending
from ..calls import decide
from ..sdk import Proctor
from ..tools import UNSET, ToolSpec, make_spec

try:
    from crewai.tools import BaseTool
except ImportError as exc:  # pragma: no cover - exercised by the install test
    from .._extras import missing

    raise missing("crewai", exc) from exc

__all__ = ["ProctorTool", "gated", "refusal"]


def refusal(error: DecisionError, why: str | None = None) -> str:
    """What the agent reads when Proctor refuses or defers a call: what happened and why
    (``why``: the decision's own reason, for a call that awaits a human)."""
    rules = f" (rules: {', '.join(error.rule_ids)})" if error.rule_ids else ""
    if isinstance(error, ReviewPending):
        return (
            f"Not carried out yet: it awaits a human's approval in review item"
            f" {error.item_id}{rules}: {why or error.reason}. Tell the user it awaits approval."
        )
    if isinstance(error, Rejected):
        return f"A reviewer rejected this call: {error.reason}{rules}. It was not carried out."
    return f"Refused by policy: {error.reason}{rules}. It was not carried out."


def _never_cache(_args: Any = None, _result: Any = None) -> bool:
    """CrewAI caches a tool's results by input within a crew: a cached answer would skip
    the gate (a pending review stays pending, a kill switch is not seen)."""
    return False


class ProctorTool(BaseTool):
    """A CrewAI tool whose calls Proctor decides before the wrapped tool runs."""

    _spec: ToolSpec = PrivateAttr()
    _px: Proctor = PrivateAttr()

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if args:  # CrewAI passes named arguments; a positional one has no name to decide on
            raise TypeError(f"{self.name}: pass the tool's arguments by name")
        call = decide(self._px, self._spec, (), kwargs)
        try:
            return self._px.execute(call)
        except (Denied, Rejected, ReviewPending) as exc:
            return refusal(exc, call.decision.reason)

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        # Deciding and waiting block: a worker thread keeps the event loop free.
        return await asyncio.to_thread(self._run, *args, **kwargs)


def gated(
    px: Proctor,
    tool: BaseTool,
    *,
    agent: str | None = None,
    key: str | Sequence[str] | None = None,
    wait: float | object | None = UNSET,
    reversible: bool = True,
    reads: Sequence[str] = (),
) -> ProctorTool:
    """``tool`` behind the gate, for ``Agent(tools=[gated(px, refund, agent="bot")])``.

    ``agent``: the Proctor agent the calls are decided for (default: the enclosing
    ``px.run``'s). ``key``: the arguments whose values are a call's identity. ``wait``:
    seconds to wait for a reviewer (None: the policy's review timeout, the default; 0: answer
    at once that the call awaits a human). ``reversible`` and ``reads`` describe it to rules.
    """
    if not isinstance(tool, BaseTool):
        raise TypeError("gated() takes a CrewAI BaseTool (a @tool function or a subclass)")
    schema = tool.args_schema.model_json_schema()
    names = (key,) if isinstance(key, str) else tuple(key) if key is not None else None
    if names is not None:
        unknown = [n for n in names if n not in schema.get("properties", {})]
        if not names or unknown:
            raise ConfigError(f"key= names arguments of the tool; {tool.name} has no {unknown}")

    def body(**args: Any) -> Any:
        # BaseTool.run validates the (possibly edited) arguments against the tool's schema
        # and counts the use, as CrewAI would have.
        return tool.run(**args)

    spec = make_spec(
        body,
        agent=agent,
        name=tool.name,
        reversible=reversible,
        wait=None if wait is UNSET else cast("float | None", wait),  # make_spec checks it
        reads=tuple(reads),
        schema=schema,
    )
    # The body takes **args, so key= is checked against the schema above, not here.
    spec = replace(spec, key=names)
    px.register(spec)  # resumable by name (px.resume) from this process
    wrapper = ProctorTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_as_answer=tool.result_as_answer,
        cache_function=_never_cache,
    )
    wrapper._spec = spec
    wrapper._px = px
    return wrapper

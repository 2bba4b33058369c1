"""``@gated``: the gate inside an MCP server of your own (``MCPServer``, formerly FastMCP).

```python
server = MCPServer("payments")

@server.tool()
@gated(px, agent="support-bot")
def refund(order_id: str, amount: float) -> str: ...
```

The tool keeps its parameters (the server derives its ``inputSchema`` from them as usual).
A denial or a pending review is answered as the gateway answers it: a tool error with the
reason, rule ids and item id, in ``_meta`` too, instead of the server's bare "Error
executing tool". The call's identity is ``_meta["proctor/idempotency_key"]`` (or a fresh
one, returned with a pending review for the retry).
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context

from ..._errors import ReviewPending
from ...sdk import Proctor
from .gateway import ANSWERS
from .results import KEY_META, bad_key, pending, refusal

F = TypeVar("F", bound=Callable[..., Any])
_CTX = "proctor_mcp_context"


def gated(
    px: Proctor,
    *,
    agent: str,
    name: str | None = None,
    reversible: bool = True,
    wait: float = 0,
    reads: Sequence[str] = (),
    context: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Put an ``MCPServer`` tool behind the gate, as ``agent`` with ``context``; ``wait``:
    seconds to block for a reviewer before answering "pending" (default 0)."""

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("@gated wraps a plain function (the gate runs it on a worker thread)")
        tool = px.tool(agent=agent, name=name, reversible=reversible, wait=wait, reads=reads)(fn)
        tool_name = name or fn.__name__
        signature = inspect.signature(fn, eval_str=True)  # the tool module's own names
        if _CTX in signature.parameters:
            raise TypeError(f"{fn.__name__} has a parameter named {_CTX}")

        @functools.wraps(fn)
        async def serve(*args: Any, **kwargs: Any) -> Any:
            ctx: Context[Any] | None = kwargs.pop(_CTX, None)
            meta = (ctx.request_context.meta if ctx is not None else None) or {}
            key = meta.get(KEY_META)
            if key is None:
                key = "mcp-" + uuid.uuid4().hex
            elif not isinstance(key, str) or not key.strip() or len(key) > 200:
                return refusal(bad_key(), tool=tool_name)

            def run() -> Any:
                with px.run(agent=agent, **(context or {})):
                    call = px.decide(tool, *args, call_id=key, **kwargs)
                    try:
                        return px.execute(call, wait=wait)
                    except ReviewPending as exc:
                        raise pending(px, exc) from exc

            try:
                return await anyio.to_thread.run_sync(run)
            except ANSWERS as exc:
                return refusal(exc, tool=tool_name, idempotency_key=key)

        # The server injects its Context into the parameter annotated with it: ours reads
        # the request's _meta; the tool's own parameters (and schema) are unchanged.
        hidden = inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=Context)
        params = list(signature.parameters.values())
        var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
        rest = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
        serve.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*rest, hidden, *var_kw]
        )
        serve.__annotations__ = {
            **{p.name: p.annotation for p in params if p.annotation is not p.empty},
            _CTX: Context,
            **(
                {"return": signature.return_annotation}
                if signature.return_annotation is not signature.empty
                else {}
            ),
        }
        return serve  # type: ignore[return-value]

    return decorate

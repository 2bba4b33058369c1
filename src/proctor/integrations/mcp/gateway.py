"""The MCP gateway: an MCP server in front of another, with every tool call through Proctor.

Each upstream tool is listed unchanged (its ``inputSchema`` too) and registered as a
Proctor tool described by that schema, so a reviewer's edit is checked against the
upstream's own parameters. A call is decided under the client's agent and context:
allowed, it is forwarded once; denied or waiting for review, the client gets a tool error
with the reason, rule ids and item id (``results.refusal``).

A call's identity is ``_meta["proctor/idempotency_key"]``: a retry with the same key and
arguments lands on the same review item, and once approved runs once; a call sent without
one gets a fresh key, returned in the error's ``_meta`` for the retry to send back.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    Tool,
)

from ..._errors import (
    ConfigError,
    Conflict,
    DecisionError,
    Denied,
    InDoubt,
    ReviewPending,
)
from ...sdk import Proctor
from .config import GatewayConfig, Upstream
from .results import KEY_META, bad_key, pending, refusal

WAIT_META = "proctor/wait"
CONTEXT_META = "proctor/context"
CLIENT_META = "proctor/client"
# what a client is told as a tool error: the gate's answers, not faults of the gateway
ANSWERS = (DecisionError, InDoubt, Conflict)


class UpstreamLost(Exception):
    """The upstream went away or stopped answering during a call: the effect may have
    happened, so the call is ``unknown`` and never re-run blindly (a person settles it)."""


class UpstreamToolError(Exception):
    """The upstream answered with ``isError``: recorded as a failed call (a retry may run it
    again) and passed to the client unchanged."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(_text_of(result) or "the upstream tool reported an error")
        self.result = result


def _text_of(result: Mapping[str, Any]) -> str:
    parts = [c.get("text", "") for c in result.get("content", []) if isinstance(c, dict)]
    return " ".join(p for p in parts if p)[:500]


@dataclass
class Caller:
    """Who a call is from: the identity the gateway saw, the agent and the context."""

    identity: str | None
    agent: str
    context: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def connect(upstream: Upstream) -> AsyncIterator[ClientSession]:
    """An initialized client session with the upstream server; one that cannot be started
    or does not answer ``initialize`` is a ``ConfigError`` naming it."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            if upstream.url is not None:
                import httpx2
                from mcp.client.streamable_http import streamable_http_client

                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=upstream.headers, timeout=httpx2.Timeout(30, read=None)
                    )
                )
                read, write = await stack.enter_async_context(
                    streamable_http_client(upstream.url, http_client=http)
                )
            else:
                from mcp.client.stdio import StdioServerParameters, stdio_client

                params = StdioServerParameters(
                    command=upstream.command[0],
                    args=list(upstream.command[1:]),
                    env=upstream.env or None,
                    cwd=upstream.cwd,
                )
                read, write = await stack.enter_async_context(stdio_client(params))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
        except (OSError, MCPError) as exc:
            raise ConfigError(f"upstream {upstream.describe()!r} failed to start: {exc}") from exc
        yield session


class Gateway:
    """``Gateway(px, config)``; ``async with gateway.running():`` connects the upstream and
    registers its tools; ``gateway.server`` is the MCP server to serve."""

    def __init__(self, px: Proctor, config: GatewayConfig) -> None:
        self.px = px
        self.config = config
        self.tools: list[Tool] = []
        self._gated: dict[str, Callable[..., Any]] = {}
        self._upstream: ClientSession | None = None
        self._lost = False  # the upstream's connection closed under a call
        self.server: Server[Any] = Server(
            "proctor-gateway",
            version="1",
            instructions="Tools of another MCP server, each call decided by Proctor's policy.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        async with connect(self.config.upstream) as session:
            self._upstream = session
            try:
                await self._register(session)
                yield self
            finally:
                self._upstream = None

    async def _register(self, session: ClientSession) -> None:
        tools: list[Tool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(
                params=PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools = tools
        self._gated = {tool.name: self._gate_tool(tool) for tool in tools}

    def _gate_tool(self, tool: Tool) -> Callable[..., Any]:
        name = tool.name

        def forward(**arguments: Any) -> Any:
            # Runs on a worker thread of the event loop (the gate blocks): hop back to it.
            return anyio.from_thread.run(self._forward, name, arguments)

        forward.__name__ = forward.__qualname__ = name
        hints = tool.annotations
        reversible = not (hints is not None and hints.destructive_hint)
        try:
            return self.px.tool(
                name=name,
                schema=dict(tool.input_schema),
                reversible=reversible,
                wait=0,
                ambiguous=(UpstreamLost, TimeoutError),
            )(forward)
        except ConfigError as exc:
            raise ConfigError(f"upstream tool {name!r}: {exc}") from exc

    async def _forward(self, name: str, arguments: dict[str, Any]) -> Any:
        if self._upstream is None or self._lost:
            # known before sending: this call cannot have reached it (a plain failure)
            raise ConfigError("the gateway has lost its upstream: restart the gateway")
        try:
            result = await self._upstream.call_tool(name, arguments)
        except MCPError as exc:
            if exc.error.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                self._lost = exc.error.code == CONNECTION_CLOSED
                raise UpstreamLost(f"upstream {name}: {exc.error.message}") from exc
            raise  # the upstream refused the request: nothing happened
        dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        if result.is_error:
            raise UpstreamToolError(dumped)
        return dumped

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=self.tools)

    # -- a call ---------------------------------------------------------------------------

    def caller(self, ctx: ServerRequestContext[Any], meta: Mapping[str, Any]) -> Caller:
        """The client's identity (bearer token subject over HTTP, else ``_meta`` or the name
        it gave in ``initialize``), mapped to an agent by ``clients``."""
        identity = _token_subject(ctx)
        if identity is None:
            claimed = meta.get(CLIENT_META)
            if isinstance(claimed, str) and claimed:
                identity = claimed
            else:
                info = ctx.session.client_params
                identity = info.client_info.name if info is not None else None
        rule = self.config.clients.get(identity) if identity is not None else None
        context = dict(self.config.context)
        extra = meta.get(CONTEXT_META)
        if extra is not None:
            if not isinstance(extra, dict):
                raise Denied(f"_meta {CONTEXT_META!r} must be an object", rule_ids=("mcp-meta",))
            context = {**extra, **context}  # what the gateway is configured with wins
        clash = {"agent", "parent"} & set(context)
        if clash:
            raise Denied(
                f"context may not name {sorted(clash)[0]!r} (the agent is the gateway's to say)",
                rule_ids=("mcp-meta",),
            )
        if rule is not None:
            return Caller(identity, rule.agent, {**context, **rule.context})
        if self.config.agent is None:
            raise Denied(
                f"client {identity!r} maps to no agent: add it under clients",
                rule_ids=("mcp-unknown-client",),
            )
        return Caller(identity, self.config.agent, context)

    def wait_for(self, meta: Mapping[str, Any]) -> float:
        asked = meta.get(WAIT_META)
        if asked is None:
            return self.config.wait
        if isinstance(asked, bool) or not isinstance(asked, int | float) or not asked >= 0:
            raise Denied(f"_meta {WAIT_META!r} must be seconds >= 0", rule_ids=("mcp-meta",))
        return min(float(asked), self.config.max_wait)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        tool = self._gated.get(params.name)
        if tool is None:
            raise MCPError(-32602, f"unknown tool: {params.name}")
        meta: Mapping[str, Any] = params.meta or {}
        key = meta.get(KEY_META)
        if key is None:
            key = "mcp-" + uuid.uuid4().hex
        elif not isinstance(key, str) or not key.strip() or len(key) > 200:
            return refusal(bad_key(), tool=params.name)
        try:
            caller = self.caller(ctx, meta)
            wait = self.wait_for(meta)
            result = await self._decide_and_run(ctx, tool, params, caller, key, wait, meta)
        except UpstreamToolError as exc:
            return CallToolResult.model_validate(exc.result)
        except UpstreamLost as exc:  # recorded unknown; a retry is not run blindly
            lost = InDoubt(f"{exc}; it may or may not have happened", item_id="")
            return refusal(lost, tool=params.name, idempotency_key=key)
        except ANSWERS as exc:
            return refusal(exc, tool=params.name, idempotency_key=key)
        return CallToolResult.model_validate(result)

    async def _decide_and_run(
        self,
        ctx: ServerRequestContext[Any],
        tool: Callable[..., Any],
        params: CallToolRequestParams,
        caller: Caller,
        key: str,
        wait: float,
        meta: Mapping[str, Any],
    ) -> Any:
        px = self.px
        arguments = dict(params.arguments or {})
        waiting: dict[str, str] = {}

        def gated() -> Any:
            with px.run(agent=caller.agent, **caller.context):
                call = px.decide(tool, call_id=key, **arguments)
                if call.item_id is not None and call.status == "review":
                    waiting["item"] = call.item_id
                try:
                    return px.execute(call, wait=wait)
                except ReviewPending as exc:
                    raise pending(px, exc) from exc

        # the SDK parses _meta with Python names (progress_token); the wire name is a fallback
        progress = meta.get("progress_token", meta.get("progressToken"))
        if progress is None or wait == 0:
            return await anyio.to_thread.run_sync(gated)
        outcome: list[Any] = []

        async def run_it(scope: anyio.CancelScope) -> None:
            outcome.append(await anyio.to_thread.run_sync(gated))
            scope.cancel()

        start = time.monotonic()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run_it, tasks.cancel_scope)
                while True:
                    await anyio.sleep(self.config.progress_interval)
                    item = waiting.get("item")
                    await ctx.session.report_progress(
                        round(time.monotonic() - start, 1),
                        wait,
                        f"waiting for review item {item}" if item else "waiting for Proctor",
                    )
        except BaseExceptionGroup as group:  # the gated call's own error, unwrapped
            raise group.exceptions[0] from None
        return outcome[0]


def _token_subject(ctx: ServerRequestContext[Any]) -> str | None:
    """The authenticated subject of an HTTP request (the SDK's bearer auth), if any."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    token = getattr(user, "access_token", None)
    if token is None:
        return None
    subject = token.subject or token.client_id
    return str(subject) if subject else None


__all__ = ["Caller", "Gateway", "UpstreamLost", "UpstreamToolError", "connect"]

"""``proctor bench adapters --framework mcp``: what the MCP gateway adds to a tool call.

Three sides, interleaved in rounds on one temporary SQLite database, medians reported:

- ``bare``: a bare ``@px.tool`` call of a local function (decision, body, outcome);
- ``direct``: the same tool called on the upstream MCP server (a Python process over
  stdio) by an MCP client, no Proctor;
- ``gateway``: that call through the gateway (an in-process client, the gateway's decision
  with a call identity, the forward over stdio, the recorded outcome);
- ``hop``: an in-process client calling an in-process MCP server's echo, no Proctor: what
  the SDK's own dispatch costs the gateway's first hop.

``gateway - direct`` is what putting the gateway in front of a server costs a client;
``gateway - direct - hop`` estimates Proctor's own share of it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

POLICY = """
policy: bench-mcp
defaults: {decision: deny}
agents: {bench-bot: {tools: [echo]}}
rules:
  - {id: echo, when: 'tool == "echo"', decide: allow}
"""
ROUNDS = 10


def _echo_server() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        return text

    return server


def _upstream() -> None:
    _echo_server().run()


def run(n: int) -> dict[str, Any]:
    """``n`` calls a side for the bare call; the MCP sides make ``n // 20`` each (at least
    50): every one crosses processes."""
    import anyio

    from .._extras import require

    require("mcp")
    from mcp import Client

    from ..integrations.mcp import Gateway, GatewayConfig, Upstream
    from ..integrations.mcp.gateway import connect
    from ..sdk import Proctor

    mcp_calls = max(50, n // 20)
    times: dict[str, list[float]] = {"bare": [], "direct": [], "gateway": [], "hop": []}
    upstream = Upstream(command=(sys.executable, "-m", "proctor.bench.adapter_mcp", "--upstream"))
    with tempfile.TemporaryDirectory() as tmp, Proctor(f"sqlite:///{tmp}/bench.db") as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bench-bot", name="echo")
        def bare(text: str) -> str:
            return text

        gateway = Gateway(px, GatewayConfig(upstream=upstream, agent="bench-bot"))

        async def measure() -> None:
            async with (
                gateway.running(),
                Client(gateway.server) as through,
                connect(upstream) as direct,
                Client(_echo_server()) as hop,
            ):

                async def timed(side: str, call: Callable[[], Awaitable[Any]], k: int) -> None:
                    for _ in range(k):
                        start = time.perf_counter()
                        await call()
                        times[side].append(time.perf_counter() - start)

                async def bare_call() -> Any:
                    return bare("hi")

                def tool_call(session: Any) -> Callable[[], Awaitable[Any]]:
                    return lambda: session.call_tool("echo", {"text": "hi"})

                for round_ in range(-1, ROUNDS):  # one warm-up round, not kept
                    await timed("bare", bare_call, max(1, n // ROUNDS))
                    await timed("direct", tool_call(direct), max(1, mcp_calls // ROUNDS))
                    await timed("gateway", tool_call(through), max(1, mcp_calls // ROUNDS))
                    await timed("hop", tool_call(hop), max(1, mcp_calls // ROUNDS))
                    if round_ < 0:
                        for kept in times.values():
                            kept.clear()

        anyio.run(measure)
    med = {side: statistics.median(values) * 1e6 for side, values in times.items()}
    return {
        "bench": "adapters",
        "framework": "mcp",
        "backend": "sqlite",
        "what": "median per call: a bare @px.tool call; an MCP call straight to the upstream"
        " (stdio); the same call through the gateway (decision with a call identity, forward,"
        " outcome)",
        "calls": {side: len(values) for side, values in times.items()},
        "bare_p50_us": round(med["bare"], 1),
        "direct_p50_us": round(med["direct"], 1),
        "gateway_p50_us": round(med["gateway"], 1),
        "hop_p50_us": round(med["hop"], 1),
        "overhead_vs_direct_us": round(med["gateway"] - med["direct"], 1),
        "overhead_vs_direct_ratio": round(med["gateway"] / med["direct"], 2),
        "proctor_share_us": round(med["gateway"] - med["direct"] - med["hop"], 1),
        "overhead_vs_bare_us": round(med["gateway"] - med["bare"], 1),
        "overhead_vs_bare_ratio": round(med["gateway"] / med["bare"], 2),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--upstream"]:
        _upstream()

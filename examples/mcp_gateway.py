"""Proctor's MCP gateway in front of an MCP server, driven by an MCP client. No API key.

Run: python examples/mcp_gateway.py  (needs the mcp extra: pip install 'proctor[mcp]')

The upstream is a tiny payments server (this file, started with --upstream over stdio).
The gateway runs in this process; a client calls through it: an allowed refund, a denied
one, and one a billing lead approves, which the client's retry (same idempotency key)
then gets, run once. In production the gateway is a command of its own:
``proctor mcp proxy --agent support-bot -- python payments_server.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

POLICY = """
policy: payments-gateway
defaults: {decision: deny, review_timeout: 1h, on_timeout: deny}
queues: {billing: {roles: [billing_lead]}}
agents: {support-bot: {tools: [refund]}}
rules:
  - {id: routine, when: 'tool == "refund"', decide: allow}
  - id: large-refund
    when: tool == "refund" && args.amount > 100.0
    decide: review
    queue: billing
    reason: Refunds over 100 need a billing lead
  - id: too-large
    when: tool == "refund" && args.amount > 1000.0
    decide: deny
    reason: Refunds over 1000 are never made by an agent
"""


def upstream() -> None:
    """The MCP server behind the gateway (any MCP server would do)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("payments")

    @server.tool()
    def refund(order_id: str, amount: float) -> str:
        """Refund part or all of an order."""
        return f"refunded {amount:.2f} on {order_id}"

    server.run()


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def main() -> list[str]:
    import anyio
    from mcp import Client

    from proctor import Proctor
    from proctor.integrations.mcp import META_KEY, Gateway, GatewayConfig, Upstream

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Proctor(f"sqlite:///{tmp}/p.db") as px:
        px.policy.apply(POLICY)
        config = GatewayConfig(
            upstream=Upstream(command=(sys.executable, str(Path(__file__)), "--upstream")),
            agent="support-bot",
        )
        gateway = Gateway(px, config)

        async def session() -> None:
            async with gateway.running(), Client(gateway.server) as client:
                ok = await client.call_tool("refund", {"order_id": "A-1", "amount": 20.0})
                lines.append(f"allowed: {_text(ok)}")
                no = await client.call_tool("refund", {"order_id": "A-2", "amount": 5000.0})
                lines.append(f"denied: {_text(no)}")

                key = {"proctor/idempotency_key": "refund-A-3"}
                args = {"order_id": "A-3", "amount": 250.0}
                wait = await client.call_tool("refund", args, meta=key)
                facts = (wait.meta or {})[META_KEY]
                lines.append(f"pending: item {facts['item_id']}, rules {facts['rule_ids']}")
                # a billing lead approves (here in-process; usually the console or the CLI)
                px.reviews.approve(facts["item_id"], by="billing-lead")
                done = await client.call_tool("refund", args, meta=key)
                lines.append(f"after approval: {_text(done)}")

        anyio.run(session)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--upstream"]:
        upstream()
    else:
        main()

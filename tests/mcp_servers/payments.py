"""A small MCP server (the SDK's MCPServer) the gateway tests stand in front of.

Every refund it makes is appended to the file named by PAYMENTS_LEDGER, so a test can
count how often the upstream really ran. Serves stdio, or streamable HTTP with --port.
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("payments")


def _ledger(entry: dict[str, object]) -> None:
    with open(os.environ["PAYMENTS_LEDGER"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@server.tool()
def refund(order_id: str, amount: float) -> str:
    """Refund part or all of an order."""
    _ledger({"order_id": order_id, "amount": amount})
    return f"refunded {amount:.2f} on {order_id}"


@server.tool()
def lookup_order(order_id: str) -> str:
    """Read an order."""
    return f"order {order_id}: 2 items, 180.00"


@server.tool()
def fail(message: str) -> str:
    """Always fails (an upstream tool error)."""
    raise ToolError(message)


@server.tool()
def crash(order_id: str) -> str:
    """Refunds, then the server dies before answering (the effect happened, no reply)."""
    _ledger({"order_id": order_id, "amount": 0.0})
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--port":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()

"""``proctor bench adapters --framework langgraph``: what the LangGraph integration adds to a
tool call over a bare ``@px.tool`` call.

Three sides on one temporary SQLite database, in interleaved blocks after a warm-up:

- ``bare``: a function wrapped with ``@px.tool``, called directly (decision, body, outcome);
- ``bare_with_id``: the same inside ``px.call_id(...)``, a new identity each call (the
  adapter always decides with the tool_call_id as the identity);
- ``adapter``: the same body as a LangChain tool call through
  ``ProctorMiddleware.wrap_tool_call``, a new tool_call_id each call, with a handler that
  calls the tool's function and wraps its result in a ``ToolMessage`` (what ``ToolNode``
  hands the middleware, without LangChain's own tool-invocation cost).
"""

from __future__ import annotations

import contextlib
import time
from array import array
from typing import Any

from ..sdk import Proctor
from .gate import _database, _percentiles

POLICY = """
policy: bench-langgraph
defaults: {decision: deny}
agents: {bench-agent: {tools: [lookup]}}
rules:
  - {id: lookups, when: 'tool == "lookup"', decide: allow}
"""
SIDES = ("bare", "bare_with_id", "adapter")


def run(n: int = 2000) -> dict[str, Any]:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langgraph.prebuilt.tool_node import ToolCallRequest

    from ..integrations.langgraph import ProctorMiddleware

    def body(order_id: str) -> str:
        return f"order {order_id}"

    with contextlib.ExitStack() as stack:
        px = stack.enter_context(Proctor(stack.enter_context(_database(None))))
        px.policy.apply(POLICY)
        bare = px.tool(agent="bench-agent", name="lookup")(body)
        framework_tool = tool("lookup", description="Look an order up.")(body)
        middleware = ProctorMiddleware(px, agent="bench-agent")

        def handler(request: ToolCallRequest) -> ToolMessage:
            call = request.tool_call
            return ToolMessage(body(**call["args"]), tool_call_id=call["id"], name=call["name"])

        serial = iter(range(1 << 62))

        def one(side: str) -> None:
            order = f"A-{next(serial)}"
            if side == "bare":
                bare(order)
            elif side == "bare_with_id":
                with px.call_id(f"id-{order}"):
                    bare(order)
            else:
                call = {"name": "lookup", "args": {"order_id": order}, "id": f"tc-{order}"}
                request = ToolCallRequest(call, framework_tool, {}, None)  # type: ignore[arg-type]
                middleware.wrap_tool_call(request, handler)

        timed = {side: array("q") for side in SIDES}
        block = max(50, n // 20)
        for start in range(-2 * block, n, block):  # two warm-up blocks first
            for side in SIDES:
                for i in range(start, min(n, start + block)):
                    t = time.perf_counter_ns()
                    one(side)
                    if i >= 0:
                        timed[side].append(time.perf_counter_ns() - t)
    p = {side: _percentiles(timed[side]) for side in SIDES}
    bare_p50, adapter_p50 = p["bare"]["p50_us"], p["adapter"]["p50_us"]
    return {
        "bench": "adapters",
        "framework": "langgraph",
        "n": n,
        "backend": "sqlite",
        "what": "one allowed tool call: bare @px.tool vs through ProctorMiddleware.wrap_tool_call",
        **{f"{side}_p50_us": p[side]["p50_us"] for side in SIDES},
        **{f"{side}_p99_us": p[side]["p99_us"] for side in SIDES},
        "overhead_p50_us": round(adapter_p50 - bare_p50, 1),
        "ratio_p50": round(adapter_p50 / bare_p50, 2),
        "overhead_over_bare_with_id_p50_us": round(adapter_p50 - p["bare_with_id"]["p50_us"], 1),
    }

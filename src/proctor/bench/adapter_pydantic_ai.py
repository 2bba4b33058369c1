"""``proctor bench adapters --framework pydantic-ai``: what ``ProctorToolset`` adds to a
tool call over a bare ``@px.tool`` call.

Four sides, interleaved in rounds on one temporary SQLite database, each an allowed call
with its decision and outcome recorded: a bare ``@px.tool`` call, the same under a call
identity (``px.call_id``: what the adapter's ``tool_call_id`` costs), and the call through
``ProctorToolset.call_tool`` with a new ``tool_call_id`` (deciding on a worker thread,
arguments made JSON and validated back, the wrapped ``FunctionToolset`` called); and, for
scale, the wrapped toolset's own call without Proctor (PydanticAI runs a sync tool on a
worker thread, which the adapter's figure includes).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .._extras import require
from ..sdk import Proctor

POLICY = """
policy: bench-pydantic-ai
defaults: {decision: deny}
agents: {bot: {tools: [refund]}}
rules:
  - {id: routine, when: 'tool == "refund"', decide: allow}
"""
ROUNDS = 10
SIDES = ("framework", "bare", "bare_identity", "adapter")


def run(n: int) -> dict[str, Any]:
    require("pydantic-ai")
    from pydantic_ai import RunContext
    from pydantic_ai.models.test import TestModel
    from pydantic_ai.toolsets import FunctionToolset
    from pydantic_ai.usage import RunUsage

    from ..integrations.pydantic_ai import ProctorToolset

    with tempfile.TemporaryDirectory() as tmp, Proctor(f"sqlite:///{Path(tmp)}/b.db") as px:
        px.policy.apply(POLICY)

        def body(order_id: str, amount: float) -> str:
            return f"refunded {amount} on {order_id}"

        bare = px.tool(agent="bot", name="refund")(body)
        tools: FunctionToolset[Any] = FunctionToolset()
        tools.add_function(body, name="refund", takes_ctx=False)
        gated = ProctorToolset(px, tools, agent="bot")
        base = RunContext(deps=None, model=TestModel(), usage=RunUsage())

        async def measure() -> dict[str, list[float]]:
            tool = (await gated.get_tools(base))["refund"]
            times: dict[str, list[float]] = {side: [] for side in SIDES}
            per_round = max(1, n // ROUNDS)
            serial = 0
            for _ in range(ROUNDS + 1):  # the first round warms up and is dropped
                for side in SIDES:
                    timed: list[float] = []
                    for _ in range(per_round):
                        serial += 1
                        args: dict[str, Any] = {"order_id": f"A-{serial}", "amount": 10.0}
                        start = time.perf_counter()
                        if side == "framework":  # PydanticAI alone, no Proctor
                            await tools.call_tool("refund", args, base, tool)
                        elif side == "bare":
                            bare(**args)
                        elif side == "bare_identity":
                            with px.call_id(f"id-{serial}"):
                                bare(**args)
                        else:
                            ctx = RunContext(
                                deps=None,
                                model=base.model,
                                usage=base.usage,
                                tool_call_id=f"tc-{serial}",
                                tool_name="refund",
                            )
                            await gated.call_tool("refund", args, ctx, tool)
                        timed.append(time.perf_counter() - start)
                    times[side].extend(timed)
            for side in SIDES:
                del times[side][:per_round]  # the warm-up round
            return times

        times = asyncio.run(measure())
    return summary("pydantic-ai", n, times)


def summary(framework: str, n: int, times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians in µs, and the adapter's overhead over a bare call and over one with an
    identity (which every adapter call has), in µs and as a ratio. ``framework_p50_us`` is
    the framework's own tool call, without Proctor."""
    p50 = {side: statistics.median(values) * 1e6 for side, values in times.items()}
    return {
        "bench": "adapters",
        "framework": framework,
        "n": n,
        "rounds": ROUNDS,
        "backend": "sqlite",
        **{f"{side}_p50_us": round(p50[side], 1) for side in times},
        "overhead_us": round(p50["adapter"] - p50["bare"], 1),
        "overhead_ratio": round(p50["adapter"] / p50["bare"], 2),
        "overhead_over_identity_us": round(p50["adapter"] - p50["bare_identity"], 1),
        "overhead_over_identity_ratio": round(p50["adapter"] / p50["bare_identity"], 2),
    }

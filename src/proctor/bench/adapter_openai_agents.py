"""``proctor bench adapters --framework openai-agents``: what the Agents SDK adapter adds to
a tool call over a bare ``@px.tool`` call.

Three sides, interleaved in blocks on one SQLite file (an allowed call: decision, body,
outcome):

- ``bare``: the ``@px.tool`` function called directly;
- ``bare_call_id``: the same inside ``px.call_id(...)`` (the identity the adapter gives
  every call, so the difference to ``adapter`` is the adapter's own work);
- ``adapter``: the gated ``FunctionTool`` driven as the SDK drives it: ``needs_approval``
  with the model's arguments and ``call_id``, then ``on_invoke_tool``.

And, for scale, whole ``Runner.run`` turns with a scripted model (one tool call, one
answer): an ungated ``@function_tool`` against the gated tool.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..integrations.openai_agents import gated_tool
from ..sdk import Proctor

POLICY = """
policy: bench-openai-agents
defaults: {decision: deny}
agents: {bench-bot: {tools: [refund]}}
rules:
  - {id: ok, when: 'tool == "refund"', decide: allow}
"""
SIDES = ("bare", "bare_call_id", "adapter")


def run(n: int) -> dict[str, Any]:
    return asyncio.run(_bench(n))


async def _bench(n: int) -> dict[str, Any]:
    from agents import function_tool, set_tracing_disabled
    from agents.tool_context import ToolContext

    set_tracing_disabled(True)
    with (
        tempfile.TemporaryDirectory(prefix="proctor-bench-") as tmp,
        Proctor(f"sqlite:///{tmp}/bench.db") as px,
    ):
        px.policy.apply(POLICY)

        @px.tool(agent="bench-bot")
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            return f"refunded {amount} on {order_id}"

        tool = gated_tool(px, refund)
        serial = iter(range(1 << 62))

        async def bare() -> None:
            refund("A-1", 20.0)

        async def bare_call_id() -> None:
            with px.call_id(f"b-{next(serial)}"):
                refund("A-1", 20.0)

        async def adapter() -> None:
            call_id = f"a-{next(serial)}"
            params = {"order_id": "A-1", "amount": 20.0}
            text = json.dumps(params)
            ctx = ToolContext(None, tool_name="refund", tool_call_id=call_id, tool_arguments=text)
            if await tool.needs_approval(ctx, params, call_id):  # type: ignore[operator]
                raise AssertionError("an allowed call needs no approval")
            await tool.on_invoke_tool(ctx, text)

        calls = await _interleaved(
            {"bare": bare, "bare_call_id": bare_call_id, "adapter": adapter}, n
        )

        plain_tool = function_tool(refund.__proctor_tool__.fn, name_override="refund")  # type: ignore[attr-defined]
        turns = max(20, n // 20)
        runs = await _interleaved({"sdk_plain": _turn(plain_tool), "sdk_gated": _turn(tool)}, turns)
    medians = {side: statistics.median(samples) for side, samples in calls.items()}
    run_medians = {side: statistics.median(samples) for side, samples in runs.items()}
    return {
        "bench": "adapters",
        "framework": "openai-agents",
        "backend": "sqlite",
        "n": n,
        "what": "an allowed tool call (decision + body + outcome), p50 per call in µs;"
        " sdk_*: a whole Runner.run turn with a scripted model",
        **{f"{side}_p50_us": round(medians[side], 1) for side in SIDES},
        **{f"{side}_p99_us": round(_p99(calls[side]), 1) for side in SIDES},
        "overhead_us": round(medians["adapter"] - medians["bare"], 1),
        "overhead_ratio": round(medians["adapter"] / medians["bare"], 2),
        "overhead_vs_call_id_us": round(medians["adapter"] - medians["bare_call_id"], 1),
        "sdk_turns": turns,
        "sdk_plain_p50_us": round(run_medians["sdk_plain"], 1),
        "sdk_gated_p50_us": round(run_medians["sdk_gated"], 1),
        "sdk_overhead_us": round(run_medians["sdk_gated"] - run_medians["sdk_plain"], 1),
    }


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _interleaved(
    sides: dict[str, Callable[[], Awaitable[None]]], n: int
) -> dict[str, list[float]]:
    """Each side ``n`` times, in alternating blocks after a warm-up, in µs per call."""
    block = max(10, n // 10)
    samples: dict[str, list[float]] = {side: [] for side in sides}
    for start in range(-block, n, block):
        for side, fn in sides.items():
            for _ in range(block if start >= 0 else max(5, block // 2)):
                began = time.perf_counter()
                await fn()
                if start >= 0:
                    samples[side].append((time.perf_counter() - began) * 1e6)
    return samples


def _turn(tool: Any) -> Callable[[], Awaitable[None]]:
    """One ``Runner.run``: the scripted model calls the tool, then answers."""
    from agents import Agent, Model, ModelResponse, RunConfig, Runner, Usage
    from agents.testing import assistant_message, function_call

    serial = iter(range(1 << 62))

    class OneCall(Model):
        async def get_response(
            self, system_instructions: Any, input: Any, *a: Any, **k: Any
        ) -> Any:
            last = input[-1] if isinstance(input, list) else {}
            last = last if isinstance(last, dict) else last.model_dump()
            if last.get("type") == "function_call_output":
                output = [assistant_message("done")]
            else:
                arguments = {"order_id": "A-1", "amount": 20.0}
                output = [function_call("refund", arguments, call_id=f"r-{next(serial)}")]
            return ModelResponse(output=output, usage=Usage(), response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    agent = Agent(name="bench-bot", model=OneCall(), tools=[tool])
    config = RunConfig(tracing_disabled=True)

    async def turn() -> None:
        await Runner.run(agent, "go", run_config=config)

    return turn

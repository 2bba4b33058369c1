"""``proctor bench adapters --framework crewai``: what ``gated`` adds to a tool call over a
bare ``@px.tool`` call.

Four sides, interleaved in rounds on one temporary SQLite database, each an allowed call
with its decision and outcome recorded (except the first): the CrewAI tool's own ``run``
without Proctor, for scale; a bare ``@px.tool`` call; the same with a business key
(``key="order_id"``, a new one each call: the identity the adapter is given); and the gated
tool's ``run`` with the same key (CrewAI's argument validation, the decision, the wrapped
tool's ``run``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .._extras import require
from ..sdk import Proctor
from .adapter_pydantic_ai import POLICY, ROUNDS, summary

SIDES = ("framework", "bare", "bare_identity", "adapter")


def run(n: int) -> dict[str, Any]:
    require("crewai")
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    from crewai.tools import tool

    from ..integrations.crewai import gated

    with tempfile.TemporaryDirectory() as tmp, Proctor(f"sqlite:///{Path(tmp)}/b.db") as px:
        px.policy.apply(POLICY.replace("bench-pydantic-ai", "bench-crewai"))

        def body(order_id: str, amount: float) -> str:
            """Refund an order."""
            return f"refunded {amount} on {order_id}"

        crew_tool = tool("refund")(body)
        bare = px.tool(agent="bot", name="refund")(body)
        keyed = px.tool(agent="bot", name="refund", key="order_id")(body)
        adapter = gated(px, crew_tool, agent="bot", key="order_id")
        calls = {"framework": crew_tool.run, "bare": bare, "bare_identity": keyed}
        calls["adapter"] = adapter.run
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        per_round = max(1, n // ROUNDS)
        serial = 0
        for _ in range(ROUNDS + 1):  # the first round warms up and is dropped
            for side in SIDES:
                fn = calls[side]
                for _ in range(per_round):
                    serial += 1
                    args: dict[str, Any] = {"order_id": f"A-{serial}", "amount": 10.0}
                    start = time.perf_counter()
                    fn(**args)
                    times[side].append(time.perf_counter() - start)
        for side in SIDES:
            del times[side][:per_round]
    return summary("crewai", n, times)

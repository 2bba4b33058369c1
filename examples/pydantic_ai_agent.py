"""A PydanticAI support agent whose tools pass Proctor's gate; no API key needed.

The model is scripted (PydanticAI's ``FunctionModel``): each prompt names one tool call,
and the agent answers with what the tool returned. The policy is the support-desk example:
small refunds run, refunds over 100 wait for a billing lead, deleting accounts is refused.

Run: pip install 'proctor[pydantic-ai]' && python examples/pydantic_ai_agent.py [DATABASE_URL]
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from importlib.resources import files
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests
from pydantic_ai.toolsets import FunctionToolset

import proctor
from proctor.integrations.pydantic_ai import ProctorToolset, proctor_results

# What the scripted model does for each prompt: one tool call.
PLAN: dict[str, tuple[str, dict[str, Any]]] = {
    "Refund 40 on A-1": ("issue_refund", {"order_id": "A-1", "amount": 40.0}),
    "Close the account of C-7": ("delete_account", {"customer": "C-7"}),
    "Refund 250 on A-2": ("issue_refund", {"order_id": "A-2", "amount": 250.0}),
}


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call the planned tool for the prompt; once it returned, say what it returned."""
    last = messages[-1]
    parts = last.parts if isinstance(last, ModelRequest) else []
    returned = [p for p in parts if isinstance(p, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart(returned[-1].model_response_str())])
    prompt = next(p.content for p in parts if isinstance(p, UserPromptPart))
    tool, args = PLAN[str(prompt)]
    # Real models give each call a unique id: Proctor decides each id once.
    return ModelResponse(parts=[ToolCallPart(tool, args, tool_call_id=f"call_{uuid.uuid4().hex}")])


def build(px: proctor.Proctor) -> tuple[Agent[None, Any], list[str]]:
    refunds: list[str] = []
    tools: FunctionToolset[Any] = FunctionToolset()

    @tools.tool_plain
    def issue_refund(order_id: str, amount: float) -> str:
        """Refund part or all of an order."""
        refunds.append(order_id)
        return f"refunded {amount:.2f} on {order_id}"

    @tools.tool_plain
    def delete_account(customer: str) -> str:
        """Close a customer's account."""
        raise RuntimeError("never reached: the policy refuses it")

    agent = Agent(
        FunctionModel(scripted_model),
        toolsets=[ProctorToolset(px, tools, agent="support-bot")],
        output_type=[str, DeferredToolRequests],
    )
    return agent, refunds


def main(database: str | None = None) -> list[str]:
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text)

    if database is None:
        database = f"sqlite:///{tempfile.mkdtemp()}/proctor.db"
    with proctor.Proctor(database) as px:
        px.policy.apply(files("proctor").joinpath("examples/support-desk.yaml").read_text())
        agent, refunds = build(px)

        for prompt in ("Refund 40 on A-1", "Close the account of C-7"):
            say(f"{prompt} -> {agent.run_sync(prompt).output}")

        first = agent.run_sync("Refund 250 on A-2")
        assert isinstance(first.output, DeferredToolRequests)
        (call,) = first.output.approvals
        item_id = first.output.metadata[call.tool_call_id]["proctor"]["item_id"]
        say(f"Refund 250 on A-2 -> waits for review item {item_id}")
        say(f"  (a billing lead runs: proctor queue approve {item_id} --by ana -d {database})")
        px.reviews.approve(item_id, by="ana")
        results = proctor_results(px, first.output)
        for _ in range(2):  # resumed twice, as a retried worker would: it runs once
            done = agent.run_sync(
                message_history=first.all_messages(), deferred_tool_results=results
            )
            say(f"resumed -> {done.output}")
        say(f"refunds made: {', '.join(refunds)}")
    return lines


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)

"""A CrewAI support crew whose tools pass Proctor's gate; no API key needed.

The agent's LLM is scripted (a small ``BaseLLM``): each task names one tool call, and the
agent answers with what the tool returned. The policy is the support-desk example: small
refunds run, refunds over 100 wait for a billing lead, deleting accounts is refused.

Run: pip install 'proctor[crewai]' && python examples/crewai_agent.py [DATABASE_URL]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from importlib.resources import files
from typing import Any

# No telemetry, and no tracing consent prompt on a first run.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool, tool

import proctor
from proctor.integrations.crewai import gated


class ScriptedLLM(BaseLLM):
    """Native function calling, scripted: call ``tool`` with ``args``, then answer with
    the tool's output (which is what the agent read)."""

    tool: str
    args: dict[str, Any]

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        answers = [m["content"] for m in messages if m.get("role") == "tool"]
        if answers:
            return str(answers[-1])
        call = {"name": self.tool, "arguments": json.dumps(self.args)}
        return [{"id": "call_1", "type": "function", "function": call}]

    def supports_function_calling(self) -> bool:
        return True


def ask(tools: list[BaseTool], tool_name: str, **args: Any) -> str:
    """One crew, one task: the scripted agent makes one call and reports what it read."""
    agent = Agent(
        role="support agent",
        goal="settle customers' requests",
        backstory="works the support desk",
        llm=ScriptedLLM(model="scripted", tool=tool_name, args=args),
        tools=tools,
    )
    task = Task(description=f"{tool_name} {args}", expected_output="what happened", agent=agent)
    return Crew(agents=[agent], tasks=[task]).kickoff().raw


def main(database: str | None = None) -> list[str]:
    lines: list[str] = []
    refunds: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text)

    @tool("issue_refund")
    def issue_refund(order_id: str, amount: float) -> str:
        """Refund part or all of an order."""
        refunds.append(order_id)
        return f"refunded {amount:.2f} on {order_id}"

    @tool("delete_account")
    def delete_account(customer: str) -> str:
        """Close a customer's account."""
        raise RuntimeError("never reached: the policy refuses it")

    if database is None:
        database = f"sqlite:///{tempfile.mkdtemp()}/proctor.db"
    with proctor.Proctor(database) as px:
        px.policy.apply(files("proctor").joinpath("examples/support-desk.yaml").read_text())
        # key="order_id": CrewAI gives a tool no call id, so the order is the identity. A
        # refund asked again finds its review item, and once done its recorded result.
        tools = [
            gated(px, issue_refund, agent="support-bot", key="order_id", wait=0),
            gated(px, delete_account, agent="support-bot"),
        ]
        say(f"refund 40 on A-1 -> {ask(tools, 'issue_refund', order_id='A-1', amount=40.0)}")
        say(f"delete C-7 -> {ask(tools, 'delete_account', customer='C-7')}")
        say(f"refund 250 on A-2 -> {ask(tools, 'issue_refund', order_id='A-2', amount=250.0)}")
        (item,) = px.reviews.list()
        say(f"  (a billing lead runs: proctor queue approve {item.id} --by ana -d {database})")
        px.reviews.approve(item.id, by="ana")
        for _ in range(2):  # the crew asks again, twice: the refund happens once
            say(f"asked again -> {ask(tools, 'issue_refund', order_id='A-2', amount=250.0)}")
        say(f"refunds made: {', '.join(refunds)}")
    return lines


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)

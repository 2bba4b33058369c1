"""A LangChain agent (``create_agent``) whose tool calls pass Proctor's gate.

A scripted chat model stands in for an LLM, so it runs without an API key:

    pip install 'proctor[langgraph]'
    python examples/langgraph_agent.py [--database sqlite:///demo.db]

The agent looks an order up (allowed), asks for a 250.00 refund (the policy wants a billing
lead: the graph pauses on ``interrupt()``), and, after the reviewer's edit to 80.00, tries
to close the account (denied: the model reads why). Resuming the graph a second time does
not refund again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from proctor import Proctor
from proctor.integrations.langgraph import ProctorMiddleware

POLICY = """
policy: langgraph-example
defaults: {decision: deny, queue: billing}
queues: {billing: {roles: [billing_lead]}}
agents: {support-bot: {tools: [lookup_order, issue_refund, close_account]}}
rules:
  - {id: routine, when: 'tool in ["lookup_order", "issue_refund"]', decide: allow}
  - id: large-refund
    when: 'tool == "issue_refund" && args.amount > 100.0'
    decide: review
    reason: Refunds over 100 need a billing lead
  - id: no-closing
    when: 'tool == "close_account"'
    decide: deny
    reason: Accounts are closed by people, never by the agent
"""

SCRIPT = [  # what the "model" asks for, turn by turn
    [("lookup_order", {"order_id": "A-17"}, "call_lookup")],
    [("issue_refund", {"order_id": "A-17", "amount": 250.0}, "call_refund")],
    [("close_account", {"customer": "c-42"}, "call_close")],
]

refunds: list[tuple[str, float]] = []


@tool
def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return f"order {order_id}: 80.00 paid, item damaged"


@tool
def issue_refund(order_id: str, amount: float) -> str:
    """Refund part or all of an order."""
    refunds.append((order_id, amount))
    return f"refunded {amount} on {order_id}"


@tool
def close_account(customer: str) -> str:
    """Close a customer's account."""
    return "closed"


class ScriptedModel(BaseChatModel):
    """Turn ``n`` asks for ``SCRIPT[n]``; then it sums up in words."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        if turn < len(SCRIPT):
            calls = [{"name": n, "args": a, "id": i} for n, a, i in SCRIPT[turn]]
            reply = AIMessage(content="", tool_calls=calls)
        else:
            reply = AIMessage(content="All done for the customer.")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def main(database: str) -> None:
    with Proctor(database) as px:
        px.policy.apply(POLICY)
        agent = create_agent(
            ScriptedModel(),
            [lookup_order, issue_refund, close_account],
            middleware=[ProctorMiddleware(px, agent="support-bot")],
            checkpointer=InMemorySaver(),
        )
        thread = {"configurable": {"thread_id": "ticket-1001"}}

        out = agent.invoke({"messages": [HumanMessage("A-17 arrived broken")]}, thread)
        (pause,) = out["__interrupt__"]
        request = pause.value[0]
        print("The graph paused for a human (Agent Inbox HumanInterrupt):")
        print(json.dumps(request["action_request"]), "\n" + request["description"], "\n")

        edit = {"type": "edit", "args": {"action": "issue_refund", "args": {"amount": 80.0}}}
        out = agent.invoke(Command(resume=[edit]), thread)
        for message in out["messages"]:
            if isinstance(message, ToolMessage):
                print(f"{message.name} [{message.status}]: {message.content}")
        print("model:", out["messages"][-1].content)

        agent.invoke(Command(resume=[edit]), thread)  # a second resume runs nothing again
        item = px.reviews.get(request["proctor"]["item_id"])
        print(f"\nreview item {item.id}: {item.status}, edited to {item.edited_args}")
        print(f"the refund ran once: {refunds}" if len(refunds) == 1 else f"ran {len(refunds)}x!")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="a database URL (default: a temporary SQLite file)")
    given = parser.parse_args().database
    if given:
        main(given)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(f"sqlite:///{Path(tmp) / 'proctor.db'}")

"""An OpenAI Agents SDK agent whose tools Proctor gates; a scripted model, so no API key.

Run: python examples/openai_agents_agent.py  (needs ``pip install 'proctor[openai-agents]'``;
uses PROCTOR_DATABASE_URL or ./.proctor/proctor.db)

1. A small refund: Proctor allows it, the SDK asks nobody, the body runs once.
2. Deleting an account: the policy refuses it; the model reads why, in plain words.
3. A large refund: the run is interrupted on Proctor's review item. A reviewer edits the
   amount in Proctor; the decision is applied to the saved run state, which is resumed
   twice: the refund runs once, with the edited amount.
"""

from __future__ import annotations

import asyncio
import uuid
from importlib.resources import files
from typing import Any

from agents import Agent, Model, ModelResponse, RunConfig, Runner, RunState, Usage
from agents.testing import assistant_message, function_call

import proctor
from proctor.integrations.openai_agents import apply_decisions, gated_tool, item_for

px = proctor.Proctor()
px.policy.apply(files("proctor").joinpath("examples/support-desk.yaml").read_text())
refunds: list[tuple[str, float]] = []


@px.tool(agent="support-bot")
def issue_refund(order_id: str, amount: float) -> str:
    """Refund part or all of an order."""
    refunds.append((order_id, amount))
    return f"refunded {amount} on {order_id}"


@px.tool(agent="support-bot")
def delete_account(customer: str) -> str:
    """Delete a customer's account."""
    raise RuntimeError("never reached: the policy refuses it")


class ScriptedModel(Model):
    """Asks for one tool call, then repeats what the tool said (instead of an LLM)."""

    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        self.call = function_call(tool, arguments, call_id=f"call_{uuid.uuid4().hex[:12]}")

    async def get_response(self, system_instructions: Any, input: Any, *a: Any, **k: Any) -> Any:
        last = input[-1] if isinstance(input, list) else {}
        last = last if isinstance(last, dict) else last.model_dump()
        if last.get("type") == "function_call_output":
            output = [assistant_message(f"The tool said: {last['output']}")]
        else:
            output = [self.call]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


TOOLS = [gated_tool(px, issue_refund), gated_tool(px, delete_account)]
CONFIG = RunConfig(tracing_disabled=True)


def agent(tool: str, **arguments: Any) -> Agent[Any]:
    return Agent(name="support-bot", model=ScriptedModel(tool, arguments), tools=TOOLS)


async def main() -> None:
    small = await Runner.run(
        agent("issue_refund", order_id="A-1", amount=20.0), "Refund A-1", run_config=CONFIG
    )
    print("1.", small.final_output)

    delete = await Runner.run(
        agent("delete_account", customer="C-9"), "Delete C-9", run_config=CONFIG
    )
    print("2.", delete.final_output)

    bot = agent("issue_refund", order_id="A-17", amount=250.0)
    large = await Runner.run(bot, "Refund A-17 in full", run_config=CONFIG)
    item_id = item_for(px, large.interruptions[0])
    print(f"3. the run waits for review item {item_id}")
    saved = large.to_state().to_json()  # store it anywhere; resume from any process

    # A billing lead decides in Proctor (here in code; the console, the API or
    # `proctor queue edit` do the same).
    px.reviews.edit(item_id or "", by="ana", args={"amount": 150.0}, note="partial refund")

    state = await RunState.from_json(bot, saved)
    print("   applied:", [a.outcome for a in apply_decisions(px, state)])
    approved = state.to_json()
    for attempt in (1, 2):  # the same saved state, resumed twice
        done = await Runner.run(bot, await RunState.from_json(bot, approved), run_config=CONFIG)
        print(f"   resume {attempt}:", done.final_output)
    print(f"   the refund ran once: {refunds.count(('A-17', 150.0)) == 1} ({refunds})")


if __name__ == "__main__":
    from agents import set_tracing_disabled

    set_tracing_disabled(True)
    asyncio.run(main())
    px.close()

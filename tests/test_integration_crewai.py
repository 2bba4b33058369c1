"""CrewAI behind the gate: a real ``Crew`` whose agent is a scripted ``BaseLLM`` (both the
ReAct text protocol and native function calling), its tools wrapped by ``gated``, on both
databases (and a reviewer in another process)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.test_cli import proctor

if importlib.util.find_spec("crewai") is not None:  # never in a process testing the rest
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")  # else a first run asks, for 20 s
# CrewAI needs mcp<2, so scripts/check runs this file in an environment of its own, where
# it must be installed (PROCTOR_TEST_CREWAI=1); elsewhere it is skipped, not failed.
if os.environ.get("PROCTOR_TEST_CREWAI") == "1":
    assert importlib.util.find_spec("crewai") is not None, "CrewAI must be installed here"
pytest.importorskip("crewai", reason="tested in its own environment by scripts/check")

from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM
from crewai.tools import BaseTool, tool

from proctor import ConfigError, Proctor
from proctor.integrations.crewai import ProctorTool, gated

POLICY = """
policy: crewai-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: routine, when: 'tool == "refund"', decide: allow}
  - id: large-refund
    when: 'tool == "refund" && args.amount > 100.0'
    decide: review
    reason: Refunds over 100 need a billing lead
  - id: no-vip
    when: 'tool == "refund" && args.order_id.startsWith("VIP")'
    decide: deny
    reason: VIP orders are refunded by their account manager
"""


class Scripted(BaseLLM):
    """A model that asks for one refund, then answers; it keeps every prompt it got."""

    native: bool = False
    args: dict[str, Any] = {}
    prompts: list[Any] = []

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
        self.prompts.append(messages)
        if len(self.prompts) > 1:
            return "done" if self.native else "Thought: I know what happened\nFinal Answer: done"
        if self.native:
            arguments = json.dumps(self.args)
            return [{"id": "call_1", "function": {"name": "refund", "arguments": arguments}}]
        return f"Thought: refund it\nAction: refund\nAction Input: {json.dumps(self.args)}"

    def supports_function_calling(self) -> bool:
        return self.native

    def observed(self) -> str:
        """What the tool call gave the model: the tool message, or the ReAct observation."""
        last = self.prompts[-1]
        if self.native:
            return str(next(m["content"] for m in reversed(last) if m["role"] == "tool"))
        text = next(m["content"] for m in reversed(last) if "Observation:" in str(m["content"]))
        return str(text).split("Observation:", 1)[1].strip()


class Shop:
    def __init__(self) -> None:
        self.refunds: list[tuple[str, float]] = []

        @tool("refund")
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.refunds.append((order_id, amount))
            return f"refunded {amount:.2f} on {order_id}"

        self.tool: BaseTool = refund


def kickoff(gated_tool: ProctorTool, native: bool, **args: Any) -> Scripted:
    llm = Scripted(model="scripted", native=native, args=args, prompts=[])
    agent = Agent(role="support", goal="settle refunds", backstory="a desk", llm=llm)
    agent.tools = [gated_tool]
    task = Task(description="Refund the order", expected_output="what happened", agent=agent)
    assert Crew(agents=[agent], tasks=[task]).kickoff().raw == "done"
    return llm


@pytest.fixture(autouse=True)
def crewai_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CrewAI keeps task outputs under the user's data directory: a temporary one here."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "crewai"))


@pytest.fixture
def gpx(db_url: str) -> Iterator[Proctor]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        yield px


# CrewAI's own deprecations, raised from inside CrewAI: theirs to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:crewai")
native = pytest.mark.parametrize("native", [False, True], ids=["react", "function-calling"])


@native
def test_an_allowed_call_runs_and_a_keyed_repeat_returns_the_recorded_result(
    gpx: Proctor, native: bool
) -> None:
    shop = Shop()
    refund = gated(gpx, shop.tool, agent="bot", key="order_id")
    assert refund.name == "refund" and refund.description == "Refund an order."
    assert kickoff(refund, native, order_id="A-1", amount=20.0).observed() == (
        "refunded 20.00 on A-1"
    )
    assert kickoff(refund, native, order_id="A-1", amount=20.0).observed() == (
        "refunded 20.00 on A-1"
    )
    assert shop.refunds == [("A-1", 20.0)]
    # Without a key every call is its own decision, and runs.
    unkeyed = gated(gpx, shop.tool, agent="bot")
    kickoff(unkeyed, native, order_id="A-1", amount=20.0)
    assert shop.refunds == [("A-1", 20.0), ("A-1", 20.0)]


@native
def test_a_denied_call_is_read_by_the_agent_with_its_reason(gpx: Proctor, native: bool) -> None:
    shop = Shop()
    refund = gated(gpx, shop.tool, agent="bot", key="order_id")
    seen = kickoff(refund, native, order_id="VIP-9", amount=20.0).observed()
    assert seen.startswith(
        "Refused by policy: VIP orders are refunded by their account manager (rules: no-vip)."
    )
    assert "Error executing tool" not in seen
    assert shop.refunds == []


def test_a_review_approved_from_another_process_runs_once(sqlite_url: str) -> None:
    px = Proctor(sqlite_url)
    px.policy.apply(POLICY)
    shop = Shop()
    refund = gated(px, shop.tool, agent="bot", key="order_id", wait=0)
    seen = kickoff(refund, True, order_id="A-2", amount=250.0).observed()
    (item,) = px.reviews.list()
    assert seen == (
        f"Not carried out yet: it awaits a human's approval in review item {item.id}"
        " (rules: large-refund): Refunds over 100 need a billing lead."
        " Tell the user it awaits approval."
    )
    # Asked again before anyone decided: the same item, still nothing done.
    assert item.id in kickoff(refund, False, order_id="A-2", amount=250.0).observed()
    assert len(px.reviews.list()) == 1 and shop.refunds == []

    approved = proctor("queue", "approve", item.id, "--by", "lead", "-d", sqlite_url)
    assert approved.returncode == 0, approved.stderr
    for _ in range(2):  # the crew asks again (twice): it runs under the approval, once
        seen = kickoff(refund, True, order_id="A-2", amount=250.0).observed()
        assert seen == "refunded 250.00 on A-2"
    assert shop.refunds == [("A-2", 250.0)]
    assert px.reviews.get(item.id).status == "done"
    px.close()


def test_a_waiting_call_runs_an_edit_validated_and_reads_a_rejection(gpx: Proctor) -> None:
    shop = Shop()
    refund = gated(gpx, shop.tool, agent="bot", key="order_id", wait=30)

    def review(act: str) -> threading.Thread:
        def work() -> None:
            for _ in range(600):
                pending = gpx.reviews.list()
                if pending:
                    if act == "edit":
                        gpx.reviews.edit(pending[0].id, by="lead", args={"amount": 150})
                    else:
                        gpx.reviews.reject(pending[0].id, by="lead", reason="never paid")
                    return
                threading.Event().wait(0.05)

        thread = threading.Thread(target=work)
        thread.start()
        return thread

    reviewer = review("edit")
    assert kickoff(refund, True, order_id="A-3", amount=400.0).observed() == (
        "refunded 150.00 on A-3"
    )
    reviewer.join(30)
    assert shop.refunds == [("A-3", 150.0)]  # an int edit, validated into the tool's float

    reviewer = review("reject")
    seen = kickoff(refund, False, order_id="A-4", amount=900.0).observed()
    reviewer.join(30)
    assert seen.startswith("A reviewer rejected this call: never paid (rules: large-refund).")
    assert shop.refunds == [("A-3", 150.0)]


def test_async_use_and_bad_wrapping(gpx: Proctor) -> None:
    shop = Shop()
    refund = gated(gpx, shop.tool, agent="bot")
    assert asyncio.run(refund.arun(order_id="A-5", amount=5.0)) == "refunded 5.00 on A-5"
    assert shop.refunds == [("A-5", 5.0)]
    with pytest.raises(ConfigError, match="has no"):
        gated(gpx, shop.tool, agent="bot", key="order")
    with pytest.raises(TypeError, match="BaseTool"):
        gated(gpx, lambda: None, agent="bot")  # type: ignore[arg-type]


def test_the_example_runs_without_an_api_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(__file__).resolve().parent.parent / "examples" / "crewai_agent.py"
    spec = importlib.util.spec_from_file_location("crewai_agent", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # pydantic resolves names there
    spec.loader.exec_module(example)
    lines = example.main(sqlite_url)
    assert lines[0] == "refund 40 on A-1 -> refunded 40.00 on A-1"
    assert lines[1].startswith("delete C-7 -> Refused by policy: ")
    assert "awaits a human's approval in review item" in lines[2]
    assert lines[4:] == [
        "asked again -> refunded 250.00 on A-2",
        "asked again -> refunded 250.00 on A-2",
        "refunds made: A-1, A-2",
    ]


def test_a_crew_kicked_off_inside_a_run_is_decided_with_its_context(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(
            POLICY.replace(
                "rules:\n",
                "rules:\n  - {id: frozen, when: 'context.ticket == \"T-9\"', decide: deny,"
                " reason: ticket T-9 is frozen}\n",
            )
        )
        shop = Shop()
        refund = gated(px, shop.tool)  # no agent=: the run's
        for native in (False, True):
            with px.run(agent="bot", ticket="T-9"):
                seen = kickoff(refund, native, order_id="A-1", amount=5.0).observed()
            assert seen.startswith("Refused by policy: ticket T-9 is frozen (rules: frozen).")
        assert shop.refunds == []


class AsksTwice(Scripted):
    """Makes the same call twice in one crew, with ``between`` run in between."""

    between: Any = None

    def call(self, messages: Any, *rest: Any, **options: Any) -> Any:
        self.prompts.append(messages)
        if len(self.prompts) > 2:
            return "done"
        if len(self.prompts) == 2:
            self.between()
        arguments = json.dumps(self.args)
        call_id = f"call_{len(self.prompts)}"
        return [{"id": call_id, "function": {"name": "refund", "arguments": arguments}}]


def test_a_call_asked_again_in_the_same_crew_is_decided_again(gpx: Proctor) -> None:
    """With caching on, CrewAI keeps tool results by input within a crew; never a gated
    tool's: every call passes the gate."""
    shop = Shop()
    refund = gated(gpx, shop.tool, agent="bot", key="order_id", wait=0)

    def approve() -> None:
        (item,) = gpx.reviews.list()
        gpx.reviews.approve(item.id, by="lead")

    llm = AsksTwice(
        model="scripted", native=True, args={"order_id": "A-6", "amount": 600.0}, prompts=[]
    )
    llm.between = approve
    agent = Agent(role="support", goal="settle refunds", backstory="a desk", llm=llm)
    agent.tools = [refund]
    task = Task(description="Refund the order", expected_output="what happened", agent=agent)
    Crew(agents=[agent], tasks=[task], cache=True).kickoff()  # caching opted into
    tool_messages = [m["content"] for m in llm.prompts[-1] if m["role"] == "tool"]
    assert tool_messages[0].startswith("Not carried out yet")
    assert tool_messages[1] == "refunded 600.00 on A-6"
    assert shop.refunds == [("A-6", 600.0)]


@pytest.mark.slow
def test_the_bench_prints_the_adapters_overhead() -> None:
    done = proctor("bench", "adapters", "--framework", "crewai", "-n", "50", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["framework"] == "crewai" and figures["n"] == 50
    for side in ("framework", "bare", "bare_identity", "adapter"):
        assert figures[f"{side}_p50_us"] > 0
    difference = figures["adapter_p50_us"] - figures["bare_p50_us"]
    assert figures["overhead_us"] == pytest.approx(difference, abs=0.11)  # each rounded
    assert figures["overhead_ratio"] > 0

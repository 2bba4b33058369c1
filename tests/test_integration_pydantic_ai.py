"""PydanticAI behind the gate: a real ``Agent`` driven by a scripted ``FunctionModel``, its
tools wrapped by ``ProctorToolset``, on both databases (and a reviewer in another process)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.test_cli import proctor

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolDenied
from pydantic_ai.toolsets import FunctionToolset

from proctor import Conflict, InvalidRequest, Proctor
from proctor.integrations.pydantic_ai import ProctorToolset, proctor_results

POLICY = """
policy: pydantic-ai-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund, lookup]}}
rules:
  - {id: routine, when: 'tool in ["refund", "lookup"]', decide: allow}
  - id: large-refund
    when: 'tool == "refund" && args.amount > 100.0'
    decide: review
    reason: Refunds over 100 need a billing lead
  - id: no-vip
    when: 'tool == "refund" && args.order_id.startsWith("VIP")'
    decide: deny
    reason: VIP orders are refunded by their account manager
"""


class Shop:
    """The tools' side effects, counted."""

    def __init__(self) -> None:
        self.refunds: list[tuple[str, float]] = []
        self.toolset: FunctionToolset[Any] = FunctionToolset()

        @self.toolset.tool_plain
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.refunds.append((order_id, amount))
            return f"refunded {amount:.2f} on {order_id}"


class Script:
    """A scripted model: one tool call per run (its id fixed, so a resume is the same
    call), then a reply quoting what the tool returned, which is what the model saw."""

    def __init__(self, tool_call_id: str, order_id: str, amount: float) -> None:
        self.call = ToolCallPart(
            "refund", {"order_id": order_id, "amount": amount}, tool_call_id=tool_call_id
        )
        self.seen: list[ToolReturnPart] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        parts = last.parts if isinstance(last, ModelRequest) else []
        returns = [p for p in parts if isinstance(p, ToolReturnPart)]
        if returns:
            self.seen.extend(returns)
            return ModelResponse(parts=[TextPart(f"tool said: {returns[-1].model_response_str()}")])
        return ModelResponse(parts=[self.call])


@pytest.fixture(autouse=True)
def close_run_sync_loop() -> Iterator[None]:
    """``Agent.run_sync`` leaves a new event loop set on the thread, never closed: close it
    here, or the next ``asyncio.run`` on the thread drops it, and its collection warns
    (``ResourceWarning``: an unclosed socket) in whichever test runs then."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_event_loop_policy().get_event_loop()
            if not loop.is_running():
                loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def gpx(db_url: str) -> Iterator[Proctor]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        yield px


def make_agent(px: Proctor, shop: Shop, script: Script, **options: Any) -> Agent[None, Any]:
    return Agent(
        FunctionModel(script),
        toolsets=[ProctorToolset(px, shop.toolset, agent="bot", **options)],
        output_type=[str, DeferredToolRequests],
    )


def test_an_allowed_call_runs_once_per_tool_call_id(gpx: Proctor) -> None:
    shop, script = Shop(), Script("tc_ok", "A-1", 20.0)
    agent = make_agent(gpx, shop, script)
    assert agent.run_sync("refund A-1").output == "tool said: refunded 20.00 on A-1"
    # The same tool call again (a replayed run, a retried worker): the recorded result.
    assert agent.run_sync("refund A-1").output == "tool said: refunded 20.00 on A-1"
    assert shop.refunds == [("A-1", 20.0)]
    # The same id with other arguments is not the same call: refused, never run.
    other = make_agent(gpx, shop, Script("tc_ok", "A-1", 30.0))
    with pytest.raises(Conflict):
        other.run_sync("refund A-1")
    assert shop.refunds == [("A-1", 20.0)]


def test_a_denied_call_reaches_the_model_as_a_failure_not_a_retry(gpx: Proctor) -> None:
    shop, script = Shop(), Script("tc_vip", "VIP-9", 20.0)
    result = make_agent(gpx, shop, script).run_sync("refund VIP-9")
    assert shop.refunds == []
    (seen,) = script.seen
    assert seen.outcome == "failed"  # a terminal failure: no retry prompt, no retry budget
    text = seen.model_response_str()
    assert "Refused by policy: VIP orders are refunded by their account manager" in text
    assert "no-vip" in text
    assert "try again" not in text.lower()
    assert result.output.startswith("tool said: ")


def test_a_review_defers_the_call_and_an_approval_from_another_process_runs_it_once(
    sqlite_url: str,
) -> None:
    px = Proctor(sqlite_url)  # the CLI reviewer below works on this SQLite file
    px.policy.apply(POLICY)
    shop, script = Shop(), Script("tc_big", "A-2", 250.0)
    agent = make_agent(px, shop, script)
    first = agent.run_sync("refund A-2")
    requests = first.output
    assert isinstance(requests, DeferredToolRequests)
    assert [c.tool_call_id for c in requests.approvals] == ["tc_big"]
    meta = requests.metadata["tc_big"]["proctor"]
    item_id = meta["item_id"]
    assert meta["rule_ids"] == ["large-refund"]
    assert meta["reason"] == "Refunds over 100 need a billing lead"
    assert px.reviews.get(item_id).status == "pending"
    history = first.all_messages()

    # Nothing decided yet: nothing to resume with, and the app's own approval is not one.
    assert proctor_results(px, requests).approvals == {}
    again = agent.run_sync(
        message_history=history,
        deferred_tool_results=DeferredToolResults(approvals={"tc_big": True}),
    )
    assert isinstance(again.output, DeferredToolRequests)
    assert again.output.metadata["tc_big"]["proctor"]["item_id"] == item_id  # same item
    assert shop.refunds == []

    approved = proctor("queue", "approve", item_id, "--by", "lead", "-d", sqlite_url)
    assert approved.returncode == 0, approved.stderr
    results = proctor_results(px, requests)
    assert results.approvals == {"tc_big": True}
    for _ in range(2):  # resumed twice (a retried worker): the refund happens once
        done = agent.run_sync(message_history=history, deferred_tool_results=results)
        assert done.output == "tool said: refunded 250.00 on A-2"
    assert shop.refunds == [("A-2", 250.0)]
    assert px.reviews.get(item_id).status == "done"
    px.close()


def test_a_reviewers_edit_runs_validated_and_a_rejection_reaches_the_model(
    gpx: Proctor,
) -> None:
    shop = Shop()
    edited = Script("tc_edit", "A-3", 400.0)
    agent = make_agent(gpx, shop, edited)
    first = agent.run_sync("refund A-3")
    assert isinstance(first.output, DeferredToolRequests)
    item_id = first.output.metadata["tc_edit"]["proctor"]["item_id"]
    gpx.reviews.edit(item_id, by="lead", args={"amount": 150}, note="half of it")
    done = agent.run_sync(
        message_history=first.all_messages(),
        deferred_tool_results=proctor_results(gpx, first.output),
    )
    assert done.output == "tool said: refunded 150.00 on A-3"
    assert shop.refunds == [("A-3", 150.0)]  # an int edit, validated back into a float

    rejected = Script("tc_no", "A-4", 900.0)
    agent = make_agent(gpx, shop, rejected)
    first = agent.run_sync("refund A-4")
    assert isinstance(first.output, DeferredToolRequests)
    item_id = first.output.metadata["tc_no"]["proctor"]["item_id"]
    gpx.reviews.reject(item_id, by="lead", reason="the order was never paid")
    results = proctor_results(gpx, first.output)
    denial = results.approvals["tc_no"]
    assert isinstance(denial, ToolDenied)
    done = agent.run_sync(message_history=first.all_messages(), deferred_tool_results=results)
    assert "A reviewer rejected this call: the order was never paid" in done.output
    # An app that approves a rejected call anyway gets the rejection, not a refund.
    forced = agent.run_sync(
        message_history=first.all_messages(),
        deferred_tool_results=DeferredToolResults(approvals={"tc_no": True}),
    )
    assert "A reviewer rejected this call: the order was never paid" in forced.output
    assert shop.refunds == [("A-3", 150.0)]


def test_with_wait_an_approval_during_the_run_runs_it_there(gpx: Proctor) -> None:
    shop, script = Shop(), Script("tc_wait", "A-5", 300.0)
    agent = make_agent(gpx, shop, script, wait=30)

    def approve_when_opened() -> None:
        for _ in range(300):
            pending = gpx.reviews.list()
            if pending:
                gpx.reviews.approve(pending[0].id, by="lead")
                return
            threading.Event().wait(0.05)

    reviewer = threading.Thread(target=approve_when_opened)
    reviewer.start()
    result = agent.run_sync("refund A-5")
    reviewer.join(30)
    assert result.output == "tool said: refunded 300.00 on A-5"
    assert shop.refunds == [("A-5", 300.0)]


def test_results_for_calls_deferred_by_something_else_are_left_alone(gpx: Proctor) -> None:
    requests = DeferredToolRequests(
        approvals=[ToolCallPart("refund", {"order_id": "A-6", "amount": 1.0}, tool_call_id="x")],
        metadata={"x": {"other": {"item_id": "nope"}}},
    )
    assert proctor_results(gpx, requests).approvals == {}


def test_the_example_runs_without_an_api_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(__file__).resolve().parent.parent / "examples" / "pydantic_ai_agent.py"
    spec = importlib.util.spec_from_file_location("pydantic_ai_agent", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # pydantic resolves names there
    spec.loader.exec_module(example)
    lines = example.main(sqlite_url)
    assert lines[0] == "Refund 40 on A-1 -> refunded 40.00 on A-1"
    assert "Refused by policy" in lines[1] and "envelope.tools" in lines[1]
    assert lines[2].startswith("Refund 250 on A-2 -> waits for review item ")
    assert lines[4:] == [
        "resumed -> refunded 250.00 on A-2",
        "resumed -> refunded 250.00 on A-2",
        "refunds made: A-1, A-2",
    ]


def test_an_agent_run_inside_a_px_run_is_decided_with_its_context(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(
            POLICY.replace(
                "rules:\n",
                "rules:\n  - {id: frozen, when: 'context.ticket == \"T-9\"', decide: deny,"
                " reason: ticket T-9 is frozen}\n",
            )
        )
        shop, script = Shop(), Script("tc_ctx", "A-7", 5.0)
        agent = Agent(
            FunctionModel(script), toolsets=[ProctorToolset(px, shop.toolset)], output_type=str
        )
        with px.run(agent="bot", ticket="T-9"):
            agent.run_sync("refund A-7")
        assert "Refused by policy: ticket T-9 is frozen (rules: frozen)." in (
            script.seen[0].model_response_str()
        )
        assert shop.refunds == []


def test_px_resume_refuses_a_pydantic_ai_call_without_spending_its_approval(
    gpx: Proctor,
) -> None:
    shop, script = Shop(), Script("tc_res", "A-8", 500.0)
    agent = make_agent(gpx, shop, script)
    first = agent.run_sync("refund A-8")
    assert isinstance(first.output, DeferredToolRequests)
    item_id = first.output.metadata["tc_res"]["proctor"]["item_id"]
    gpx.reviews.approve(item_id, by="lead")
    with pytest.raises(InvalidRequest, match="not registered"):
        gpx.resume(item_id)  # no run context here: the agent run resumes it
    assert gpx.reviews.get(item_id).status == "approved"
    done = agent.run_sync(
        message_history=first.all_messages(),
        deferred_tool_results=proctor_results(gpx, first.output),
    )
    assert done.output == "tool said: refunded 500.00 on A-8"
    assert shop.refunds == [("A-8", 500.0)]


@pytest.mark.slow
def test_the_bench_prints_the_adapters_overhead() -> None:
    done = proctor("bench", "adapters", "--framework", "pydantic-ai", "-n", "50", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["framework"] == "pydantic-ai" and figures["n"] == 50
    for side in ("framework", "bare", "bare_identity", "adapter"):
        assert figures[f"{side}_p50_us"] > 0
    difference = figures["adapter_p50_us"] - figures["bare_p50_us"]
    assert figures["overhead_us"] == pytest.approx(difference, abs=0.11)  # each rounded
    assert figures["overhead_ratio"] > 0

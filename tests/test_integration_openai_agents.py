"""The OpenAI Agents SDK gated by Proctor: the real SDK, a scripted model, no network.

Each tool call is decided once by its ``call_id``; the model reads refusals in plain words;
a reviewed call is decided in Proctor (another process, a real server's API) and runs
once, however often the saved ``RunState`` is resumed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agents import (
    Agent,
    Model,
    ModelResponse,
    RunConfig,
    RunContextWrapper,
    Runner,
    RunState,
    Usage,
    UserError,
    set_tracing_disabled,
)
from agents.items import TResponseInputItem
from agents.testing import ScriptedModel as SdkScriptedModel
from agents.testing import assistant_message, function_call
from tests.conftest import records
from tests.test_cli import proctor
from tests.test_server_process import Server, approve_in_console, free_port

from proctor import (
    ConfigError,
    Denied,
    Forbidden,
    InDoubt,
    InvalidRequest,
    Proctor,
    Rejected,
    ReviewPending,
    ToolFailed,
)
from proctor.audit.verify import verify
from proctor.integrations.openai_agents import (
    apply_decisions,
    approve,
    gated_tool,
    item_for,
    reject,
    tool_error_message,
)

set_tracing_disabled(True)
ROOT = Path(__file__).resolve().parent.parent
POLICY = """
policy: openai-agents-test
defaults: {decision: deny, queue: billing, review_timeout: 10m}
queues: {billing: {}}
agents: {support-bot: {tools: [issue_refund, lookup_order, broken]}}
rules:
  - {id: routine, when: 'tool in ["issue_refund", "lookup_order", "broken"]', decide: allow}
  - {id: large-refund, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review,
     reason: Refunds over 100 need a billing lead}
  - {id: never-huge, when: 'tool == "issue_refund" && args.amount > 1000.0', decide: deny,
     reason: Refunds over 1000 are never made by an agent}
"""
RUN = RunConfig(tracing_disabled=True)


Planned = tuple[str, dict[str, Any], str]


class ScriptedModel(Model):
    """Asks for the planned tool calls (a list: several in one turn); after the tools'
    outputs, says what it read (so a test sees exactly what the model was told)."""

    def __init__(self, *calls: Planned | list[Planned]) -> None:
        self.calls = list(calls)
        self.read: list[str] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        items = [i if isinstance(i, dict) else i.model_dump() for i in input or []]
        outputs: list[str] = []
        while items and items[-1].get("type") == "function_call_output":
            outputs.insert(0, str(items.pop()["output"]))
        if outputs:
            self.read.extend(outputs)
            output = [assistant_message("read: " + " | ".join(outputs))]
        else:
            planned = self.calls.pop(0)
            turn = planned if isinstance(planned, list) else [planned]
            output = [function_call(name, args, call_id=cid) for name, args, cid in turn]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests run without streaming")


class Desk:
    """A support desk on one database: its tools, and what their bodies did."""

    def __init__(self, px: Proctor) -> None:
        self.px = px
        self.refunds: list[tuple[str, float]] = []

        @px.tool(agent="support-bot")
        def issue_refund(order_id: str, amount: float) -> str:
            """Refund part or all of an order."""
            self.refunds.append((order_id, amount))
            return f"refunded {amount} on {order_id}"

        @px.tool(agent="support-bot")
        async def lookup_order(order_id: str) -> dict[str, Any]:
            """Look an order up."""
            await asyncio.sleep(0)
            return {"order_id": order_id, "status": "delivered"}

        @px.tool(agent="support-bot")
        def broken(order_id: str) -> str:
            """A tool whose system is down."""
            raise RuntimeError("the payments system is down")

        self.tools = [gated_tool(px, t) for t in (issue_refund, lookup_order, broken)]

    def agent(self, *calls: Planned | list[Planned]) -> tuple[Agent[Any], ScriptedModel]:
        model = ScriptedModel(*calls)
        return Agent(name="support-bot", model=model, tools=list(self.tools)), model


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        yield Desk(px)


def run(agent: Agent[Any], start: Any) -> Any:
    return asyncio.run(Runner.run(agent, start, run_config=RUN))


def resume(agent: Agent[Any], saved: dict[str, Any]) -> Any:
    async def go() -> Any:
        state = await RunState.from_json(agent, saved)
        return await Runner.run(agent, state, run_config=RUN)

    return asyncio.run(go())


def state_of(agent: Agent[Any], saved: dict[str, Any]) -> RunState[Any, Any]:
    return asyncio.run(RunState.from_json(agent, saved))


def interrupted(desk: Desk, amount: float, call_id: str) -> tuple[Agent[Any], ScriptedModel, Any]:
    agent, model = desk.agent(("issue_refund", {"order_id": "A-17", "amount": amount}, call_id))
    result = run(agent, "Refund order A-17")
    assert len(result.interruptions) == 1 and desk.refunds == []
    return agent, model, result


# -- allowed and denied --------------------------------------------------------------------


def test_an_allowed_call_runs_once_under_its_decision_without_sdk_approval(desk: Desk) -> None:
    agent, model = desk.agent(
        ("issue_refund", {"order_id": "A-1", "amount": 20.0}, "call_small"),
    )
    result = run(agent, "Refund 20 on A-1")
    assert result.interruptions == []
    assert desk.refunds == [("A-1", 20.0)]
    assert model.read == ["refunded 20.0 on A-1"]
    decisions = records(desk.px, "decision")
    assert len(decisions) == 1 and decisions[0]["call_key"] == "call_small"
    # The SDK calls needs_approval once and the body once: one decision, no repeat.
    assert records(desk.px, "call.repeat") == []
    # An async tool is gated the same way.
    agent, model = desk.agent(("lookup_order", {"order_id": "A-1"}, "call_lookup"))
    run(agent, "Where is A-1?")
    assert json.loads(model.read[0].replace("'", '"'))["status"] == "delivered"
    assert verify(desk.px.store).ok


def test_a_denied_call_reaches_the_model_with_its_reason_and_rules(desk: Desk) -> None:
    agent, model = desk.agent(
        ("issue_refund", {"order_id": "A-2", "amount": 5000.0}, "call_huge"),
    )
    result = run(agent, "Refund 5000 on A-2")
    assert result.interruptions == [] and desk.refunds == []
    (said,) = model.read
    assert "Policy refused the call to issue_refund (rules: never-huge)" in said
    assert "Refunds over 1000 are never made by an agent" in said
    assert "did not run" in said and "try again" not in said.lower()
    assert [d["decision"] for d in records(desk.px, "decision")] == ["deny"]


def test_a_failing_tool_reads_as_the_sdk_says_it_and_is_recorded(desk: Desk) -> None:
    agent, model = desk.agent(("broken", {"order_id": "A-3"}, "call_broken"))
    run(agent, "Try it")
    # The SDK's own words (it keeps the error's text from the model); Proctor has it.
    assert model.read == ["An error occurred while running the tool. Please try again."]
    outcomes = records(desk.px, "outcome")
    assert len(outcomes) == 1 and "payments system is down" in json.dumps(outcomes[0])


def test_bad_input_is_refused_before_anything_runs(desk: Desk) -> None:
    # The model's arguments do not fit the tool: the model is told, nothing is decided.
    agent, model = desk.agent(("issue_refund", {"order_id": "A-4", "amount": "lots"}, "call_bad"))
    result = run(agent, "Refund lots")
    assert result.interruptions == [] and desk.refunds == []
    assert model.read[0].startswith("The call to issue_refund was not run: its arguments")
    assert "amount: Input should be a valid number" in model.read[0]
    assert records(desk.px, "decision") == []
    # Only @px.tool functions can be gated, and they take the model's arguments alone.
    with pytest.raises(InvalidRequest, match=r"@px\.tool"):
        gated_tool(desk.px, lambda order_id: order_id)


def test_a_proctor_failure_stops_the_run_instead_of_asking_the_sdk(db_url: str) -> None:
    # A tool without an agent (no agent=, no px.run) cannot be decided: the run stops with
    # Proctor's error rather than turning into an SDK approval nobody would understand.
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)

        @px.tool
        def issue_refund(order_id: str, amount: float) -> str:
            return "never"

        model = ScriptedModel(("issue_refund", {"order_id": "A", "amount": 1.0}, "c"))
        agent = Agent(name="support-bot", model=model, tools=[gated_tool(px, issue_refund)])
        with pytest.raises(UserError) as info:
            run(agent, "go")
        assert isinstance(info.value.__cause__, ConfigError)
        assert "has no agent" in str(info.value)
        # Inside a run that names the agent it is decided and runs.
        with px.run(agent="support-bot"):
            model = ScriptedModel(("issue_refund", {"order_id": "A", "amount": 1.0}, "c2"))
            agent = Agent(name="support-bot", model=model, tools=[gated_tool(px, issue_refund)])
            run(agent, "go")
        assert model.read == ["never"]


# -- reviewed calls ----------------------------------------------------------------------------


def test_reviewed_call_approved_from_another_process_runs_once_resumed_twice(
    desk: Desk, db_url: str
) -> None:
    agent, _model, result = interrupted(desk, 250.0, "call_review")
    (interruption,) = result.interruptions
    item_id = item_for(desk.px, interruption)
    assert item_id is not None
    item = desk.px.reviews.get(item_id)
    assert item.tool == "issue_refund" and item.args == {"order_id": "A-17", "amount": 250.0}
    assert item.rule_ids == ["large-refund"]
    saved = result.to_state().to_json()

    # Undecided, nothing is applied: the interruption stays.
    state = state_of(agent, saved)
    assert [a.outcome for a in apply_decisions(desk.px, state)] == ["pending"]

    # A reviewer approves from another process, with the CLI on the same database.
    r = proctor("queue", "approve", item_id, "--by", "ana", "-d", db_url)
    assert r.returncode == 0, r.stderr

    state = state_of(agent, saved)
    (applied,) = apply_decisions(desk.px, state)
    assert (applied.outcome, applied.item_id, applied.call_id) == (
        "approved",
        item_id,
        "call_review",
    )
    approved = state.to_json()
    first = resume(agent, approved)
    second = resume(agent, approved)  # the same saved state, resumed again
    assert desk.refunds == [("A-17", 250.0)]
    assert first.final_output == second.final_output == "read: refunded 250.0 on A-17"
    assert first.interruptions == second.interruptions == []
    # One item, one grant used; the second resume got the recorded result.
    assert len(desk.px.reviews.list(status=None)) == 1
    assert desk.px.reviews.get(item_id).status == "done"
    assert len(records(desk.px, "call.repeat")) == 1
    assert verify(desk.px.store).ok

    # A fresh process (a new Proctor, no memory of the call) resuming it runs nothing either.
    with Proctor(db_url) as again:
        other = Desk(again)
        agent2 = Agent(name="support-bot", model=ScriptedModel(), tools=list(other.tools))
        third = resume(agent2, approved)
    assert third.final_output == "read: refunded 250.0 on A-17" and other.refunds == []


@pytest.mark.parametrize("where", ["api", "console"])
def test_reviewed_call_approved_through_a_real_servers_api(db_url: str, where: str) -> None:
    srv = Server(db_url, free_port())
    srv.start()
    try:
        admin = srv.client(srv.admin)
        admin.policy.apply(POLICY)
        admin.close()
        with srv.client(srv.token("agent", "runner", agents="support-bot")) as px:
            desk = Desk(px)
            agent, _, result = interrupted(desk, 300.0, "call_remote")
            item_id = item_for(px, result.interruptions[0])
            assert item_id is not None
            saved = result.to_state().to_json()
            reviewer = srv.token("reviewer", "ana", queues="billing")
            if where == "api":
                response = httpx.post(
                    f"{srv.url}/api/v1/reviews/{item_id}/approve",
                    headers={"Authorization": f"Bearer {reviewer}"},
                    json={"note": "checked the order"},
                )
                assert response.status_code == 200, response.text
            else:  # a reviewer signs in to the console and presses Approve
                assert "issue_refund" in approve_in_console(srv.url, reviewer, item_id)
            state = state_of(agent, saved)
            assert [a.outcome for a in apply_decisions(px, state)] == ["approved"]
            approved = state.to_json()
            outputs = [resume(agent, approved).final_output for _ in range(2)]
            assert outputs == ["read: refunded 300.0 on A-17"] * 2
            assert desk.refunds == [("A-17", 300.0)]
            item = px.reviews.get(item_id)
            assert item.status == "done" and item.decided_by == "ana"
    finally:
        srv.stop()


def test_an_edit_runs_with_the_edited_arguments(desk: Desk) -> None:
    agent, _model, result = interrupted(desk, 250.0, "call_edit")
    item_id = item_for(desk.px, result.interruptions[0])
    assert item_id is not None
    desk.px.reviews.edit(item_id, by="ana", args={"amount": 150.0}, note="partial refund")
    state = result.to_state()
    assert [a.outcome for a in apply_decisions(desk.px, state)] == ["approved"]
    final = asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert desk.refunds == [("A-17", 150.0)]
    assert final.final_output == "read: refunded 150.0 on A-17"


def test_a_call_held_by_a_pending_approval_in_its_run_waits_for_it(desk: Desk) -> None:
    # One turn, two calls in one Proctor run: the refund needs a reviewer, and its pending
    # item holds the run, so the allowed lookup is interrupted too, and runs once it clears.
    agent, model = desk.agent(
        [
            ("issue_refund", {"order_id": "A-17", "amount": 250.0}, "call_big"),
            ("lookup_order", {"order_id": "A-17"}, "call_look"),
        ]
    )
    with desk.px.run(agent="support-bot", ticket="T-1"):
        result = run(agent, "Refund A-17, then check it")
        assert sorted(i.tool_name or "" for i in result.interruptions) == [
            "issue_refund",
            "lookup_order",
        ]
        items = desk.px.reviews.list()
        assert len(items) == 1 and items[0].tool == "issue_refund"
        state = result.to_state()
        held = {a.tool: a.outcome for a in apply_decisions(desk.px, state)}
        assert held == {"issue_refund": "pending", "lookup_order": "pending"}
        desk.px.reviews.approve(items[0].id, by="ana")
        state = result.to_state()
        assert {a.tool: a.outcome for a in apply_decisions(desk.px, state)} == {
            "issue_refund": "approved",
            "lookup_order": "approved",
        }
        asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert desk.refunds == [("A-17", 250.0)]
    assert model.read[0] == "refunded 250.0 on A-17" and "delivered" in model.read[1]


def test_streamed_runs_are_gated_the_same_way(desk: Desk) -> None:
    # The SDK's own scripted model, streaming: a denied call, then a reviewed one.
    model = SdkScriptedModel(
        [
            [function_call("issue_refund", {"order_id": "B-1", "amount": 5000.0}, call_id="s1")],
            [function_call("issue_refund", {"order_id": "B-2", "amount": 250.0}, call_id="s2")],
        ]
    )
    agent = Agent(name="support-bot", model=model, tools=list(desk.tools))

    async def streamed(start: Any) -> Any:
        result = Runner.run_streamed(agent, start, run_config=RUN)
        async for _ in result.stream_events():
            pass
        return result

    first = asyncio.run(streamed("Refund B-1, then B-2"))
    (interruption,) = first.interruptions
    told = [i for i in model.calls[1].input if isinstance(i, dict)]
    assert "Policy refused the call to issue_refund (rules: never-huge)" in str(told[-1])
    item_id = item_for(desk.px, interruption)
    assert item_id is not None
    desk.px.reviews.approve(item_id, by="ana")
    saved = first.to_state().to_json()
    model.extend([[assistant_message("done")]])
    for _ in range(2):
        state = state_of(agent, saved)
        assert [a.outcome for a in apply_decisions(desk.px, state)] == ["approved"]
        final = asyncio.run(streamed(state))
        assert final.final_output == "done"
        model.extend([[assistant_message("done")]])
    assert desk.refunds == [("B-2", 250.0)]
    assert "refunded 250.0 on B-2" in str(model.calls[-1].input[-1])


def test_a_rejection_reaches_the_model_with_the_reviewers_reason(desk: Desk) -> None:
    agent, model, result = interrupted(desk, 250.0, "call_reject")
    item_id = item_for(desk.px, result.interruptions[0])
    assert item_id is not None
    desk.px.reviews.reject(item_id, by="ana", reason="The customer was refunded last week")
    saved = result.to_state().to_json()
    state = state_of(agent, saved)
    (applied,) = apply_decisions(desk.px, state)
    assert applied.outcome == "rejected" and applied.item_id == item_id
    final = asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert desk.refunds == []
    (said,) = model.read
    assert "A human reviewer rejected the call to issue_refund (rules: large-refund)" in said
    assert "The customer was refunded last week" in said and "did not run" in said
    assert final.final_output == f"read: {said}"
    # An approval given in the SDK alone does not get round the rejection either.
    state = state_of(agent, saved)
    state.approve(state.get_interruptions()[0])
    asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert desk.refunds == [] and "The customer was refunded last week" in model.read[-1]


def test_an_approval_in_the_sdk_alone_is_refused_and_opens_no_second_item(desk: Desk) -> None:
    agent, _model, result = interrupted(desk, 250.0, "call_sdk")
    item_id = item_for(desk.px, result.interruptions[0])
    saved = result.to_state().to_json()
    state = state_of(agent, saved)
    state.approve(state.get_interruptions()[0])  # the SDK's own approval
    with pytest.raises(UserError) as info:
        asyncio.run(Runner.run(agent, state, run_config=RUN))
    cause = info.value.__cause__
    assert isinstance(cause, ReviewPending) and cause.item_id == item_id
    assert "approved in the Agents SDK" in str(info.value) and item_id in str(info.value)
    assert desk.refunds == [] and len(desk.px.reviews.list(status=None)) == 1
    # The helper records the approval in Proctor, as the reviewer given, then in the SDK.
    state = state_of(agent, saved)
    applied = approve(desk.px, state, state.get_interruptions()[0], by="ana", note="ok")
    assert applied.outcome == "approved"
    assert desk.px.reviews.get(applied.item_id or "").decided_by == "ana"
    final = asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert final.final_output == "read: refunded 250.0 on A-17"
    assert desk.refunds == [("A-17", 250.0)]
    # Nothing is left to approve, and the agent may not approve its own action.
    with pytest.raises(InvalidRequest, match="approved"):
        approve(desk.px, state_of(agent, saved), state_of(agent, saved).get_interruptions()[0])


def test_reject_helper_and_self_approval(desk: Desk) -> None:
    agent, model, result = interrupted(desk, 400.0, "call_helper")
    state = result.to_state()
    with pytest.raises(Forbidden):
        approve(desk.px, state, state.get_interruptions()[0], by="support-bot")
    applied = reject(desk.px, state, state.get_interruptions()[0], by="ana", reason="Too much")
    assert applied.outcome == "rejected" and "Too much" in (applied.message or "")
    asyncio.run(Runner.run(agent, state, run_config=RUN))
    assert desk.refunds == [] and "Too much" in model.read[0]


def test_tool_error_message_serves_any_sdk_tool() -> None:
    ctx = RunContextWrapper(context=None)
    denied = Denied("No refunds on Sundays", rule_ids=("sunday",))
    assert tool_error_message(ctx, denied).startswith(
        "Policy refused the call to the tool (rules: sunday): No refunds on Sundays."
    )
    assert "reviewer rejected" in tool_error_message(ctx, Rejected("no"))
    assert "An error occurred" in tool_error_message(ctx, ValueError("x"))
    doubt = tool_error_message(ctx, InDoubt("lease lapsed", item_id="it-1"))
    assert "may or may not have happened" in doubt and "it-1" in doubt
    failed = ToolFailed("secret stack detail", error_type="RuntimeError", item_id="it-2")
    said = tool_error_message(ctx, failed)
    assert "RuntimeError" in said and "secret" not in said


# -- the example -------------------------------------------------------------------------------


def test_the_example_runs_without_an_api_key(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "openai_agents_agent.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PROCTOR_DATABASE_URL": f"sqlite:///{tmp_path}/ex.db"},
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "refunded 20.0 on A-1" in out
    assert "Policy refused the call to delete_account (rules: envelope.tools)" in out
    assert "waits for review item" in out and "refunded 150.0 on A-17" in out
    assert "ran once" in out


def test_bench_reports_the_adapters_overhead() -> None:
    r = proctor("bench", "adapters", "--framework", "openai-agents", "-n", "50", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["framework"] == "openai-agents" and data["n"] == 50
    for side in ("bare", "bare_call_id", "adapter", "sdk_plain", "sdk_gated"):
        assert data[f"{side}_p50_us"] > 0
    assert abs(data["overhead_us"] - (data["adapter_p50_us"] - data["bare_p50_us"])) < 0.2
    assert data["overhead_ratio"] > 0

"""The LangGraph integration with the real libraries, a scripted chat model and real
checkpointers, on both databases: allowed, denied and reviewed tool calls, reviews decided
through ``Command(resume=...)``, from another process and from a server, run exactly once
however often the node re-executes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, InjectedToolCallId, tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from langgraph.types import Command
from tests.test_server_process import Server, approve_in_console, free_port

from proctor import InvalidRequest, Proctor
from proctor.integrations.langgraph import ProctorMiddleware, ProctorToolNode

POLICY = """
policy: langgraph-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund, lookup, close_account]}}
rules:
  - {id: routine, when: 'tool in ["refund", "lookup"]', decide: allow}
  - id: big-refund
    when: 'tool == "refund" && args.amount > 100.0'
    decide: review
    reason: Refunds over 100 need a billing lead
  - id: no-closing
    when: 'tool == "close_account"'
    decide: deny
    reason: Accounts are closed by people, never by the agent
"""

Calls = Sequence[tuple[str, dict[str, Any], str | None]]


class Scripted(BaseChatModel):
    """A chat model reading from a script: turn ``n`` (the ``n``-th AI message of the
    thread) asks for ``turns[n]``'s tool calls; past the script it answers in words."""

    turns: list[list[tuple[str, dict[str, Any], str | None]]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Scripted:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        turn = sum(isinstance(m, AIMessage) for m in messages)
        if turn < len(self.turns):
            calls = [{"name": n, "args": a, "id": i} for n, a, i in self.turns[turn]]
            message = AIMessage(content="", tool_calls=calls)
        else:
            message = AIMessage(content="done")
        return ChatResult(generations=[ChatGeneration(message=message)])


class Effects:
    """The tools, counting every run of their bodies."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, Any]] = []

        @tool
        def refund(order_id: str, amount: float) -> str:
            """Refund part or all of an order."""
            self.ran.append(("refund", (order_id, amount)))
            return f"refunded {amount} on {order_id}"

        @tool
        def lookup(order_id: str) -> str:
            """Look an order up."""
            self.ran.append(("lookup", order_id))
            return f"order {order_id}: shipped"

        @tool
        def close_account(customer: str) -> str:
            """Close a customer's account."""
            self.ran.append(("close_account", customer))
            return "closed"

        self.tools: list[BaseTool] = [refund, lookup, close_account]


def build(
    px: Proctor,
    effects: Effects,
    turns: list[Calls],
    saver: BaseCheckpointSaver[Any],
    how: str = "middleware",
    wait: float = 10.0,
    **node: Any,
) -> Any:
    """A compiled graph: ``create_agent`` with the middleware, or a hand-made graph with
    ``ProctorToolNode``."""
    model = Scripted(turns=[list(t) for t in turns])
    if how == "middleware":
        return create_agent(
            model,
            effects.tools,
            middleware=[ProctorMiddleware(px, agent="bot", wait=wait)],
            checkpointer=saver,
        )

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def acall_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model, afunc=acall_model)  # type: ignore[call-overload]
    graph.add_node("tools", ProctorToolNode(effects.tools, px, agent="bot", wait=wait, **node))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=saver)


def config(thread: str = "t1") -> Any:
    return {"configurable": {"thread_id": thread}}


def tool_messages(out: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


def ask(text: str = "help the customer") -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}


@pytest.fixture
def lpx(db_url: str) -> Iterator[Proctor]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        yield px


CLI = [sys.executable, "-c", "from proctor.cli import main; main()"]
BIG = [[("refund", {"order_id": "A-1", "amount": 250.0}, "call_big")]]


# -- allowed and denied ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["middleware", "toolnode"])
def test_an_allowed_call_runs_once_and_the_model_reads_its_result(lpx: Proctor, how: str) -> None:
    effects = Effects()
    graph = build(lpx, effects, [[("lookup", {"order_id": "A-1"}, "call_1")]], InMemorySaver(), how)
    out = graph.invoke(ask(), config())
    (message,) = tool_messages(out)
    assert message.content == "order A-1: shipped" and message.status == "success"
    assert effects.ran == [("lookup", "A-1")]
    assert out["messages"][-1].content == "done"
    # the call was decided under its tool_call_id: a graph replaying it gets the record
    again = build(lpx, effects, [[("lookup", {"order_id": "A-1"}, "call_1")]], InMemorySaver(), how)
    (repeat,) = tool_messages(again.invoke(ask(), config("t2")))
    assert repeat.content == "order A-1: shipped" and effects.ran == [("lookup", "A-1")]


@pytest.mark.parametrize("how", ["middleware", "toolnode"])
def test_a_denied_call_reaches_the_model_with_its_reason_and_rules(lpx: Proctor, how: str) -> None:
    effects = Effects()
    turns: list[Calls] = [[("close_account", {"customer": "c-9"}, "call_close")]]
    out = build(lpx, effects, turns, InMemorySaver(), how).invoke(ask(), config())
    (message,) = tool_messages(out)
    assert message.status == "error" and message.tool_call_id == "call_close"
    assert "Accounts are closed by people, never by the agent" in message.content
    assert "no-closing" in message.content
    assert effects.ran == [] and lpx.reviews.list(status=None) == []


# -- reviews through interrupt() --------------------------------------------------------


@pytest.mark.parametrize("how", ["middleware", "toolnode"])
def test_a_review_interrupts_with_the_item_and_accept_runs_it_exactly_once(
    lpx: Proctor, how: str
) -> None:
    effects = Effects()
    saver = InMemorySaver()
    graph = build(lpx, effects, BIG, saver, how)
    out = graph.invoke(ask(), config())
    (pause,) = out["__interrupt__"]
    (request,) = pause.value
    (item,) = lpx.reviews.list()
    assert request["action_request"] == {
        "action": "refund",
        "args": {"order_id": "A-1", "amount": 250.0},
    }
    assert request["config"] == {
        "allow_accept": True,
        "allow_edit": True,
        "allow_respond": True,
        "allow_ignore": True,
    }
    assert "Refunds over 100 need a billing lead" in request["description"]
    assert "big-refund" in request["description"] and item.id in request["description"]
    assert request["proctor"]["item_id"] == item.id
    assert effects.ran == []

    # a plain resume while nobody decided: the graph pauses again on the same item
    again = graph.invoke(Command(resume="decided in Proctor"), config())
    assert again["__interrupt__"][0].value[0]["proctor"]["item_id"] == item.id
    assert len(lpx.reviews.list()) == 1 and effects.ran == []
    out = graph.invoke(Command(resume=[{"type": "accept", "args": None}]), config())
    (message,) = tool_messages(out)
    assert message.content == "refunded 250.0 on A-1" and message.status == "success"
    assert effects.ran == [("refund", ("A-1", 250.0))]
    (done,) = lpx.reviews.list(status=None)
    assert done.id == item.id and done.status == "done" and done.decided_by == "agent-inbox"

    # resuming again, and replaying the node from the checkpoint where it paused, never runs
    # it again nor opens another item
    graph.invoke(Command(resume=[{"type": "accept", "args": None}]), config())
    paused = next(
        s for s in graph.get_state_history(config()) if s.next == ("tools",) and s.interrupts
    )
    replay = graph.invoke(Command(resume=[{"type": "accept", "args": None}]), paused.config)
    assert tool_messages(replay)[-1].content == "refunded 250.0 on A-1"
    assert effects.ran == [("refund", ("A-1", 250.0))]
    assert [i.id for i in lpx.reviews.list(status=None)] == [item.id]


def test_an_edit_runs_with_the_edited_arguments_and_a_misspelled_one_asks_again(
    lpx: Proctor,
) -> None:
    effects = Effects()
    graph = build(lpx, effects, BIG, InMemorySaver())
    graph.invoke(ask(), config())
    (item,) = lpx.reviews.list()
    misspelled = {"type": "edit", "args": {"action": "refund", "args": {"amout": 150.0}}}
    out = graph.invoke(Command(resume=[misspelled]), config())
    (pause,) = out["__interrupt__"]
    assert "not recorded" in pause.value[0]["description"]
    assert "amout" in pause.value[0]["description"]
    assert lpx.reviews.get(item.id).status == "pending" and effects.ran == []

    edit = {
        "type": "edit",
        "args": {"action": "refund", "args": {"order_id": "A-1", "amount": 90.0}},
    }
    out = graph.invoke(Command(resume=[edit]), config())
    assert tool_messages(out)[-1].content == "refunded 90.0 on A-1"
    assert effects.ran == [("refund", ("A-1", 90.0))]
    assert lpx.reviews.get(item.id).edited_args == {"amount": 90.0}


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"type": "response", "args": "Refund 50 at most"}, "Refund 50 at most"),
        ({"type": "ignore", "args": None}, "ignore"),
    ],
)
def test_a_rejection_reaches_the_model_in_plain_words(
    lpx: Proctor, response: dict[str, Any], reason: str
) -> None:
    effects = Effects()
    graph = build(lpx, effects, BIG, InMemorySaver())
    graph.invoke(ask(), config())
    out = graph.invoke(Command(resume=[response]), config())
    (message,) = tool_messages(out)
    assert message.status == "error" and reason in message.content
    assert "rejected" in message.content and "big-refund" in message.content
    assert effects.ran == [] and lpx.reviews.list(status="rejected")[0].note == (
        response["args"] or "the reviewer chose to ignore this call"
    )


# -- a decision made elsewhere, picked up by a plain resume -----------------------------


def _approve_in_child(db: str, item_id: str) -> None:
    subprocess.run(
        [*CLI, "queue", "approve", item_id, "--by", "ana", "-d", db],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_approved_from_another_process_a_fresh_worker_runs_it_once(
    lpx: Proctor, db_url: str, tmp_path: Path
) -> None:
    effects = Effects()
    path = tmp_path / "checkpoints.db"
    with sqlite3.connect(path, check_same_thread=False) as conn:
        graph = build(lpx, effects, BIG, SqliteSaver(conn))
        graph.invoke(ask(), config())
    (item,) = lpx.reviews.list()

    _approve_in_child(db_url, item.id)
    assert lpx.reviews.get(item.id).status == "approved"

    # another worker, another graph object, the same checkpoints: a plain resume
    with Proctor(db_url) as worker, sqlite3.connect(path, check_same_thread=False) as conn:
        graph = build(worker, effects, BIG, SqliteSaver(conn))
        out = graph.invoke(Command(resume="checked in the console"), config())
        assert tool_messages(out)[-1].content == "refunded 250.0 on A-1"
        graph.invoke(Command(resume="again"), config())
        paused = next(
            s for s in graph.get_state_history(config()) if s.next == ("tools",) and s.interrupts
        )
        graph.invoke(Command(resume="replayed"), paused.config)
    assert effects.ran == [("refund", ("A-1", 250.0))]
    assert lpx.reviews.get(item.id).decided_by == "ana"
    assert len(lpx.reviews.list(status=None)) == 1


def test_approved_through_a_server_api_and_console_the_remote_agent_runs_once(
    db_url: str,
) -> None:
    server = Server(db_url, free_port())
    server.start()
    try:
        with server.client(server.admin) as admin:
            admin.policy.apply(POLICY)
        agent = server.client(server.token("agent", "runner", agents="bot"))
        ana = server.token("reviewer", "ana", queues="billing")
        effects = Effects()
        by_api = build(agent, effects, BIG, InMemorySaver())
        second = [[("refund", {"order_id": "A-2", "amount": 300.0}, "call_console")]]
        in_console = build(agent, effects, second, InMemorySaver(), "toolnode")
        api_item = by_api.invoke(ask(), config())["__interrupt__"][0].value[0]["proctor"]
        console_item = in_console.invoke(ask(), config())["__interrupt__"][0].value[0]["proctor"]

        response = httpx.post(
            f"{server.url}/api/v1/reviews/{api_item['item_id']}/approve",
            headers={"Authorization": f"Bearer {ana}"},
            json={"note": "looks right"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        page = approve_in_console(server.url, ana, console_item["item_id"])
        assert "Refunds over 100 need a billing lead" in page

        for graph, text in (
            (by_api, "refunded 250.0 on A-1"),
            (in_console, "refunded 300.0 on A-2"),
        ):
            for _ in range(2):  # resumed twice: the node re-executes, the body runs once
                out = graph.invoke(Command(resume="decided in Proctor"), config())
                assert tool_messages(out)[-1].content == text
        assert sorted(effects.ran) == [("refund", ("A-1", 250.0)), ("refund", ("A-2", 300.0))]
        for found in (api_item, console_item):
            item = agent.reviews.get(found["item_id"])
            assert item.status == "done" and item.decided_by == "ana"
        assert len(agent.reviews.list(status=None)) == 2
        agent.close()
    finally:
        server.stop()


# -- runs: one item per tool call, no orphan holding the run ----------------------------


def test_the_resumed_node_leaves_no_orphan_holding_the_run(lpx: Proctor) -> None:
    effects = Effects()
    turns: list[Calls] = [*BIG, [("lookup", {"order_id": "A-1"}, "call_after")]]
    # wait=0: a call held by a pending item would be refused at once, and the test would see it
    graph = build(lpx, effects, turns, InMemorySaver(), wait=0)
    with lpx.run(agent="bot") as run:
        graph.invoke(ask(), config())
        for _ in range(2):  # the node re-executes on each resume
            out = graph.invoke(Command(resume=[{"type": "accept", "args": None}]), config())
    assert [m.status for m in tool_messages(out)] == ["success", "success"]
    assert effects.ran == [("refund", ("A-1", 250.0)), ("lookup", "A-1")]
    items = lpx.reviews.list(status=None)
    assert len(items) == 1 and items[0].run_id == run.id
    assert lpx.reviews.list(status="pending") == []


# -- async graphs -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["middleware", "toolnode"])
def test_async_graphs_interrupt_resume_and_run_once(lpx: Proctor, how: str) -> None:
    effects = Effects()
    turns: list[Calls] = [
        [("lookup", {"order_id": "A-1"}, "call_look"), *BIG[0]],
    ]

    async def scenario() -> dict[str, Any]:
        graph = build(lpx, effects, turns, InMemorySaver(), how)
        paused = [
            chunk
            async for chunk in graph.astream(ask(), config(), stream_mode="updates")
            if "__interrupt__" in chunk
        ]
        assert len(paused) == 1 and lpx.reviews.list()[0].tool == "refund"
        await graph.ainvoke(Command(resume=[{"type": "accept", "args": None}]), config())
        return dict(
            await graph.ainvoke(Command(resume=[{"type": "accept", "args": None}]), config())
        )

    out = asyncio.run(scenario())
    contents = sorted(str(m.content) for m in tool_messages(out))
    assert contents == ["order A-1: shipped", "refunded 250.0 on A-1"]
    assert sorted(effects.ran) == [("lookup", "A-1"), ("refund", ("A-1", 250.0))]
    assert len(lpx.reviews.list(status=None)) == 1


# -- what the gate sees and records ------------------------------------------------------


def test_injected_arguments_stay_out_of_the_decision_and_edits_are_checked_without_them(
    lpx: Proctor,
) -> None:
    seen: list[str] = []

    @tool
    def refund(
        order_id: str, amount: float, tool_call_id: Annotated[str, InjectedToolCallId]
    ) -> str:
        """Refund part or all of an order."""
        seen.append(tool_call_id)
        return f"refunded {amount} on {order_id}"

    effects = Effects()
    effects.tools[0] = refund
    graph = build(lpx, effects, BIG, InMemorySaver(), "toolnode")
    graph.invoke(ask(), config())
    (item,) = lpx.reviews.list()
    assert item.args == {"order_id": "A-1", "amount": 250.0}
    injected = {"type": "edit", "args": {"action": "refund", "args": {"tool_call_id": "x"}}}
    out = graph.invoke(Command(resume=[injected]), config())
    assert "tool_call_id" in out["__interrupt__"][0].value[0]["description"]
    graph.invoke(Command(resume=[{"type": "accept", "args": None}]), config())
    assert seen == ["call_big"]


def test_a_tool_error_is_recorded_as_a_failure_and_the_call_may_run_again(lpx: Proctor) -> None:
    attempts: list[str] = []

    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        attempts.append(order_id)
        raise ConnectionRefusedError("orders service down")

    effects = Effects()
    effects.tools[1] = lookup
    turns: list[Calls] = [[("lookup", {"order_id": "A-1"}, "call_fail")]]
    with pytest.raises(ConnectionRefusedError):
        build(lpx, effects, turns, InMemorySaver()).invoke(ask(), config())
    graph = build(lpx, effects, turns, InMemorySaver(), "toolnode", handle_tool_errors=True)
    (message,) = tool_messages(graph.invoke(ask(), config()))
    assert message.status == "error" and "orders service down" in message.content
    # neither failure was recorded as done: the same call was decided and ran again
    assert attempts == ["A-1", "A-1"]


def test_a_tool_call_without_an_id_is_refused_before_anything_runs(lpx: Proctor) -> None:
    effects = Effects()
    turns: list[Calls] = [[("lookup", {"order_id": "A-1"}, None)]]
    with pytest.raises(InvalidRequest, match="tool_call_id"):
        build(lpx, effects, turns, InMemorySaver(), "toolnode").invoke(ask(), config())
    assert effects.ran == [] and lpx.reviews.list(status=None) == []


# -- the example ------------------------------------------------------------------------


def test_the_example_runs_without_an_api_key(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "langgraph_agent.py"
    done = subprocess.run(
        [sys.executable, str(example), "--database", f"sqlite:///{tmp_path}/example.db"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "refunded 80.0 on A-17" in done.stdout
    assert "Refunds over 100 need a billing lead" in done.stdout
    assert "ran once" in done.stdout


def test_bench_adapters_prints_the_overhead_over_a_bare_tool_call() -> None:
    done = subprocess.run(
        [*CLI, "bench", "adapters", "--framework", "langgraph", "-n", "60", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["framework"] == "langgraph" and figures["n"] == 60
    assert figures["adapter_p50_us"] > 0 and figures["bare_p50_us"] > 0
    assert figures["ratio_p50"] == round(figures["adapter_p50_us"] / figures["bare_p50_us"], 2)

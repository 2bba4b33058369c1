"""The human review loop on both databases: every kind, every reviewer decision, quorum,
expiry, escalation, edits re-evaluated by the policy, and approvals that run exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from proctor import (
    Conflict,
    Denied,
    Forbidden,
    InvalidRequest,
    NotFound,
    Option,
    Proctor,
    Rejected,
    ReviewItem,
    ReviewPending,
)

POLICY = """
policy: review-test
defaults: {decision: deny, review_timeout: 30s, queue: billing}
queues:
  billing: {roles: [billing_lead], sla: 30m, escalate_to: finance}
  finance: {roles: [finance_director], quorum: 2}
  fast: {review_timeout: 0.4s, on_timeout: escalate, escalate_to: billing}
  slowdeny: {review_timeout: 0.4s, on_timeout: deny}
  qa: {roles: [support_lead]}
agents:
  bot:
    tools: [refund, lookup, reply, flaky, transfer, credit, wire, ship, notify]
rules:
  - {id: routine, when: 'tool in ["lookup", "refund", "credit", "wire", "ship", "notify"]',
     decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, queue: billing,
     reason: Refunds over 100 need a billing lead}
  - {id: huge, when: 'tool == "refund" && args.amount > 5000.0', decide: deny,
     reason: Never above 5000}
  - {id: transfer, when: 'tool == "transfer"', decide: review, queue: finance}
  - {id: fast, when: 'tool == "credit" && args.amount > 10.0', decide: review, queue: fast}
  - {id: slow, when: 'tool == "wire"', decide: review, queue: slowdeny}
  - {id: replies, when: 'tool == "reply"', decide: allow, sample: 1.0, queue: qa}
  - {id: flaky, when: 'tool == "flaky"', decide: allow, on_error: review, queue: billing}
  - {id: parallel, when: 'tool == "ship" && args.express', decide: review, queue: billing,
     hold_run: false}
"""


class Effects:
    """Counts tool-body executions: the observable side effects."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, name: str, value: Any) -> None:
        with self.lock:
            self.calls.append((name, value))


@pytest.fixture
def rpx(px: Proctor) -> Proctor:
    px.policy.apply(POLICY)
    return px


def tools(
    px: Proctor, effects: Effects, wait: float | None = None
) -> dict[str, Callable[..., Any]]:
    @px.tool(agent="bot", wait=wait)
    def refund(order_id: str, amount: float, note: str | None = None) -> str:
        effects.add("refund", (order_id, amount))
        return f"refunded {amount:.2f} on {order_id}"

    @px.tool(agent="bot", wait=wait)
    def transfer(to: str, amount: float) -> str:
        effects.add("transfer", (to, amount))
        return f"sent {amount} to {to}"

    @px.tool(agent="bot", wait=wait)
    def credit(account: str, amount: float) -> str:
        effects.add("credit", amount)
        return f"credited {amount}"

    @px.tool(agent="bot", wait=wait)
    def wire(account: str) -> str:
        effects.add("wire", account)
        return "wired"

    @px.tool(agent="bot")
    def flaky(n: int) -> int:
        effects.add("flaky", n)
        if len([c for c in effects.calls if c[0] == "flaky"]) == 1:
            raise ConnectionError("upstream reset")
        return n * 2

    @px.tool(agent="bot")
    def reply(text: str) -> str:
        return "sent"

    @px.tool(agent="bot", wait=0)
    def lookup(order_id: str) -> str:
        effects.add("lookup", order_id)
        return order_id

    @px.tool(agent="bot", wait=0)
    def ship(order_id: str, express: bool = False) -> str:
        effects.add("ship", order_id)
        return "shipped"

    return {f.__name__: f for f in (refund, transfer, credit, wire, flaky, reply, lookup, ship)}


def first_pending(px: Proctor, queue: str | None = None, timeout: float = 10.0) -> ReviewItem:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = px.reviews.list(queue=queue)
        if items:
            return items[0]
        time.sleep(0.01)
    raise AssertionError(f"no pending item in {queue or 'any queue'}")


def in_thread(fn: Callable[[], Any]) -> Future[Any]:
    return ThreadPoolExecutor(max_workers=1).submit(fn)


# -- approval ------------------------------------------------------------------------------


def test_blocked_call_returns_the_result_once_approved(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    call = in_thread(lambda: t["refund"]("A-1", 250.0))
    item = first_pending(rpx, "billing")
    assert (item.kind, item.tool, item.args) == (
        "approval",
        "refund",
        {"order_id": "A-1", "amount": 250.0, "note": None},
    )
    assert effects.calls == []
    rpx.reviews.approve(item.id, by="ana", note="customer is VIP")
    assert call.result(timeout=10) == "refunded 250.00 on A-1"
    assert effects.calls == [("refund", ("A-1", 250.0))]
    done = rpx.reviews.get(item.id)
    assert (done.status, done.decided_by, done.result) == ("done", "ana", "refunded 250.00 on A-1")
    assert rpx.resume(item.id) == "refunded 250.00 on A-1"  # the recorded result, no re-run
    assert len(effects.calls) == 1


def test_async_tool_waits_for_approval_and_edits(rpx: Proctor) -> None:
    import asyncio

    effects = Effects()

    @rpx.tool(agent="bot")
    async def refund(order_id: str, amount: float) -> str:
        await asyncio.sleep(0)
        effects.add("refund", (order_id, amount))
        return f"async refunded {amount}"

    call = in_thread(lambda: asyncio.run(refund("A-11", 500.0)))
    item = first_pending(rpx)
    rpx.reviews.edit(item.id, by="ana", args={"amount": 120.0})
    assert call.result(timeout=10) == "async refunded 120.0"
    assert effects.calls == [("refund", ("A-11", 120.0))]
    assert rpx.resume(item.id) == "async refunded 120.0"


def test_reject_reaches_the_agent_with_the_reason(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    call = in_thread(lambda: t["refund"]("A-2", 300.0))
    item = first_pending(rpx, "billing")
    with pytest.raises(InvalidRequest, match="reason"):
        rpx.reviews.reject(item.id, by="ana", reason="  ")
    rpx.reviews.reject(item.id, by="ana", reason="duplicate of A-1")
    with pytest.raises(Rejected) as info:
        call.result(timeout=10)
    assert info.value.reason == "duplicate of A-1"
    assert info.value.rule_ids == ("big",)
    assert effects.calls == []


def test_edit_runs_the_edited_arguments_and_records_the_diff(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    call = in_thread(lambda: t["refund"]("A-3", 400.0))
    item = first_pending(rpx)
    with pytest.raises(InvalidRequest, match="'amount' must be float"):
        rpx.reviews.edit(item.id, by="ana", args={"amount": "lots"})
    with pytest.raises(InvalidRequest, match="no parameter 'amont'"):
        rpx.reviews.edit(item.id, by="ana", args={"amont": 1.0})
    with pytest.raises(Forbidden, match="Never above 5000"):
        rpx.reviews.edit(item.id, by="ana", args={"amount": 6000.0})
    assert rpx.reviews.get(item.id).status == "pending"  # refused edits change nothing
    edited = rpx.reviews.edit(item.id, by="ana", args={"amount": 150.0}, note="partial")
    assert edited.diff() == {"amount": [400.0, 150.0]}
    assert call.result(timeout=10) == "refunded 150.00 on A-3"
    assert effects.calls == [("refund", ("A-3", 150.0))]


def test_wait_zero_then_resume_runs_once_and_returns_the_same_result(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(ReviewPending) as info:
        t["refund"]("A-4", 120.0)
    item_id = info.value.item_id
    with pytest.raises(ReviewPending):
        rpx.resume(item_id)
    rpx.reviews.approve(item_id, by="ana")
    first = rpx.resume(item_id)
    assert first == rpx.resume(item_id) == "refunded 120.00 on A-4"
    assert effects.calls == [("refund", ("A-4", 120.0))]


def test_quorum_needs_distinct_reviewers(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(ReviewPending) as info:
        t["transfer"]("ACME", 10_000.0)
    item_id = info.value.item_id
    assert rpx.reviews.approve(item_id, by="fd1").status == "pending"
    with pytest.raises(Conflict, match="counts once"):
        rpx.reviews.approve(item_id, by="fd1")
    with pytest.raises(ReviewPending):
        rpx.resume(item_id)
    assert rpx.reviews.approve(item_id, by="fd2").status == "approved"
    assert rpx.resume(item_id) == "sent 10000.0 to ACME"


def test_escalation_chain_and_bad_targets(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(ReviewPending) as info:
        t["refund"]("A-5", 900.0)
    item_id = info.value.item_id
    with pytest.raises(InvalidRequest, match="unknown queue 'nowhere'"):
        rpx.reviews.escalate(item_id, by="ana", to="nowhere")
    with pytest.raises(InvalidRequest, match="already in queue"):
        rpx.reviews.escalate(item_id, by="ana", to="billing")
    moved = rpx.reviews.escalate(item_id, by="ana", to="finance", note="over my limit")
    assert (moved.queue, moved.escalated_from, moved.note, moved.quorum) == (
        "finance",
        "billing",
        "over my limit",
        2,
    )
    assert [i.id for i in rpx.reviews.list(queue="finance")] == [item_id]
    assert rpx.reviews.list(queue="billing") == []


def test_timeout_with_escalate_moves_the_item_and_the_agent_keeps_waiting(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    call = in_thread(lambda: t["credit"]("C-1", 20.0))
    item = first_pending(rpx, "fast")
    deadline = time.monotonic() + 10
    while rpx.reviews.get(item.id).queue != "billing" and time.monotonic() < deadline:
        time.sleep(0.05)
    moved = rpx.reviews.get(item.id)
    assert (moved.queue, moved.escalated_from, moved.status) == ("billing", "fast", "pending")
    rpx.reviews.approve(item.id, by="ana")
    assert call.result(timeout=10) == "credited 20.0"


def test_timeout_with_deny_expires_the_item(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    with pytest.raises(Denied, match="on_timeout is deny"):
        t["wire"]("W-1")
    (item,) = rpx.reviews.list(status="expired")
    assert item.tool == "wire" and item.decided_by == "proctor"
    with pytest.raises(Conflict, match="already expired"):
        rpx.reviews.approve(item.id, by="ana")
    assert effects.calls == []


def test_sweep_expires_items_nobody_waits_for(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(ReviewPending):
        t["wire"]("W-2")
    time.sleep(0.5)
    assert len(rpx.reviews.sweep()) == 1
    assert rpx.reviews.list(status="expired")[0].tool == "wire"


# -- exception, sample and choice items ----------------------------------------------------


def test_exception_item_approved_reruns_the_call_once(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    with pytest.raises(ConnectionError):
        t["flaky"](21)
    (item,) = rpx.reviews.list()
    assert (item.kind, item.detail) == ("exception", "upstream reset")
    assert item.next_actions() == ["approve", "reject", "edit", "escalate"]
    rpx.reviews.approve(item.id, by="ops")
    assert rpx.resume(item.id) == 42
    assert rpx.resume(item.id) == 42
    assert [c for c in effects.calls if c[0] == "flaky"] == [("flaky", 21), ("flaky", 21)]


def test_sample_items_are_qa_only(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)
    t["reply"]("hello")
    (item,) = rpx.reviews.list(queue="qa")
    assert item.kind == "sample" and item.next_actions() == ["approve", "reject"]
    with pytest.raises(InvalidRequest, match="no arguments to edit"):
        rpx.reviews.edit(item.id, by="lead", args={"text": "hi"})
    assert rpx.reviews.reject(item.id, by="lead", reason="tone too curt").status == "rejected"


def test_choice_offers_options_and_runs_the_one_picked(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects)

    def agent() -> Any:
        with rpx.run(agent="bot", ticket="T-9", sources=["kb/refunds.md"]):
            return rpx.choose(
                [
                    Option(t["refund"], {"order_id": "A-9", "amount": 80.0}, 0.7, ["goodwill"]),
                    Option(t["credit"], {"account": "C-9", "amount": 5.0}, 0.9, []),
                    Option(t["refund"], {"order_id": "A-9", "amount": 9000.0}, 0.99, ["loss"]),
                ],
                reason="Which remedy for a late delivery?",
            )

    call = in_thread(agent)
    item = first_pending(rpx)
    assert item.kind == "choice"
    assert [(o["tool"], o["probability"]) for o in item.options or []] == [
        ("refund", 0.7),
        ("credit", 0.9),
    ]  # the option the policy denies is never offered
    assert item.context["sources"] == ["kb/refunds.md"]
    with pytest.raises(InvalidRequest, match="from 0 to 1"):
        rpx.reviews.choose(item.id, by="ana", option=5)
    with pytest.raises(InvalidRequest, match="choosing"):
        rpx.reviews.approve(item.id, by="ana")
    rpx.reviews.choose(item.id, by="ana", option=1)
    assert call.result(timeout=10) == "credited 5.0"
    assert effects.calls == [("credit", 5.0)]


# -- what the reviewer sees, and holding the run -------------------------------------------


def test_item_carries_the_context_a_reviewer_needs(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with rpx.run(agent="bot", confidence=0.82, sources=["crm/customer/77", "orders/A-7"]):
        t["lookup"]("A-7")
        with pytest.raises(ReviewPending) as info:
            t["refund"]("A-7", 640.0)
    item = rpx.reviews.get(info.value.item_id)
    assert item.context == {"confidence": 0.82, "sources": ["crm/customer/77", "orders/A-7"]}
    assert [(h["tool"], h["what"]) for h in item.history] == [("lookup", "allow"), ("lookup", "ok")]
    assert item.rule_ids == ["big"] and item.reason == "Refunds over 100 need a billing lead"
    assert item.policy_version == rpx.policy.active().version  # type: ignore[union-attr]
    assert item.params is not None and item.params["params"]["amount"]["type"] == "float"
    assert item.next_actions() == ["approve", "reject", "edit", "escalate"]
    assert item.sla_due is not None and item.sla_due > item.created_at


def test_pending_approval_holds_the_run_unless_the_rule_allows_parallel(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with rpx.run(agent="bot"):
        with pytest.raises(ReviewPending):
            t["ship"]("S-1", express=True)  # hold_run: false
        assert t["lookup"]("A-8") == "A-8"
        with pytest.raises(ReviewPending) as info:
            t["refund"]("A-8", 700.0)
        with pytest.raises(Denied, match="is held") as held:
            t["lookup"]("A-8")
        assert held.value.rule_ids == ("run-held",)
        rpx.reviews.approve(info.value.item_id, by="ana")
        assert t["lookup"]("A-8") == "A-8"  # released once a human decided


def test_severity_orders_the_queue(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    for n, impact in enumerate([0.1, 0.9, 0.5]):
        with rpx.run(agent="bot", impact=impact), pytest.raises(ReviewPending):
            t["refund"](f"A-{n}", 200.0)
    items = rpx.reviews.list(queue="billing")
    assert [i.impact for i in items] == [0.9, 0.5, 0.1]
    assert items[0].severity() > items[1].severity() > items[2].severity()


# -- bad input -----------------------------------------------------------------------------


def test_bad_reviewer_input(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(NotFound):
        rpx.reviews.approve("no-such-item", by="ana")
    with pytest.raises(NotFound):
        rpx.resume("no-such-item")
    with pytest.raises(ReviewPending) as info:
        t["refund"]("A-6", 200.0)
    item_id = info.value.item_id
    with pytest.raises(Forbidden, match="its own action"):
        rpx.reviews.approve(item_id, by="bot")
    with pytest.raises(InvalidRequest, match="reviewer's name"):
        rpx.reviews.approve(item_id, by="")
    with pytest.raises(InvalidRequest, match="non-empty mapping"):
        rpx.reviews.edit(item_id, by="ana", args={})
    with pytest.raises(InvalidRequest, match="not a choice item"):
        rpx.reviews.choose(item_id, by="ana", option=0)
    rpx.reviews.approve(item_id, by="ana")
    with pytest.raises(Conflict, match="already approved"):
        rpx.reviews.reject(item_id, by="bob", reason="late")
    with pytest.raises(InvalidRequest):
        rpx.reviews.list(status="bogus")


def test_twenty_reviewers_in_threads_one_winner(rpx: Proctor) -> None:
    effects = Effects()
    t = tools(rpx, effects, wait=0)
    with pytest.raises(ReviewPending) as info:
        t["refund"]("A-20", 500.0)
    item_id = info.value.item_id
    barrier = threading.Barrier(20)

    def decide(n: int) -> str:
        barrier.wait()
        try:
            if n % 2:
                rpx.reviews.approve(item_id, by=f"r{n}")
            else:
                rpx.reviews.reject(item_id, by=f"r{n}", reason="no")
        except Conflict:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(decide, range(20)))
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 19
    item = rpx.reviews.get(item_id)
    assert item.status in ("approved", "rejected") and item.decided_by is not None

"""Prioritised problems on a crafted workload: what is found, how it is ranked, where."""

from __future__ import annotations

import contextlib
import time

import pytest
from tests.asgi_client import AppClient

from proctor import Denied, Proctor, ReviewPending
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.telemetry.alerts import AlertMonitor
from proctor.telemetry.problems import rank

POLICY = """
policy: problems
defaults: {decision: deny, queue: payments}
queues: {payments: {sla: 1s}}
agents: {bot: {tools: [lookup, pay, charge, refund]}}
rules:
  - {id: ok, when: 'tool in ["lookup", "pay", "charge", "refund"]', decide: allow}
  - {id: big, when: 'tool == "refund"', decide: review, hold_run: false}
alerts:
  - {id: denials, metric: deny_rate, above: 0.1, window: 1h, severity: warning}
"""


def workload(px: Proctor) -> float:
    """Before the cut: calm. After it: denials, spending and a failing tool."""

    @px.tool(agent="bot")
    def lookup(order: str) -> str:
        return order

    @px.tool(agent="bot")
    def pay(fail: bool) -> None:
        if fail:
            raise ConnectionError("gateway down")

    @px.tool(agent="bot")
    def charge(fail: bool) -> None:
        if fail:
            raise ValueError("card declined")

    @px.tool(agent="bot")
    def wipe() -> None:
        raise AssertionError("never runs")

    @px.tool(agent="bot", wait=0)
    def refund(order: str) -> None:
        raise AssertionError("waits for review")

    with px.run(agent="bot", cost=1.0):
        for i in range(10):
            lookup(f"A-{i}")
        with pytest.raises(Denied):
            wipe()
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    with px.run(agent="bot", cost=10.0):
        for _ in range(6):
            with pytest.raises(Denied):
                wipe()
        for i in range(4):
            lookup(f"B-{i}")
    with px.run(agent="bot"):
        for fail in (True, True, True, False):
            with pytest.raises(ConnectionError) if fail else contextlib.nullcontext():
                pay(fail)
        for i in range(10):
            with (
                pytest.raises(ValueError, match="declined") if i == 0 else contextlib.nullcontext()
            ):
                charge(i == 0)
        with pytest.raises(ReviewPending):
            refund("C-1")
    return cut


def test_problems_are_found_and_ranked_by_severity_frequency_and_recency(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        cut = workload(px)
        AlertMonitor(px.store).check()
        now = time.time() + 2  # the refund's review is 1 s past its SLA by then
        found = rank(px.store, now=now, window=7200, recent=now - cut)

    by_kind = {(p["kind"], p["subject"].get("tool")): p for p in found}
    assert [(p["kind"], p["severity"]) for p in found[:3]] == [
        ("cost_spike", "critical"),  # 100 spent after the cut against ~5.5 an hour before
        ("failing_tool", "critical"),  # pay: 3 of 4 failed
        ("deny_spike", "warning"),  # 6 of 25 denied after the cut, 1 of 11 before
    ]
    assert {(p["kind"], p["severity"]) for p in found[3:]} == {
        ("failing_tool", "warning"),  # charge: 1 of 10
        ("breaching_queue", "warning"),
        ("alert", "warning"),  # deny_rate over the hour: 7 of 36 > 0.1
    }
    cost = by_kind[("cost_spike", None)]
    assert cost["detail"].startswith("cost 100 in the last hour, 18.")  # 100 vs 11 in ~2 h
    deny = by_kind[("deny_spike", None)]
    assert deny["frequency"] == 6
    assert deny["detail"] == "6 of 25 actions denied in the last hour (24%), against 9% before"
    pay = by_kind[("failing_tool", "pay")]
    assert pay["frequency"] == 3
    assert pay["detail"] == "3 of 4 calls failed (75%); most often ConnectionError"
    assert pay["link"] == "/audit?agent=bot&tool=pay&kind=outcome"
    charge = by_kind[("failing_tool", "charge")]
    assert charge["detail"] == "1 of 10 calls failed (10%); most often ValueError"
    queue = by_kind[("breaching_queue", None)]
    assert queue["subject"] == {"queue": "payments"} and queue["frequency"] == 1
    scores = [p["score"] for p in found]
    assert scores == sorted(scores, reverse=True)


def test_a_calm_system_has_no_problems(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.split("alerts:")[0])

        @px.tool(agent="bot")
        def lookup(order: str) -> str:
            return order

        for i in range(20):
            lookup(f"A-{i}")
        assert rank(px.store) == []


def test_problems_over_the_api(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(POLICY)
        workload(px)
        _, viewer = create_token(px.store, role="viewer", name="vic")
        _, agent = create_token(px.store, role="agent", name="bot", agents=["bot"])
        client = AppClient(create_app(px, sweep=False))
        seen = client.get("/api/v1/problems", headers={"Authorization": f"Bearer {viewer}"})
        assert seen.status_code == 200
        assert {p["kind"] for p in seen.json()} >= {"deny_spike", "failing_tool"}
        refused = client.get("/api/v1/problems", headers={"Authorization": f"Bearer {agent}"})
        assert refused.status_code == 403
        bad = client.get(
            "/api/v1/problems?window=-1", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert bad.status_code == 422 and bad.json()["field"] == "query.window"

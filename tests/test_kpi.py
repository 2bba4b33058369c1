"""Every KPI checked against a hand-computed expectation on a crafted workload."""

from __future__ import annotations

import time

import pytest
from tests.test_cli import proctor

from proctor import Proctor, ReviewPending
from proctor.telemetry.kpi import compute

POLICY = """
policy: kpi
defaults: {decision: deny, queue: ops}
queues: {ops: {sla: 1s}}
agents: {bot: {tools: [lookup, refund, flaky]}, other: {tools: [lookup]}}
rules:
  - {id: ok, when: 'tool in ["lookup", "refund", "flaky"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, hold_run: false}
"""


def test_every_kpi_matches_a_hand_count(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        fail_next = {"on": True}

        @px.tool(agent="bot")
        def lookup(order: str) -> str:
            return order

        @px.tool(agent="bot", wait=0)
        def refund(order: str, amount: float) -> str:
            return "ok"

        @px.tool(agent="bot")
        def flaky() -> str:
            if fail_next["on"]:
                fail_next["on"] = False
                raise TimeoutError("slow")
            return "fine"

        # run 1: completes; a retry of the same lookup; cost 2 + 3; an approval approved
        with px.run(agent="bot", task_type="refunds", cost=2.0) as run1:
            lookup("A-1")
            lookup("A-1")  # retry: same tool, same arguments, same run
            run1.update(cost=3.0)
            with pytest.raises(ReviewPending) as first:
                refund("A-1", 500.0)
        # run 2: a failure, recovered, completes; cost 1
        with px.run(agent="bot", task_type="support", cost=1.0):
            with pytest.raises(TimeoutError):
                flaky()
            flaky()

        # run 3: fails (an exception escapes the run)
        def crashing_run() -> None:
            with px.run(agent="bot", task_type="support"):
                lookup("A-3")
                raise RuntimeError("agent crashed")

        with pytest.raises(RuntimeError):
            crashing_run()
        # an approval still pending past its 1 s SLA, and one rejected
        with pytest.raises(ReviewPending) as second:
            refund("A-4", 700.0)
        with pytest.raises(ReviewPending) as third:
            refund("A-5", 900.0)
        px.reviews.approve(first.value.item_id, by="ana")  # approved, never run: silent
        px.reviews.reject(third.value.item_id, by="ana", reason="no")
        time.sleep(1.1)
        k = compute(px.store, agent="bot")
    assert second.value.item_id
    assert k["runs"] == 3 and k["calls"] == 8
    assert k["run_completion_rate"] == round(2 / 3, 4)
    assert k["retry_frequency"] == round(2 / 8, 4)  # the repeated lookup and flaky's retry
    assert k["top_failure_types"] == [("TimeoutError", 1)]
    assert k["tool_success_rate"] == {"flaky": 0.5, "lookup": 1.0}
    # refunds task: 2 lookups allowed + 1 refund review; support: 2 flaky + 1 lookup;
    # no task type: the two refunds outside runs, both reviews
    assert k["escalation_rate_by_task"] == {
        "refund": 1.0,
        "refunds": round(1 / 3, 4),
        "support": 0.0,
    }
    # the failed flaky call did not recover (nothing healed it); its run still completed
    assert k["failure_recovery_rate"] == 0.0 and k["failure_recovery"]["failed"] == 1
    assert k["run_recovery_rate"] == 1.0
    assert k["approve_reject_by_rule"] == {"big": {"approved": 1, "rejected": 1}}
    assert k["cost_per_completed_run"] == round((2.0 + 2.0 + 3.0 + 1.0 + 1.0) / 2, 4)
    assert k["silent_failures"] == 1
    assert k["items_past_sla"] == 1
    assert k["latency_ms"]["p50"] is not None and k["time_to_resolution_s"]["p50"] >= 0


def test_kpi_command(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(POLICY)
    r = proctor("kpi", "--json", "--agent", "bot", "-d", sqlite_url)
    assert r.returncode == 0 and '"runs": 0' in r.stdout
    r = proctor("kpi", "--since", "2h", "-d", sqlite_url)
    assert r.returncode == 0 and "run completion rate" in r.stdout
    assert proctor("kpi", "--since", "soonish", "-d", sqlite_url).returncode == 2

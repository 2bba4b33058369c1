"""Drift monitors over a real store, on both databases: detections that alert and lower a
stage every process follows, restores only a person may make, version change points, and
state that survives a restart."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from tests.asgi_client import AppClient

from proctor import Forbidden, PolicyError, Proctor, controls
from proctor.audit.verify import verify
from proctor.drift.monitor import DriftMonitor
from proctor.drift.views import history, points, status
from proctor.policy import Action, compile_policy
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.store.tables import audit_log

POLICY = """
policy: drift-test
defaults: {decision: deny, queue: ops}
queues: {ops: {roles: [lead]}}
notify: {oncall: "json://127.0.0.1:9/hook"}
agents:
  bot: {autonomy: 3, tools: [refund, lookup]}
rules:
  - {id: ok, when: 'tool in ["refund", "lookup"]', decide: allow}
  - {id: unsure, when: 'has(context.flag) && context.flag < SHARE', decide: review}
monitors:
  - id: refund-amount
    agent: bot
    tool: refund
    signal: args.amount
    test: ks
    window: 100
    reference: {events: 300}
    false_alarm_rate: 0.002
    on_drift: {autonomy: -1, notify: [oncall], severity: critical}
  - id: escalations
    agent: bot
    tool: lookup
    signal: decision.review
    change_point: policy
    window: 300
"""


def policy(share: float = 0.1, note: str = "") -> str:
    text = POLICY.replace("SHARE", repr(share))
    return text + (f"description: {note}\n" if note else "")


def refunds(px: Proctor, n: int, mean: float, seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(n):
        amount = max(1.0, rnd.gauss(mean, 10.0))
        px.gate.decide(Action("bot", "refund", {"amount": amount}), None)


def lookups(px: Proctor, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(n):
        px.gate.decide(Action("bot", "lookup", {}, {"flag": rnd.random()}), None)


def kinds(px: Proctor, kind: str) -> list[dict[str, Any]]:
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == kind).order_by(audit_log.c.seq)
        ).all()
    return [json.loads(r) for (r,) in rows]


DECIDE_IN_CHILD = """
import sys
from proctor import Proctor
from proctor.policy import Action
with Proctor(sys.argv[1]) as px:
    for tool, args in (("refund", {"amount": 50.0}), ("lookup", {})):
        d = px.gate.decide(Action("bot", tool, args), None).decision
        print(tool, d.decision, d.rule_ids[-1])
"""


def test_a_detection_alerts_lowers_the_tool_stage_everywhere_and_only_a_person_restores(
    px: Proctor,
) -> None:
    px.policy.apply(policy())
    refunds(px, 300, 50.0, seed=1)  # the reference
    refunds(px, 200, 50.0, seed=2)  # as before
    watcher = DriftMonitor(px.store)
    assert watcher.check() == []
    refunds(px, 100, 80.0, seed=3)  # refunds grow
    [found] = watcher.check()
    assert found.monitor == "refund-amount" and found.statistic > found.threshold
    assert found.response["autonomy"] == {"scope": "bot/refund", "from": 3, "to": 2}

    [record] = kinds(px, "drift.detected")
    assert record["test"] == "ks" and record["threshold"] == found.threshold
    assert record["reference"]["n"] == 300 and record["current"]["n"] == 100
    assert record["current"]["from_seq"] > record["reference"]["to_seq"]
    [stage] = kinds(px, "control.stage")
    assert stage["tool"] == "refund" and stage["by"] == "drift:refund-amount"
    assert stage["evidence"]["seq"] == record["seq"]
    [firing] = kinds(px, "alert.firing")
    assert firing["alert"] == "drift:refund-amount" and firing["severity"] == "critical"
    with px.store.read() as conn:
        outbox = conn.exec_driver_sql("SELECT target, title FROM proctor_notifications").all()
    assert [t for t, _ in outbox] == ["oncall"] and "refund-amount" in outbox[0][1]

    # the next decision in another process follows the lowered stage, for that tool only
    child = subprocess.run(
        [sys.executable, "-c", DECIDE_IN_CHILD, px.database],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=True,
    )
    assert child.stdout.split("\n")[:2] == [
        "refund review autonomy.stage2",
        "lookup allow ok",
    ]

    # still drifting: no second detection, no second step down
    refunds(px, 200, 80.0, seed=4)
    assert watcher.check() == []
    assert len(kinds(px, "control.stage")) == 1

    # the detector may not restore; a person (an admin over the API) may
    with pytest.raises(Forbidden):
        controls.set_stage(
            px.store, "bot", 3, "looks fine", by="drift:refund-amount", tool="refund"
        )
    admin = create_token(px.store, role="admin", name="root")[1]
    reviewer = create_token(px.store, role="reviewer", name="ana", queues=["ops"])[1]
    client = AppClient(create_app(px, sweep=False))
    try:
        body = {"stage": 3, "reason": "refund sizes checked with finance", "tool": "refund"}
        url = "/api/v1/agents/bot/stage"
        denied = client.post(url, json=body, headers={"authorization": f"Bearer {reviewer}"})
        assert denied.status_code == 403
        ok = client.post(url, json=body, headers={"authorization": f"Bearer {admin}"})
        assert ok.status_code == 200, ok.text
        seen = client.get("/api/v1/drift", headers={"authorization": f"Bearer {reviewer}"})
        assert seen.status_code == 200
        [row] = [m for m in seen.json()["monitors"] if m["id"] == "refund-amount"]
        assert row["status"] == "drift"
        one = client.get(
            "/api/v1/drift/refund-amount", headers={"authorization": f"Bearer {reviewer}"}
        ).json()
        assert one["points"] and one["detections"][0]["kind"] == "drift.detected"
        assert len(one["distributions"]["reference"]) == 300
    finally:
        client.close()
    d = px.gate.decide(Action("bot", "refund", {"amount": 50.0}), None).decision
    assert d.decision == "allow"
    assert verify(px.store).ok


def test_a_policy_version_that_doubles_escalations_is_detected_one_that_does_not_is_not(
    px: Proctor,
) -> None:
    px.policy.apply(policy(0.1))
    lookups(px, 400, seed=1)
    px.policy.apply(policy(0.2))  # escalates twice as often
    lookups(px, 300, seed=2)
    watcher = DriftMonitor(px.store)
    [found] = watcher.check()
    assert found.monitor == "escalations"
    [record] = kinds(px, "drift.detected")
    assert record["test"] == "proportion"
    assert record["before"]["rate"] < 0.15 < record["after"]["rate"]
    assert record["change_point"]["to"] == px.policy.active().version  # type: ignore[union-attr]

    px.policy.apply(policy(0.2, note="same rules, new words"))  # changes nothing
    lookups(px, 300, seed=3)
    assert watcher.check() == []
    compared = points(px.store, "escalations")
    assert [p["detected"] for p in compared] == [True, False]
    assert len(kinds(px, "drift.detected")) == 1


def test_monitor_state_survives_a_restart(px: Proctor) -> None:
    px.policy.apply(policy())
    refunds(px, 300, 50.0, seed=1)
    refunds(px, 150, 50.0, seed=2)  # one window and a half
    assert DriftMonitor(px.store).check() == []
    assert len(points(px.store, "refund-amount")) == 1
    with Proctor(px.database) as again:  # a restarted server: new process state
        refunds(again, 50, 50.0, seed=3)  # completes the half window
        assert DriftMonitor(again.store).check() == []
        assert len(points(again.store, "refund-amount")) == 2  # no window lost
        refunds(again, 100, 90.0, seed=4)
        assert len(DriftMonitor(again.store).check()) == 1
    with Proctor(px.database) as third:
        assert DriftMonitor(third.store).check() == []  # old data is not alerted again
        [row] = [
            r
            for r in status(third.store, DriftMonitor(third.store).monitors())
            if r["id"] == "refund-amount"
        ]
        assert row["status"] == "drift"
        DriftMonitor(third.store).reset("refund-amount", "ops-lead", "new refund policy")
        assert [h["kind"] for h in history(third.store, "refund-amount")] == [
            "drift.reset",
            "drift.detected",
        ]
        assert kinds(third, "alert.resolved")[-1]["alert"] == "drift:refund-amount"


def test_a_changed_monitor_starts_afresh(px: Proctor) -> None:
    px.policy.apply(policy())
    refunds(px, 500, 50.0, seed=1)
    assert DriftMonitor(px.store).check() == []
    assert len(points(px.store, "refund-amount")) == 2
    px.policy.apply(
        policy().replace("window: 100", "window: 50").replace("events: 300", "events: 400")
    )
    assert DriftMonitor(px.store).check() == []
    assert len(points(px.store, "refund-amount")) == 2  # windows of 50 after 400 events


def test_two_checkers_on_one_database_apply_a_round_once(px: Proctor) -> None:
    px.policy.apply(policy())
    refunds(px, 300, 50.0, seed=1)
    refunds(px, 100, 90.0, seed=2)
    first, second = DriftMonitor(px.store), DriftMonitor(px.store)
    found = first.check() + second.check()
    assert len(found) == 1 and len(kinds(px, "drift.detected")) == 1
    # a monitor that leaves the policy leaves no alert firing
    px.policy.apply(policy().split("monitors:")[0])
    assert first.check() == []
    [resolved] = kinds(px, "alert.resolved")
    assert resolved["alert"] == "drift:refund-amount"
    assert resolved["reason"] == "the monitor left the policy"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("signal: args.amount", "signal: amount"),
        ("agent: bot\n    tool: refund", "agent: nobody\n    tool: refund"),
        ("reference: {events: 300}", "reference: {events: 100}"),
        ("test: ks", "test: js"),
        ("notify: [oncall]", "notify: [pager]"),
    ],
)
def test_bad_monitors_are_policy_errors_with_a_place(change: str, message: str) -> None:
    text = policy().replace(change, message)
    with pytest.raises(PolicyError) as info:
        compile_policy(text)
    assert info.value.line is not None and info.value.line > 10


def test_the_example_policy_keeps_loading_without_monitors() -> None:
    assert compile_policy(policy()).document.monitors[0].kind_ == "numeric"

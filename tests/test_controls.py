"""Runtime controls on both databases: the kill switch, autonomy stages, limits, and
version switches seen consistently by several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from proctor import Denied, InvalidRequest, PolicyError, Proctor, ReviewPending, controls
from proctor.policy import Action, compile_policy
from proctor.policy import lifecycle as lc
from proctor.store.tables import audit_log

CHILD = str(Path(__file__).with_name("controls_child.py"))
POLICY = """
policy: controls-test
defaults: {decision: deny, queue: ops}
queues: {ops: {}}
agents:
  bot:
    tools: [pay, lookup]
    limits: {pay: {per_hour: 25}}
rules:
  - {id: ok, when: 'tool in ["pay", "lookup"]', decide: allow}
  - {id: big, when: 'tool == "pay" && args.amount > 100.0', decide: review}
  - {id: careful, when: 'agent.autonomy < 3 && tool == "lookup"', decide: review}
"""
UNLIMITED = POLICY.replace("    limits: {pay: {per_hour: 25}}\n", "")


def spawn(mode: str, db: str, out: Path, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, mode, db, str(out), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_kill_denies_everywhere_and_freezes_grants(px: Proctor) -> None:
    px.policy.apply(UNLIMITED)

    @px.tool(agent="bot", wait=0)
    def pay(amount: float) -> str:
        return f"paid {amount}"

    with pytest.raises(ReviewPending) as info:
        pay(500.0)
    px.reviews.approve(info.value.item_id, by="ana")
    controls.kill(px.store, "bot", "incident 42", by="ops")
    with pytest.raises(Denied, match="incident 42") as denied:
        pay(5.0)
    assert denied.value.rule_ids == ("kill-switch",)
    with pytest.raises(Denied, match="frozen"):
        px.resume(info.value.item_id)
    assert px.reviews.get(info.value.item_id).status == "approved"  # frozen, not lost
    controls.revive(px.store, "bot", by="ops")
    assert pay(5.0) == "paid 5.0"
    assert px.resume(info.value.item_id) == "paid 500.0"
    controls.kill(px.store, None, "maintenance")
    with pytest.raises(Denied, match="maintenance"):
        pay(1.0)
    with pytest.raises(InvalidRequest):
        controls.revive(px.store, "bot")  # bot itself is not stopped; everyone is
    controls.revive(px.store, None)
    with px.store.read() as conn:
        kinds = (
            conn.execute(sa.select(audit_log.c.kind).where(audit_log.c.kind.like("control.%")))
            .scalars()
            .all()
        )
    assert kinds == ["control.kill", "control.revive", "control.kill", "control.revive"]


def test_no_tool_body_starts_after_a_kill_is_acknowledged(
    px: Proctor, db_url: str, tmp_path: Path
) -> None:
    px.policy.apply(UNLIMITED)
    bodies = tmp_path / "bodies"
    workers = [spawn("work", db_url, bodies, 100_000) for _ in range(3)]
    deadline = time.monotonic() + 30
    while (not bodies.exists() or len(bodies.read_text().splitlines()) < 30) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    controls.kill(px.store, "bot", "stop now")
    acknowledged = time.time()
    time.sleep(1.0)
    for w in workers:
        w.kill()
        w.communicate(timeout=10)
    starts = [float(x) for x in bodies.read_text().splitlines()]
    assert len(starts) >= 30
    # A call decided before the kill committed may be microseconds into starting its body;
    # none starts later than that.
    late = [s for s in starts if s > acknowledged + 0.05]
    assert late == []


def test_stages_apply_without_rules_and_overrides_reach_other_processes(px: Proctor) -> None:
    px.policy.apply(UNLIMITED)
    gate = px.gate
    act = Action("bot", "pay", {"amount": 5.0})
    assert gate.decide(act, None).decision.decision == "allow"
    with pytest.raises(InvalidRequest):
        controls.set_stage(px.store, "bot", 5, "nope")
    with pytest.raises(InvalidRequest):
        controls.set_stage(px.store, "bot", 2, "")
    controls.set_stage(px.store, "bot", 1, "new in production")
    with Proctor(px.database) as other:  # another instance: its own caches
        d = other.gate.decide(act, None).decision
        assert (d.decision, d.rule_ids[-1]) == ("review", "autonomy.stage1")
        # rules that read agent.autonomy see the override too
        looked = other.gate.decide(Action("bot", "lookup", {}), None).decision
        assert "careful" in looked.rule_ids
    controls.set_stage(px.store, "bot", 4, "trusted")
    d4 = gate.decide(act, None).decision
    assert d4.decision == "allow" and d4.on_error and d4.queue == "ops"
    with px.store.read() as conn:
        record = conn.execute(
            sa.select(audit_log.c.record)
            .where(audit_log.c.kind == "decision")
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        ).scalar()
    assert '"autonomy":4' in record


def test_limits_hold_exactly_under_concurrent_processes(
    px: Proctor, db_url: str, tmp_path: Path
) -> None:
    px.policy.apply(POLICY)
    procs = [spawn("limited", db_url, tmp_path / f"b{n}", 12) for n in range(4)]
    lines = [line for p in procs for line in p.communicate(timeout=120)[0].splitlines()]
    allowed = [x for x in lines if x == "allowed"]
    denied = [x for x in lines if x.startswith("denied")]
    assert len(allowed) == 25 and len(denied) == 48 - 25
    assert all("limit.pay.per_hour" in d for d in denied)


def test_decisions_name_one_version_while_versions_switch(
    px: Proctor, db_url: str, tmp_path: Path
) -> None:
    a = UNLIMITED
    b = UNLIMITED.replace("args.amount > 100.0", "args.amount > 50.0")
    px.policy.apply(a)
    procs = [spawn("decide", db_url, tmp_path / "x", 300) for _ in range(3)]
    switches = 0
    while any(p.poll() is None for p in procs):  # keep switching while they decide
        px.policy.apply(b if switches % 2 == 0 else a, message=f"switch {switches}")
        switches += 1
        time.sleep(0.01)
    assert switches >= 4
    seqs = [int(s) for p in procs for s in p.communicate(timeout=120)[0].split()]
    assert len(seqs) == 900
    versions = set()
    for seq in seqs:
        result = lc.replay_one(px.store, seq)
        assert result.same, result.message
    with px.store.read() as conn:
        for (record,) in conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == "decision")
        ):
            versions.add(record.split('"policy_version":"')[1][:64])
    assert len(versions) == 2  # both versions made decisions, each decision names one


def test_limit_of_the_wrong_type_is_a_policy_error() -> None:
    bad = POLICY.replace("per_hour: 25", "per_hour: lots")
    with pytest.raises(PolicyError) as info:
        compile_policy(bad, "p.yaml")
    assert info.value.line == 8 and "per_hour" in info.value.message
    negative = POLICY.replace("per_hour: 25", "per_hour: -1")
    with pytest.raises(PolicyError, match="greater than or equal to 0"):
        compile_policy(negative, "p.yaml")

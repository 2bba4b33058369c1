"""Versions, shadow mode and replay on both databases."""

from __future__ import annotations

import contextlib
import random

import pytest
import sqlalchemy as sa
from tests.test_cli import proctor

from proctor import NotFound, Proctor, ReviewPending
from proctor.policy import Action, compile_policy
from proctor.policy import lifecycle as lc
from proctor.store.tables import policies

BASE = """
policy: lifecycle
defaults: {decision: deny, queue: ops}
queues: {ops: {}, qa: {}}
agents:
  bot: {tools: [refund, reply, lookup], data: [orders]}
  helper: {tools: [lookup], autonomy: 2}
risk: "has(args.amount) ? args.amount / 1000.0 : 0.0"
rules:
  - {id: routine, when: 'tool in ["refund", "reply", "lookup"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, queue: ops}
  - {id: risky, when: 'risk > 0.8', decide: deny}
  - {id: unsure, when: 'has(context.confidence) && context.confidence < 0.5', decide: review}
  - {id: replies, when: 'tool == "reply"', decide: allow, sample: 0.2, queue: qa}
"""
STRICTER = BASE.replace("args.amount > 100.0", "args.amount > 50.0")


def workload(n: int, seed: int = 3) -> list[Action]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        agent = rng.choice(["bot", "bot", "bot", "helper"])
        tool = rng.choice(["refund", "reply", "lookup", "delete"])
        args: dict[str, object] = {"order": f"A-{rng.randint(1, 999)}"}
        if tool == "refund":
            args["amount"] = round(rng.uniform(1, 1200), 2)
        context = {"confidence": round(rng.random(), 2)} if rng.random() < 0.6 else {}
        out.append(
            Action(
                agent,
                tool,
                args,
                context,
                rng.random() < 0.9,
                ("orders",) if rng.random() < 0.5 else (),
            )
        )
    return out


def test_replay_is_deterministic_over_thousands_of_decisions(px: Proctor) -> None:
    px.policy.apply(BASE)
    gate = px.gate
    for action in workload(3000):
        gate.decide(action, None)
    active = px.policy.active()
    assert active is not None
    report = lc.replay(px.store, active)
    assert report.replayed == 3000 and report.changed == 0
    assert sum(report.transitions.values()) == 3000
    with px.store.read() as conn:
        from proctor.store.tables import audit_log

        seqs = (
            conn.execute(sa.select(audit_log.c.seq).where(audit_log.c.kind == "decision"))
            .scalars()
            .all()
        )
    assert all(lc.replay_one(px.store, s).same for s in seqs[::37])


def test_replay_reports_how_a_candidate_changes_decisions(px: Proctor) -> None:
    px.policy.apply(BASE)
    actions = workload(1500, seed=9)
    for action in actions:
        px.gate.decide(action, None)
    report = lc.replay(px.store, compile_policy(STRICTER))
    expected = sum(
        1
        for a in actions
        if a.agent == "bot"
        and a.tool == "refund"
        and 50.0 < float(a.args["amount"]) <= 100.0  # type: ignore[arg-type]
        and not (a.context.get("confidence", 1.0) < 0.5)
    )
    assert report.changed == expected > 0
    assert set(report.transitions) >= {("allow", "review")}
    assert report.by_rule["big"] == expected


def test_shadow_disagreements_are_counted_exactly(px: Proctor) -> None:
    px.policy.apply(BASE, message="v1")
    shadow = compile_policy(STRICTER)
    lc.apply_shadow(px.store, shadow, STRICTER, "pat", "try 50")

    @px.tool(agent="bot", wait=0)
    def refund(order: str, amount: float) -> str:
        return "ok"

    amounts = [10.0, 60.0, 75.0, 99.0, 100.0, 101.0, 150.0, 49.0, 51.0, 30.0]
    for amount in amounts:
        with contextlib.suppress(ReviewPending):
            refund("A-1", amount)
    report = lc.shadow_report(px.store)
    disagree = [a for a in amounts if 50.0 < a <= 100.0]
    assert report.decisions == len(amounts)
    assert report.disagreements == len(disagree) == 5
    assert report.transitions == {("allow", "review"): 5}
    assert report.by_rule == {"big": 5}
    # not enforced: the active policy still decided
    assert px.policy.active().version != shadow.version  # type: ignore[union-attr]
    lc.activate(px.store, shadow.version, kind="policy.promote", author="pat", message="go")
    assert px.policy.active().version == shadow.version  # type: ignore[union-attr]
    assert lc.shadow_report(px.store).version is None


def test_history_diff_and_rollback(px: Proctor) -> None:
    v1 = px.policy.apply(BASE, author="pat", message="v1")
    v2 = px.policy.apply(STRICTER.replace("qa: {}", "qa: {sla: 1h}"), author="pat", message="v2")
    lines = lc.diff(lc.load_version(px.store, v1).document, lc.load_version(px.store, v2).document)
    assert any(line.startswith("~ rule big:") and "50.0" in line for line in lines)
    assert any(line.startswith("~ queue qa:") and "sla" in line for line in lines)
    assert lc.previous_version(px.store) == v1
    lc.activate(px.store, v1, kind="policy.apply", author="ops", message="back", rollback=True)
    assert px.policy.active().version == v1  # type: ignore[union-attr]
    history = lc.history(px.store)
    assert [h["rollback"] for h in history[:3]] == [True, False, False]
    assert lc.resolve(px.store, v2[:8]) == v2
    with pytest.raises(NotFound):
        lc.resolve(px.store, "ffffffffff")


def test_replaying_a_decision_whose_version_is_gone_says_so(px: Proctor) -> None:
    px.policy.apply(BASE)
    v = px.gate.decide(Action("bot", "lookup", {"order": "A-1"}), None)
    with px.store.engine.begin() as conn:  # an operator deleted the stored version
        conn.execute(sa.delete(policies))
    result = lc.replay_one(px.store, v.seq or 0)
    assert not result.same and "is not stored" in result.message


def test_cli_bad_input_changes_nothing(db_url: str, tmp_path: object) -> None:
    assert proctor("policy", "apply", "-", "-d", db_url).returncode == 2
    path = __import__("pathlib").Path(str(tmp_path)) / "p.yaml"
    path.write_text(BASE)
    assert proctor("policy", "apply", str(path), "-d", db_url).returncode == 0
    before = proctor("policy", "history", "-d", db_url).stdout
    for args in (
        ["policy", "diff", "abcdef123", "abcdef456"],
        ["policy", "rollback", "abcdef99"],
        ["policy", "rollback"],
        ["agent", "set-stage", "bot", "9", "--reason", "x"],
        ["agent", "set-stage", "nobody", "2", "--reason", "x"],
        ["revive", "bot"],
        ["kill", "--reason", "x"],
        ["audit", "replay", "999999"],
        ["policy", "promote"],
    ):
        r = proctor(*args, "-d", db_url)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert proctor("policy", "history", "-d", db_url).stdout == before
    r = proctor("policy", "init", "--oversight", "moderate")
    assert r.returncode == 0 and compile_policy(r.stdout).agents

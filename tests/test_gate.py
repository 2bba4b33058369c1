"""The gate through the SDK, on both databases: every decision path, and failing closed."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa

from proctor import ConfigError, Denied, Proctor, ReviewPending
from proctor.store.tables import audit_log, review_items

POLICY = """
policy: gate-test
defaults: {decision: deny, review_timeout: 0.3s}
queues: {billing: {roles: [billing_lead]}, qa: {roles: [lead]}, ops: {}}
agents:
  bot:
    tools: [lookup, refund, reply, flaky, export]
    data: [orders]
sensitive: [args.card, context.customer.ssn]
rules:
  - {id: routine, when: 'tool in ["lookup", "refund"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, queue: billing,
     reason: Refunds over 100 need a billing lead}
  - {id: unsure, when: 'has(context.confidence) && context.confidence < 0.7', decide: review,
     queue: billing, hold_run: false}
  - {id: replies, when: 'tool == "reply"', decide: allow, sample: 1.0, queue: qa}
  - {id: flaky, when: 'tool == "flaky"', decide: allow, on_error: review, queue: ops}
  - {id: by-amount, when: 'tool == "export" && args.rows > 10', decide: allow}
"""


def records(px: Proctor, kind: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    q = sa.select(audit_log.c.record).order_by(audit_log.c.seq)
    if kind:
        q = q.where(audit_log.c.kind == kind)
    with px.store.read() as conn:
        return [json.loads(r) for (r,) in conn.execute(q)]


@pytest.fixture
def gpx(px: Proctor) -> Proctor:
    px.policy.apply(POLICY, author="test", message="initial")
    return px


def test_no_policy_denies_with_reason(px: Proctor) -> None:
    @px.tool(agent="bot")
    def lookup(order_id: str) -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        lookup("A1")
    assert "no policy" in info.value.reason
    assert info.value.rule_ids == ("no-policy",)
    assert records(px, "decision")[0]["decision"] == "deny"


def test_allow_runs_and_records_decision_then_outcome(gpx: Proctor) -> None:
    calls = []

    @gpx.tool(agent="bot")
    def lookup(order_id: str, verbose: bool = False) -> dict:  # type: ignore[type-arg]
        calls.append(order_id)
        return {"id": order_id}

    assert lookup("A1") == {"id": "A1"}
    assert calls == ["A1"]
    decision, outcome = records(gpx, "decision")[-1], records(gpx, "outcome")[-1]
    assert decision["decision"] == "allow" and decision["rules"] == ["routine"]
    assert decision["action"]["args"] == {"order_id": "A1", "verbose": False}
    assert len(decision["policy_version"]) == 64 and len(decision["action"]["args_digest"]) == 64
    assert outcome["decision_id"] == decision["id"] and outcome["outcome"] == "ok"
    assert outcome["duration_ms"] >= 0
    assert decision["seq"] < outcome["seq"]


def test_unknown_tool_is_denied_and_never_runs(gpx: Proctor) -> None:
    @gpx.tool(agent="bot", name="delete_account")
    def nuke() -> None:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        nuke()
    assert "delete_account" in info.value.reason and info.value.rule_ids == ("envelope.tools",)
    assert info.value.decision_id == records(gpx, "decision")[-1]["id"]


def test_runtime_cel_error_denies_naming_cause(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def export(fmt: str) -> str:  # no 'rows' argument: the rule's args.rows is missing
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        export("csv")
    assert "rows" in info.value.reason and "failing closed" in info.value.reason


def test_unreachable_database_denies_naming_cause() -> None:
    px = Proctor("postgresql://nobody@127.0.0.1:9/nowhere")

    @px.tool(agent="bot")
    def lookup(order_id: str) -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        lookup("A1")
    assert info.value.rule_ids == ("store-unavailable",)
    assert "127.0.0.1:9" in info.value.reason
    assert info.value.decision_id is None
    px.close()


def test_review_with_wait_zero_raises_pending_and_stores_item(gpx: Proctor) -> None:
    @gpx.tool(agent="bot", wait=0)
    def refund(order_id: str, amount: float) -> str:
        raise AssertionError("must not run before approval")

    with pytest.raises(ReviewPending) as info:
        refund("A1", 250.0)
    item = gpx.reviews.get(info.value.item_id)
    assert (item.kind, item.status, item.queue) == ("approval", "pending", "billing")
    assert item.args == {"order_id": "A1", "amount": 250.0}
    assert item.rule_ids == ["big"] and item.reason == "Refunds over 100 need a billing lead"
    assert item.decision_id == records(gpx, "decision")[-1]["id"]
    assert [i.id for i in gpx.reviews.list(queue="billing")] == [item.id]


def test_review_wait_runs_out_to_pending_then_review_timeout_denies(gpx: Proctor) -> None:
    @gpx.tool(agent="bot", wait=0.05)
    def refund(order_id: str, amount: float) -> str:
        raise AssertionError("must not run")

    with pytest.raises(ReviewPending):
        refund("A1", 500.0)

    @gpx.tool(agent="bot", name="refund")  # wait=None: the policy's review timeout (0.3s)
    def refund_blocking(order_id: str, amount: float) -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        refund_blocking("A2", 500.0)
    assert "no reviewer decided" in info.value.reason
    statuses = {i.args["order_id"]: i.status for i in gpx.reviews.list(status=None)}
    assert statuses == {"A1": "pending", "A2": "expired"}
    assert records(gpx, "review.expire")


def test_on_error_review_opens_exception_item_and_reraises(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def flaky(n: int) -> int:
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError):
        flaky(3)
    outcome = records(gpx, "outcome")[-1]
    assert (outcome["outcome"], outcome["error_type"]) == ("error", "TimeoutError")
    item = gpx.reviews.get(outcome["review_item"])
    assert (item.kind, item.queue, item.detail) == ("exception", "ops", "upstream timed out")


def test_sampled_call_opens_sample_item(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def reply(text: str) -> str:
        return "sent"

    assert reply("hello") == "sent"
    (item,) = gpx.reviews.list(queue="qa")
    assert (item.kind, item.tool, item.args) == ("sample", "reply", {"text": "hello"})


def test_async_tools_take_every_path(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    async def lookup(order_id: str) -> str:
        await asyncio.sleep(0)
        return order_id.lower()

    @gpx.tool(agent="bot", wait=0)
    async def refund(order_id: str, amount: float) -> str:
        raise AssertionError("must not run")

    @gpx.tool(agent="bot", name="nope")
    async def nope() -> None:
        raise AssertionError("must not run")

    @gpx.tool(agent="bot")
    async def flaky() -> None:
        raise ValueError("bad")

    async def main() -> None:
        assert await lookup("A1") == "a1"
        with pytest.raises(ReviewPending):
            await refund("A1", 900.0)
        with pytest.raises(Denied):
            await nope()
        with pytest.raises(ValueError, match="bad"):
            await flaky()

    asyncio.run(main())
    kinds = [i.kind for i in gpx.reviews.list()]
    assert sorted(kinds) == ["approval", "exception"]


def test_run_context_reaches_rules_and_nested_runs_share_trace(gpx: Proctor) -> None:
    @gpx.tool(wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "ok"

    with gpx.run(agent="bot", confidence=0.95, ticket="T-1") as outer:
        assert refund("A1", 20.0) == "ok"
        with gpx.run(confidence=0.5) as inner:
            with pytest.raises(ReviewPending):
                refund("A1", 20.0)  # the inner run's low confidence sends it for review
            inner.update(confidence=0.99)
            assert refund("A1", 20.0) == "ok"
        assert refund("A1", 20.0) == "ok"

    decisions = records(gpx, "decision")
    assert [d["decision"] for d in decisions] == ["allow", "review", "allow", "allow"]
    assert [d["run_id"] for d in decisions] == [outer.id, inner.id, inner.id, outer.id]
    assert {d["trace_id"] for d in decisions} == {outer.trace_id} == {inner.trace_id}
    assert decisions[1]["parent_run_id"] == outer.id
    assert decisions[1]["action"]["context"] == {"confidence": 0.5, "ticket": "T-1"}
    starts, ends = records(gpx, "run.start"), records(gpx, "run.end")
    assert [s["run_id"] for s in starts] == [outer.id, inner.id]
    assert [(e["run_id"], e["status"], e["actions"]) for e in ends] == [
        (inner.id, "completed", 2),
        (outer.id, "completed", 2),
    ]


def test_sensitive_fields_are_masked_but_digest_is_of_real_args(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def lookup(order_id: str, card: str, password: str) -> str:
        return "ok"

    with gpx.run(agent="bot", customer={"ssn": "123-45-6789", "name": "Ann"}):
        lookup("A1", "4111111111111111", "hunter2")
    with gpx.store.read() as conn:
        raw = " ".join(r for (r,) in conn.execute(sa.select(audit_log.c.record)))
    assert "4111111111111111" not in raw and "hunter2" not in raw and "123-45-6789" not in raw
    d = records(gpx, "decision")[-1]
    assert d["action"]["args"] == {"order_id": "A1", "card": "***", "password": "***"}
    assert d["action"]["context"]["customer"] == {"ssn": "***", "name": "Ann"}
    assert sorted(d["masked"]) == ["args.card", "args.password", "context.customer.ssn"]
    from proctor._canonical import args_digest

    assert d["action"]["args_digest"] == args_digest(
        {"order_id": "A1", "card": "4111111111111111", "password": "hunter2"}
    )


def test_refusals_before_evaluation_mask_sensitive_fields_too(db_url: str) -> None:
    """The kill switch and the size limit refuse before the rules run; what they store is
    masked by the policy all the same."""
    from proctor import controls

    with Proctor(db_url, max_args_bytes=200) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot")
        def lookup(order_id: str, card: str) -> str:
            raise AssertionError("must not run")

        with px.run(agent="bot", customer={"ssn": "123-45-6789"}):
            with pytest.raises(Denied, match="200-byte limit"):
                lookup("A" * 300, "4111111111111111")
            controls.kill(px.store, "bot", "incident 12")
            with pytest.raises(Denied, match="kill switch"):
                lookup("A1", "4111111111111111")
        with px.store.read() as conn:
            raw = " ".join(r for (r,) in conn.execute(sa.select(audit_log.c.record)))
        assert "4111111111111111" not in raw and "123-45-6789" not in raw


def test_oversized_arguments_are_denied_and_not_stored(db_url: str) -> None:
    with Proctor(db_url, max_args_bytes=1000) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot")
        def lookup(order_id: str) -> str:
            raise AssertionError("must not run")

        with pytest.raises(Denied) as info:
            lookup("x" * 5000)
        assert info.value.rule_ids == ("payload-too-large",)
        d = records(px, "decision")[-1]
        assert d["action"]["args"] == {"_omitted": "5015 bytes"}


def test_wrong_call_arguments_are_a_type_error_before_any_decision(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def lookup(order_id: str) -> str:
        return order_id

    with pytest.raises(TypeError, match="lookup"):
        lookup("A1", "extra")
    assert records(gpx, "decision") == []


def test_tool_without_agent_is_a_config_error(gpx: Proctor) -> None:
    @gpx.tool
    def lookup(order_id: str) -> str:
        return order_id

    with pytest.raises(ConfigError, match="no agent"):
        lookup("A1")
    with gpx.run(agent="bot"):
        assert lookup("A1") == "A1"


def test_invalid_wait_is_rejected(gpx: Proctor) -> None:
    with pytest.raises(ConfigError):
        gpx.tool(agent="bot", wait=-1)(lambda: None)


def test_policy_apply_is_logged_and_failing_tests_refuse_apply(gpx: Proctor) -> None:
    applied = records(gpx, "policy.apply")
    assert applied[-1]["author"] == "test" and applied[-1]["message"] == "initial"
    bad = POLICY + "tests:\n  - {action: {agent: bot, tool: lookup}, expect: deny}\n"
    from proctor import PolicyError

    with pytest.raises(PolicyError, match="policy test 1"):
        gpx.policy.apply(bad)
    active = gpx.policy.active()
    assert active is not None and active.version == applied[-1]["version"]


def test_review_item_and_decision_are_one_transaction(gpx: Proctor) -> None:
    @gpx.tool(agent="bot", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "no"

    with pytest.raises(ReviewPending):
        refund("A1", 999.0)
    with gpx.store.read() as conn:
        seq = conn.execute(sa.select(review_items.c.decision_seq)).scalar()
        kind = conn.execute(sa.select(audit_log.c.decision).where(audit_log.c.seq == seq)).scalar()
    assert kind == "review"


def test_huge_integers_are_judged_and_recorded_not_crashed(gpx: Proctor) -> None:
    @gpx.tool(agent="bot")
    def export(rows: int) -> str:
        return "exported"

    assert export(2**70) == "exported"  # CEL compares it correctly: 2**70 > 10
    decision = records(gpx, "decision")[-1]
    assert decision["action"]["args"] == {"rows": str(2**70)}  # JSON stops at 64 bits
    from proctor.audit.verify import verify

    assert verify(gpx.store).ok

"""Self-healing execution: bounded, safe retries; breakers shared by every process;
fallbacks decided by the gate; deadlines; escalation; durable runs resumed after a crash.
On both databases."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import records
from tests.test_calls import spawn as spawn_child

from proctor import DeadlineExceeded, Denied, PolicyError, Proctor, Rejected
from proctor.audit.receipts import receipt
from proctor.reconcile import Committed, NotCommitted

CHILD = str(Path(__file__).with_name("heal_child.py"))
POLICY = """
policy: heal-test
defaults: {decision: deny, queue: ops}
queues: {ops: {}}
agents: {bot: {tools: [charge, charge_later, refund, step, wire, wire_by_hand]}}
rules:
  - {id: ok, when: 'true', decide: allow}
  - {id: no-wires-by-hand, when: 'tool == "wire_by_hand"', decide: deny}
tools:
  charge:
    retry: {attempts: 4, base: 1ms, max: 5ms, on: [ConnectionRefusedError, TimeoutError]}
    breaker: {window: 10, min_calls: 6, open_for: 30s, trial_calls: 2}
    fallback: {tool: charge_later, args: {order: args.order, note: '"charge failed"'}}
  refund:
    timeout: 200ms
    retry: {attempts: 3, base: 1ms, max: 5ms}
  wire:
    retry: {attempts: 2, base: 1ms}
    fallback: {tool: wire_by_hand}
    escalate: {run: stop}
"""


@pytest.fixture
def hpx(db_url: str) -> Any:
    px = Proctor(db_url)
    px.policy.apply(POLICY)
    yield px
    px.close()


def spawn(mode: str, db: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return spawn_child(mode, db, out, *extra, child=CHILD)


def events(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=60)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# -- retries ---------------------------------------------------------------------------------


def test_retries_recover_a_transient_failure_and_name_the_attempts(hpx: Proctor) -> None:
    tries: list[str] = []

    @hpx.tool(agent="bot")
    def charge(order: str) -> str:
        tries.append(order)
        if len(tries) < 3:
            raise ConnectionRefusedError("payments is restarting")
        return f"charged {order}"

    assert charge("A-1") == "charged A-1"
    assert len(tries) == 3
    attempts = records(hpx, "call.attempt")
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["error_type"] == "ConnectionRefusedError" for a in attempts)
    [outcome] = records(hpx, "outcome")
    assert outcome["outcome"] == "ok"
    assert outcome["attempts"] == 3 and outcome["recovered"] == "retry"
    assert {a["decision_id"] for a in attempts} == {outcome["decision_id"]}  # one call


def test_retries_never_exceed_the_bound_against_a_service_that_fails_forever(
    hpx: Proctor,
) -> None:
    tries = 0

    @hpx.tool(agent="bot")
    def refund(order: str) -> str:
        nonlocal tries
        tries += 1
        raise ConnectionRefusedError("refunds are down for good")

    for n in range(3):
        with pytest.raises(ConnectionRefusedError):
            refund(f"R-{n}")
    assert tries == 9  # attempts: 3, for each of three calls
    per_decision: dict[str, int] = {}
    for a in records(hpx, "call.attempt"):
        per_decision[a["decision_id"]] = per_decision.get(a["decision_id"], 0) + 1
    assert sorted(per_decision.values()) == [2, 2, 2]
    assert [o["attempts"] for o in records(hpx, "outcome")] == [3, 3, 3]


def test_the_deadline_stops_retries_before_attempts_run_out(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(
            POLICY.replace(
                "retry: {attempts: 3, base: 1ms, max: 5ms}",
                "retry: {attempts: 20, backoff: fixed, base: 100ms, jitter: 0, deadline: 250ms}",
            )
        )
        tries = 0

        @px.tool(agent="bot")
        def refund(order: str) -> str:
            nonlocal tries
            tries += 1
            raise ConnectionRefusedError("down")

        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            refund("R-1")
        assert tries <= 3  # 0 ms, 100 ms, 200 ms: a fourth would start after 250 ms
        assert time.monotonic() - started < 2.0


def test_an_error_the_policy_does_not_name_is_not_retried(hpx: Proctor) -> None:
    tries = 0

    @hpx.tool(agent="bot")
    def charge(order: str) -> str:
        nonlocal tries
        tries += 1
        raise ValueError("card declined")

    @hpx.tool(agent="bot")
    def charge_later(order: str, note: str) -> str:
        raise AssertionError("a declined card is not the service failing")

    with pytest.raises(ValueError, match="declined"):
        charge("A-1")
    assert tries == 1
    assert records(hpx, "call.attempt") == []


# -- ambiguous failures are reconciled, never retried blindly ---------------------------------


def test_an_ambiguous_failure_without_a_lookup_is_not_retried(hpx: Proctor) -> None:
    tries = 0

    @hpx.tool(agent="bot", key="order")
    def refund(order: str) -> str:
        nonlocal tries
        tries += 1
        raise TimeoutError("the payments API did not answer")

    with pytest.raises(TimeoutError):
        refund("R-1")
    assert tries == 1  # it may have happened: no blind second refund
    [outcome] = records(hpx, "outcome")
    assert outcome["outcome"] == "unknown"


def test_a_lookup_that_finds_the_effect_ends_the_call_with_it(hpx: Proctor) -> None:
    tries = 0

    @hpx.tool(agent="bot", key="order")
    def refund(order: str) -> str:
        nonlocal tries
        tries += 1
        raise TimeoutError("answer lost after the refund was made")

    @refund.reconcile
    def find(call: Any) -> Committed:
        return Committed(f"refund {call.args['order']} (found)")

    assert refund("R-1") == "refund R-1 (found)"
    assert tries == 1
    [outcome] = records(hpx, "outcome")
    assert outcome["outcome"] == "ok" and outcome["recovered"] == "lookup"
    assert refund("R-1") == "refund R-1 (found)"  # a repeat: the recorded result
    assert tries == 1


def test_a_lookup_that_finds_nothing_lets_it_be_retried(hpx: Proctor) -> None:
    tries = 0

    @hpx.tool(agent="bot", key="order")
    def refund(order: str) -> str:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise TimeoutError("timed out before the request was sent")
        return "refunded"

    @refund.reconcile
    def find(call: Any) -> NotCommitted:
        return NotCommitted()

    assert refund("R-1") == "refunded"
    assert tries == 2
    [attempt] = records(hpx, "call.attempt")
    assert attempt["ambiguous"] is True and attempt["reconciled"] == "not_committed"
    life = receipt(hpx.store, attempt["call_id"])
    assert [r["kind"] for r in life["records"]] == ["decision", "call.attempt", "outcome"]
    assert life["status"] == "done"


# -- deadlines -------------------------------------------------------------------------------


def test_a_sync_body_past_its_timeout_is_abandoned_and_its_call_is_unknown(
    hpx: Proctor,
) -> None:
    release = threading.Event()

    @hpx.tool(agent="bot", key="order")
    def refund(order: str) -> str:
        release.wait(5)
        return "late"

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        refund("R-1")
    release.set()
    assert time.monotonic() - started < 2.0
    [outcome] = records(hpx, "outcome")
    assert outcome["outcome"] == "unknown" and outcome["error_type"] == "DeadlineExceeded"


def test_an_async_body_past_its_timeout_is_cancelled(hpx: Proctor) -> None:
    cancelled = asyncio.Event()

    @hpx.tool(agent="bot")
    async def refund(order: str) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await refund("R-1")

    asyncio.run(main())
    assert cancelled.is_set()


# -- breakers --------------------------------------------------------------------------------


def test_a_breaker_opened_by_one_process_refuses_in_another_within_one_decision(
    db_url: str, tmp_path: Path
) -> None:
    no_fallback = "\n".join(
        line for line in POLICY.splitlines() if "tool: charge_later" not in line
    )
    with Proctor(db_url) as px:
        px.policy.apply(no_fallback)
        healthy = True

        @px.tool(agent="bot")
        def charge(order: str) -> str:
            assert healthy, "an open breaker lets nothing through"
            return "ok"

        for n in range(12):  # this process caches a healthy breaker
            charge(f"H-{n}")
        healthy = False
        out = tmp_path / "out"
        opener = events(spawn("fail", db_url, out, "10"))
        assert opener[-1] == {"event": "done"}
        [opened] = records(px, "breaker.open")
        assert opened["scope"] == "bot/charge" and opened["to"] == "open"
        # another process, its first decision
        [answer] = events(spawn("ask", db_url, out))
        assert answer["event"] == "refused"
        assert answer["rules"] == ["breaker.charge"]
        assert "circuit breaker for charge" in answer["reason"]
        # and this process, which had cached the breaker closed and healthy
        with pytest.raises(Denied) as refused:
            charge("C-1")
        assert refused.value.rule_ids == ("breaker.charge",)


def test_a_breaker_lets_trial_calls_through_after_open_for_and_closes(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.replace("open_for: 30s", "open_for: 300ms"))
        failing = True

        @px.tool(agent="bot")
        def charge_later(order: str, note: str) -> str:
            raise ConnectionRefusedError("the queue is down too")

        @px.tool(agent="bot")
        def charge(order: str) -> str:
            if failing:
                raise ConnectionRefusedError("down")
            return "ok"

        with pytest.raises(ConnectionRefusedError):
            charge("A-1")  # 4 tries
        with pytest.raises(ConnectionRefusedError):
            charge("A-2")  # the breaker opens within its tries: the retries stop
        kinds = [r["to"] for r in records(px, "breaker.open")]
        assert kinds == ["open"]
        with pytest.raises(Denied) as refused:
            charge("A-3")  # refused by the breaker, and the fallback failed too
        assert refused.value.rule_ids == ("breaker.charge",)
        assert any("charge_later did not help" in n for n in refused.value.__notes__)
        failing = False
        time.sleep(0.35)
        assert charge("A-4") == "ok"  # a trial call
        assert charge("A-5") == "ok"  # the second: closes it
        assert [r["to"] for r in records(px, "breaker.closed")] == ["closed"]
        assert [r["to"] for r in records(px, "breaker.half_open")] == ["half_open"]
        assert charge("A-6") == "ok"


# -- fallbacks -------------------------------------------------------------------------------


def test_a_failing_tool_falls_back_to_a_call_decided_by_the_gate(hpx: Proctor) -> None:
    @hpx.tool(agent="bot")
    def charge(order: str) -> str:
        raise ConnectionRefusedError("down")

    later: list[tuple[str, str]] = []

    @hpx.tool(agent="bot")
    def charge_later(order: str, note: str) -> str:
        later.append((order, note))
        return f"queued {order}"

    assert charge("A-1") == "queued A-1"
    assert later == [("A-1", "charge failed")]
    decisions = records(hpx, "decision")
    assert [d["tool"] for d in decisions] == ["charge", "charge_later"]
    stand_in = decisions[1]["action"]["context"]
    outcomes = records(hpx, "outcome")
    assert outcomes[0]["outcome"] == "error" and outcomes[0]["attempts"] == 4
    assert outcomes[1]["outcome"] == "ok"
    assert outcomes[1]["fallback_of"] == stand_in["fallback_of"] == decisions[0]["id"]


def test_a_fallback_the_policy_denies_is_never_run(hpx: Proctor) -> None:
    @hpx.tool(agent="bot")
    def wire(amount: float) -> str:
        raise ConnectionRefusedError("bank is down")

    by_hand: list[float] = []

    @hpx.tool(agent="bot")
    def wire_by_hand(amount: float) -> str:
        by_hand.append(amount)
        return "sent"

    with pytest.raises(ConnectionRefusedError) as failed:
        wire(500.0)
    assert by_hand == []
    assert any("wire_by_hand did not help: Denied" in n for n in failed.value.__notes__)
    denied = [d for d in records(hpx, "decision") if d["tool"] == "wire_by_hand"]
    assert [d["decision"] for d in denied] == ["deny"]
    # the policy escalates persistent failure to a person, with the history
    assert any("review item" in note for note in failed.value.__notes__)
    [item] = hpx.reviews.list(queue="ops")
    assert item.kind == "exception" and item.tool == "wire"
    history = json.loads(item.detail or "[]")
    assert [h.get("what") for h in history][-1] == "fallback"
    assert history[-1]["tool"] == "wire_by_hand" and history[-1]["error_type"] == "Denied"


def test_a_broken_fallback_expression_runs_no_fallback(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.replace("args.order, note", "args.missing, note"))

        @px.tool(agent="bot")
        def charge(order: str) -> str:
            raise ConnectionRefusedError("down")

        @px.tool(agent="bot")
        def charge_later(order: str, note: str) -> str:
            raise AssertionError("its arguments could not be built")

        with pytest.raises(ConnectionRefusedError) as failed:
            charge("A-1")
        assert any("no fallback ran" in n for n in failed.value.__notes__)


# -- escalation ------------------------------------------------------------------------------


def test_escalation_that_waits_runs_the_call_once_more_when_a_person_approves(
    db_url: str,
) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.replace("escalate: {run: stop}", "escalate: {run: wait}"))
        tries = 0

        @px.tool(agent="bot", wait=20)
        def wire(amount: float) -> str:
            nonlocal tries
            tries += 1
            if tries <= 2:
                raise ConnectionRefusedError("bank is down")
            return f"wired {amount}"

        @px.tool(agent="bot")
        def wire_by_hand(amount: float) -> str:
            raise AssertionError("denied by the policy")

        def approve_when_escalated() -> None:
            for _ in range(200):
                items = px.reviews.list(queue="ops")
                if items:
                    px.reviews.approve(items[0].id, by="ops-lead")
                    return
                time.sleep(0.05)

        helper = threading.Thread(target=approve_when_escalated)
        helper.start()
        assert wire(900.0) == "wired 900.0"
        helper.join()
        assert tries == 3


def test_escalation_that_waits_raises_the_persons_rejection(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.replace("escalate: {run: stop}", "escalate: {run: wait}"))

        @px.tool(agent="bot", wait=20)
        def wire(amount: float) -> str:
            raise ConnectionRefusedError("bank is down")

        @px.tool(agent="bot")
        def wire_by_hand(amount: float) -> str:
            raise AssertionError("denied by the policy")

        def reject_when_escalated() -> None:
            for _ in range(200):
                items = px.reviews.list(queue="ops")
                if items:
                    px.reviews.reject(items[0].id, by="ops-lead", reason="bank outage, wait")
                    return
                time.sleep(0.05)

        helper = threading.Thread(target=reject_when_escalated)
        helper.start()
        with pytest.raises(Rejected, match="bank outage"):
            wire(900.0)
        helper.join()


def test_a_breaker_open_too_long_reaches_a_person_once(db_url: str) -> None:
    policy = "\n".join(
        "    escalate: {breaker_open_for: 100ms}" if "tool: charge_later" in line else line
        for line in POLICY.splitlines()
    )
    with Proctor(db_url) as px:
        px.policy.apply(policy)

        @px.tool(agent="bot")
        def charge(order: str) -> str:
            raise ConnectionRefusedError("down")

        for n in range(2):
            with pytest.raises((ConnectionRefusedError, Denied)):
                charge(f"A-{n}")
        assert px.reviews.sweep() == []  # open, but not for long yet
        time.sleep(0.15)
        [item_id] = px.reviews.sweep()
        item = px.reviews.get(item_id)
        assert item.kind == "exception" and item.rule_ids == ["breaker.charge"]
        assert json.loads(item.detail or "{}")["state"] == "open"
        assert px.reviews.sweep() == []  # once per opening


# -- durable runs ----------------------------------------------------------------------------


def test_a_run_killed_mid_way_resumes_in_a_new_process(db_url: str, tmp_path: Path) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
    out = tmp_path / "out"
    first = spawn("die-in-step-3", db_url, out, "-")
    said = events(first)
    assert first.returncode == -9
    run_id = said[0]["id"]
    effects = Path(str(out) + ".effects")
    assert effects.read_text().splitlines() == ["step 1", "step 2", "step 3"]
    resumed = events(spawn("resume", db_url, out, run_id))
    assert resumed[-1]["results"] == [
        "step 1 done",
        "step 2 done",
        "step 3 done (found)",  # unknown: reconciled by the lookup, not run again
        "step 4 done",
        "step 5 done",
    ]
    assert effects.read_text().splitlines() == [f"step {n}" for n in range(1, 6)]
    with Proctor(db_url) as px:
        assert [r["run_id"] for r in records(px, "run.resume")] == [run_id]
        reconciled = records(px, "call.reconciled")
        assert [r["answer"] for r in reconciled] == ["committed"]


# -- policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("x: {retry: {attempts: 0}}", "greater than or equal to 1"),
        ("x: {retry: {attempts: 21}}", "less than or equal to 20"),
        ("x: {retry: {base: -1}}", "base"),
        ("x: {retry: {backoff: linear}}", "backoff"),
        ("x: {retry: {base: 2s, max: 1s}}", "shorter than retry.base"),
        ("x: {breaker: {window: 5}}", "could never open"),
        ("x: {breaker: {failure_rate: 1.5}}", "failure_rate"),
        ("x: {fallback: {tool: x}}", "cannot fall back to itself"),
        ("x: {fallback: {tool: y, args: {a: nope}}}", "unknown variable 'nope'"),
        ("x: {escalate: {queue: nowhere}}", "unknown queue 'nowhere'"),
        ("x: {timeout: soon}", "timeout"),
        ("x: {retries: {attempts: 2}}", "retries"),
    ],
)
def test_malformed_healing_is_refused_with_its_place(tools: str, message: str) -> None:
    from proctor.policy import compile_policy

    text = f"policy: p\ndefaults: {{queue: ops}}\nqueues: {{ops: {{}}}}\ntools:\n  {tools}\n"
    with pytest.raises(PolicyError, match=message) as refused:
        compile_policy(text)
    assert refused.value.line == 5


# -- through a server ------------------------------------------------------------------------


def test_healing_works_the_same_through_a_server(db_url: str) -> None:
    from tests.test_server_process import Server, free_port

    srv = Server(db_url, free_port())
    srv.start()
    try:
        with srv.client(srv.admin) as admin:
            admin.policy.apply(POLICY)
        token = srv.token("agent", "runner", agents="bot")
        with srv.client(token) as px:
            tries = 0

            @px.tool(agent="bot")
            def charge(order: str) -> str:
                nonlocal tries
                tries += 1
                raise ConnectionRefusedError("down")

            @px.tool(agent="bot")
            def charge_later(order: str, note: str) -> str:
                return f"queued {order}"

            @px.tool(agent="bot")
            def wire(amount: float) -> str:
                raise ConnectionRefusedError("bank is down")

            @px.tool(agent="bot")
            def wire_by_hand(amount: float) -> str:
                raise AssertionError("denied by the policy")

            assert charge("A-1") == "queued A-1"  # 4 tries, then the fallback
            assert charge("A-2") == "queued A-2"  # the breaker opens during its tries
            assert tries == 4 + 2
            assert charge("A-3") == "queued A-3"  # refused by the open breaker: fallback
            assert tries == 6
            with pytest.raises(ConnectionRefusedError) as failed:
                wire(10.0)
            assert any("review item" in n for n in failed.value.__notes__)
        with Proctor(db_url) as admin:
            attempts = records(admin, "call.attempt")
            # 3 tries followed by another; A-2: 2, the second opening the breaker; wire: 1
            assert len(attempts) == 3 + 2 + 1
            assert [r["scope"] for r in records(admin, "breaker.open")] == ["bot/charge"]
            [item] = admin.reviews.list(queue="ops")
            assert item.kind == "exception" and item.tool == "wire"
            assert json.loads(item.detail or "[]")[0]["error_type"] == "ConnectionRefusedError"
    finally:
        srv.stop()


def test_an_open_breaker_fires_an_alert(db_url: str) -> None:
    from proctor.telemetry.alerts import AlertMonitor

    policy = POLICY.replace(
        "tools:\n",
        "alerts:\n  - {id: charge-breaker, metric: breakers_open, tool: charge, above: 0,"
        " severity: critical}\ntools:\n",
    )
    with Proctor(db_url) as px:
        px.policy.apply(policy)

        @px.tool(agent="bot")
        def charge(order: str) -> str:
            raise ConnectionRefusedError("down")

        @px.tool(agent="bot")
        def charge_later(order: str, note: str) -> str:
            return "queued"

        monitor = AlertMonitor(px.store)
        assert monitor.check() == []
        charge("A-1")
        charge("A-2")  # opens the breaker
        [firing] = monitor.check()
        assert (firing.alert, firing.state, firing.value) == ("charge-breaker", "firing", 1.0)


def test_no_fallback_stands_in_for_a_call_that_may_have_happened(hpx: Proctor) -> None:
    @hpx.tool(agent="bot", key="order")
    def charge(order: str) -> str:
        raise TimeoutError("the charge may have gone through")

    @hpx.tool(agent="bot")
    def charge_later(order: str, note: str) -> str:
        raise AssertionError("deferring a charge that may have happened charges twice")

    with pytest.raises(TimeoutError) as failed:
        charge("A-1")
    assert any("no fallback ran: charge may have happened" in n for n in failed.value.__notes__)
    assert [o["outcome"] for o in records(hpx, "outcome")] == ["unknown"]


def test_a_healthy_breaker_writes_nothing_per_call(hpx: Proctor) -> None:
    @hpx.tool(agent="bot")
    def charge(order: str) -> str:
        return "ok"

    for n in range(12):  # a window of 10: full of successes after the tenth
        charge(f"A-{n}")
    with hpx.store.read() as conn:
        before = conn.execute(sa.text("SELECT outcomes, updated_at FROM proctor_breakers")).one()
    for n in range(5):
        charge(f"B-{n}")
    with hpx.store.read() as conn:
        after = conn.execute(sa.text("SELECT outcomes, updated_at FROM proctor_breakers")).one()
    assert before == after and before[0] == "0" * 10

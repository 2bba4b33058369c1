"""Self-healing made visible: ``proctor breakers``, the breakers API, ``/metrics`` and the
KPI's failure recovery rate, after real tool calls that fail, retry, fall back and open
breakers (on both databases)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from tests.asgi_client import AppClient
from tests.conftest import records
from tests.test_cli import proctor

from proctor import Committed, Proctor
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.server.refusals import write_due
from proctor.telemetry.healing import Recovery, count_recoveries
from proctor.telemetry.kpi import compute

POLICY = """
policy: heal-view
defaults: {queue: ops}
queues: {ops: {}}
agents: {bot: {tools: [pay, pay_later, ship]}}
rules: [{id: ok, decide: allow}]
tools:
  pay:
    retry: {attempts: 3, base: 1ms, max: 2ms, on: [ConnectionRefusedError, TimeoutError]}
    breaker: {window: 4, min_calls: 4, failure_rate: 1.0, open_for: 1h, trial_calls: 1}
    fallback: {tool: pay_later, args: {order: args.order}}
  ship:
    retry: {attempts: 2, base: 1ms, max: 2ms, on: [ConnectionRefusedError]}
    breaker: {scope: tool, window: 2, min_calls: 2, open_for: 1h}
    escalate: {run: stop}
"""


def workload(px: Proctor) -> None:
    """Six calls of ``pay`` and one of ``ship``, each healing (or not) a different way:

    1. ok at once (never failed)
    2. fails once, a retry succeeds                       -> recovered by retry
    3. times out, its lookup finds the payment            -> recovered by lookup
    4. fails every try, its fallback succeeds             -> recovered by fallback
    5. fails (its breaker opens), its fallback fails too  -> failed
    6. refused by the open breaker, its fallback succeeds -> recovered by fallback
    7. ``ship`` fails both tries, opens its per-tool breaker and goes to a person
    """
    plan: list[BaseException] = []
    later_fails = {"on": False}

    @px.tool(agent="bot")
    def pay(order: str) -> str:
        if plan:
            raise plan.pop(0)
        return f"paid {order}"

    @pay.reconcile  # type: ignore[attr-defined]
    def _found(call: Any) -> Committed:
        return Committed(f"found {call.args['order']}")

    @px.tool(agent="bot")
    def pay_later(order: str) -> str:
        if later_fails["on"]:
            raise ConnectionRefusedError("the queue is down too")
        return f"queued {order}"

    @px.tool(agent="bot")
    def ship(order: str) -> str:
        raise ConnectionRefusedError("carrier down")

    refused = ConnectionRefusedError
    with px.run(agent="bot"):
        assert pay("1") == "paid 1"
        plan[:] = [refused("blip")]
        assert pay("2") == "paid 2"
        plan[:] = [TimeoutError("slow")]
        assert pay("3") == "found 3"
        plan[:] = [refused("down")] * 3
        assert pay("4") == "queued 4"
        plan[:] = [refused("down")] * 3
        later_fails["on"] = True
        with pytest.raises(ConnectionRefusedError):
            pay("5")
        plan.clear()
        later_fails["on"] = False
        assert pay("6") == "queued 6"
        with pytest.raises(ConnectionRefusedError) as escalated:
            ship("7")
    assert "escalated to a person" in " ".join(escalated.value.__notes__)


@pytest.fixture
def healed(db_url: str) -> Iterator[Proctor]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        workload(px)
        yield px


def test_kpi_counts_recoveries_by_retry_fallback_and_lookup(healed: Proctor) -> None:
    k = compute(healed.store)
    assert k["failure_recovery"] == {
        "failed": 6,  # calls 2-7
        "recovered": 4,
        "by_retry": 1,
        "by_fallback": 2,
        "by_lookup": 1,
        "escalated": 1,
        "attempts": 1 + 2 + 1 + 3 + 1 + 3 + 2,  # pay's tries, pay_later's three, ship's two
        "retried_calls": 3,  # calls 2 and 4, and ship
    }
    assert k["failure_recovery_rate"] == round(4 / 6, 4)
    assert k["run_recovery_rate"] == 1.0  # the run caught its failures and completed
    # One tool: its fallbacks still count for it, though another tool ran them.
    pay = compute(healed.store, tool="pay")["failure_recovery"]
    assert (pay["failed"], pay["by_retry"], pay["by_fallback"], pay["by_lookup"]) == (5, 1, 2, 1)
    assert pay["attempts"] == 8 and pay["escalated"] == 0
    later = compute(healed.store, tool="pay_later")["failure_recovery"]
    assert later["failed"] == 0 and later["recovered"] == 0  # it only stood in
    assert compute(healed.store, agent="nobody")["failure_recovery_rate"] is None


def test_a_call_whose_fallback_fails_is_not_recovered() -> None:
    found = count_recoveries(
        [
            {"kind": "outcome", "outcome": "error", "decision_id": "d1", "attempts": 2},
            {"kind": "outcome", "outcome": "error", "decision_id": "d2", "fallback_of": "d1"},
            {"kind": "outcome", "outcome": "ok", "decision_id": "d3", "fallback_of": "d9"},
        ]
    )
    assert found == Recovery(failed=2, fallback=1, attempts=4, retried=1)
    assert found.rate == 0.5


def test_metrics_show_breaker_states_tries_and_recoveries(healed: Proctor) -> None:
    client = AppClient(create_app(healed, sweep=False))
    try:
        text = client.get("/metrics").text
    finally:
        client.close()

    def value(name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {name} {labels} in\n{text}")

    assert value("proctor_breaker_state", scope="bot/pay", agent="bot", tool="pay") == 2.0
    assert value("proctor_breaker_state", scope="*/ship", agent="*", tool="ship") == 2.0
    assert value("proctor_call_attempts_total", agent="bot", tool="pay") == 8.0
    assert value("proctor_call_attempts_total", agent="bot", tool="pay_later") == 3.0
    assert value("proctor_call_attempts_total", agent="bot", tool="ship") == 2.0
    assert value("proctor_recoveries_total", how="retry") == 1.0
    assert value("proctor_recoveries_total", how="fallback") == 2.0
    assert value("proctor_recoveries_total", how="lookup") == 1.0
    assert value("proctor_breaker_transitions_total", tool="pay", to="open") == 1.0
    with healed.store.write() as tx:
        from proctor.execution.breakers import reset

        reset(tx, "bot/pay", "ops")
    client = AppClient(create_app(healed, sweep=False))
    try:
        text = client.get("/metrics").text
    finally:
        client.close()
    assert value("proctor_breaker_state", scope="bot/pay") == 0.0


def test_api_lists_breakers_and_only_admins_reset_them(healed: Proctor) -> None:
    _, admin = create_token(healed.store, role="admin", name="root")
    _, reviewer = create_token(healed.store, role="reviewer", name="ana", queues=["ops"])
    app = create_app(healed, sweep=False)
    client = AppClient(app)
    as_admin = {"Authorization": f"Bearer {admin}"}
    as_reviewer = {"Authorization": f"Bearer {reviewer}"}
    try:
        listed = client.get("/api/v1/breakers", headers=as_reviewer)
        assert listed.status_code == 200
        rows = {r["scope"]: r for r in listed.json()}
        assert set(rows) == {"bot/pay", "*/ship"}
        assert rows["bot/pay"]["state"] == "open" and rows["bot/pay"]["failure_rate"] == 1.0
        assert rows["*/ship"]["agent"] == "*" and rows["*/ship"]["opened_at"] is not None

        # The scope's slash (and star) go in the path as they are.
        refused = client.post("/api/v1/breakers/*/ship/reset", headers=as_reviewer)
        assert refused.status_code == 403
        missing = client.post("/api/v1/breakers/bot/nothing/reset", headers=as_admin)
        assert missing.status_code == 404 and "bot/nothing" in missing.json()["message"]
        closed = client.post("/api/v1/breakers/*/ship/reset", headers=as_admin)
        assert closed.status_code == 200, closed.text
        assert closed.json()["scope"] == "*/ship" and closed.json()["state"] == "closed"
        encoded = client.post("/api/v1/breakers/bot%2Fpay/reset", headers=as_admin)
        assert encoded.status_code == 200 and encoded.json()["scope"] == "bot/pay"
        states = {
            r["scope"]: r["state"] for r in client.get("/api/v1/breakers", headers=as_admin).json()
        }
        assert states == {"bot/pay": "closed", "*/ship": "closed"}
    finally:
        client.close()
    write_due(healed.store, app.state.refusals, everything=True)
    denied = [r for r in records(healed, "access.denied") if r.get("role") == "reviewer"]
    assert len(denied) == 1 and denied[0]["path"] == "/api/v1/breakers/*/ship/reset"
    by = [(r["scope"], r.get("by")) for r in records(healed, "breaker.closed")]
    assert by == [("*/ship", "root"), ("bot/pay", "root")]


def test_cli_lists_and_resets_breakers(healed: Proctor, db_url: str) -> None:
    shown = proctor("breakers", "-d", db_url)
    assert shown.returncode == 0, shown.stderr
    assert "bot/pay" in shown.stdout and "open" in shown.stdout and "100%" in shown.stdout
    listed = proctor("breakers", "list", "--json", "-d", db_url)
    assert {r["scope"]: r["state"] for r in json.loads(listed.stdout)} == {
        "bot/pay": "open",
        "*/ship": "open",
    }
    unknown = proctor("breakers", "reset", "bot/nothing", "--by", "ops", "-d", db_url)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "error: no circuit breaker 'bot/nothing' (breakers: */ship, bot/pay)"
    )
    assert "Traceback" not in unknown.stderr
    assert proctor("breakers", "reset", "bot/pay", "-d", db_url).returncode == 2  # --by needed
    done = proctor("breakers", "reset", "bot/pay", "--by", "oncall-ana", "-d", db_url)
    assert done.returncode == 0, done.stderr
    assert "closed the circuit breaker bot/pay" in done.stdout
    closed = records(healed, "breaker.closed")
    assert [(r["scope"], r["by"], r["from"]) for r in closed] == [("bot/pay", "oncall-ana", "open")]
    again = json.loads(proctor("breakers", "--json", "-d", db_url).stdout)
    assert {r["scope"]: r["state"] for r in again} == {"bot/pay": "closed", "*/ship": "open"}

    # Closed, the breaker lets the next call run.
    @healed.tool(agent="bot")
    def pay(order: str) -> str:
        return f"paid {order}"

    assert pay("8") == "paid 8"


def test_no_breakers_yet(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(POLICY)
    shown = proctor("breakers", "list", "-d", sqlite_url)
    assert shown.returncode == 0 and "no circuit breakers yet" in shown.stdout
    assert re.search(r"^\[\]$", proctor("breakers", "--json", "-d", sqlite_url).stdout, re.M)

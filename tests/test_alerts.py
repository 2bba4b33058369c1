"""Alerts, notifications and SLA breaches, delivered to a real SMTP server and a real
webhook receiver on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families
from tests.asgi_client import AppClient
from tests.test_server_process import Server, free_port

from proctor import PolicyError, Proctor, ReviewPending
from proctor.audit.verify import verify
from proctor.server.app import create_app
from proctor.store.tables import audit_log
from proctor.telemetry import notifications
from proctor.telemetry.alerts import AlertMonitor, states
from proctor.telemetry.notifications import MAX_ATTEMPTS, deliver_due


@dataclass
class Webhook:
    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests first

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if hook.fail_first > 0:
                hook.fail_first -= 1
                self.send_response(500)
            else:
                hook.received.append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield hook
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    port: int
    messages: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=proctor@example.com&to=oncall@example.com"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - the name aiosmtpd calls
            box.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


def alert_policy(webhook: Webhook, mailbox: Mailbox, extra: str = "") -> str:
    return f"""
policy: alerting
defaults: {{decision: deny, queue: payments}}
queues:
  payments: {{sla: 1s, owners: [payments-team], escalate_to: senior}}
  senior: {{}}
notify:
  oncall: ["{webhook.url}", "{mailbox.url}"]
  payments-team: "{webhook.url}"
agents: {{bot: {{tools: [refund, lookup]}}}}
rules:
  - {{id: ok, when: 'tool in ["refund", "lookup"]', decide: allow}}
  - {{id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review,
     hold_run: false}}
alerts:
  - id: refund-failures
    description: Refunds are failing; customers are not getting their money.
    metric: error_rate
    tool: refund
    above: 0.3
    window: 10m
    severity: critical
    notify: [oncall]
    min_events: 3
{extra}
"""


def tools(px: Proctor) -> Any:
    @px.tool(agent="bot", wait=0)
    def refund(order: str, amount: float, fail: bool = False) -> str:
        if fail:
            raise ConnectionError("payment API down")
        return f"refunded {order}"

    return refund


def kinds(px: Proctor, prefix: str) -> list[dict[str, Any]]:
    """The log's records whose kind starts with ``prefix``, in order."""
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record)
            .where(audit_log.c.kind.startswith(prefix))
            .order_by(audit_log.c.seq)
        ).all()
    return [json.loads(r) for (r,) in rows]


def test_an_alert_fires_and_resolves_by_mail_and_webhook(
    db_url: str, webhook: Webhook, mailbox: Mailbox
) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(alert_policy(webhook, mailbox))
        refund = tools(px)
        monitor = AlertMonitor(px.store)
        refund("A-1", 10.0)
        with pytest.raises(ConnectionError):
            refund("A-2", 10.0, fail=True)
        assert monitor.check() == []  # two calls: fewer than min_events, no value yet
        with pytest.raises(ConnectionError):
            refund("A-3", 10.0, fail=True)
        (fired,) = monitor.check()  # 2 of 3 failed: 0.67 > 0.3
        assert (fired.alert, fired.state, fired.severity) == (
            "refund-failures",
            "firing",
            "critical",
        )
        assert fired.value == pytest.approx(2 / 3)
        assert fired.notifications == 2  # the webhook and the mailbox of 'oncall'
        assert monitor.check() == []  # still firing: nothing new
        assert deliver_due(px.store).as_dict() == {"sent": 2, "retrying": 0, "failed": 0}
        assert deliver_due(px.store).sent == 0  # nothing is sent twice

        (hook,) = webhook.received
        assert hook["title"] == "[CRITICAL] refund-failures firing"
        assert "error_rate = 0.6667, threshold > 0.3 (tool refund)" in hook["message"]
        assert "customers are not getting their money" in hook["message"]
        (mail,) = mailbox.messages
        assert mail["Subject"] == "[CRITICAL] refund-failures firing"
        assert mail["To"] == "oncall@example.com"

        for i in range(5):
            refund(f"B-{i}", 10.0)  # 2 of 8 failed: 0.25 < 0.3
        (resolved,) = monitor.check()
        assert (resolved.state, resolved.value) == ("resolved", pytest.approx(0.25))
        assert deliver_due(px.store).sent == 2
        assert webhook.received[-1]["title"] == "[RESOLVED] refund-failures resolved"
        assert mailbox.messages[-1]["Subject"] == "[RESOLVED] refund-failures resolved"

        log = kinds(px, "alert.")
        assert [r["kind"] for r in log] == ["alert.firing", "alert.resolved"]
        assert log[0]["alert"] == "refund-failures" and log[0]["notify"] == ["oncall"]
        assert log[0]["value"] == pytest.approx(2 / 3) and log[0]["above"] == 0.3
        (state,) = states(px.store)
        assert state["state"] == "ok" and state["value"] == pytest.approx(0.25)
        assert verify(px.store).ok


def test_an_alert_removed_from_the_policy_while_firing_is_resolved(
    db_url: str, webhook: Webhook, mailbox: Mailbox
) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(alert_policy(webhook, mailbox).replace("min_events: 3", "min_events: 1"))
        refund = tools(px)
        with pytest.raises(ConnectionError):
            refund("A-1", 10.0, fail=True)
        monitor = AlertMonitor(px.store)
        assert [c.state for c in monitor.check()] == ["firing"]
        px.policy.apply(alert_policy(webhook, mailbox).split("alerts:")[0])
        (gone,) = monitor.check()
        assert (gone.alert, gone.state) == ("refund-failures", "resolved")
        assert kinds(px, "alert.")[-1]["reason"] == "the alert is no longer in the active policy"


def test_failed_deliveries_are_retried_with_backoff_and_counted(
    sqlite_url: str, webhook: Webhook, mailbox: Mailbox
) -> None:
    webhook.fail_first = 2
    with Proctor(sqlite_url) as px:
        px.policy.apply(alert_policy(webhook, mailbox).replace("min_events: 3", "min_events: 1"))
        refund = tools(px)
        with pytest.raises(ConnectionError):
            refund("A-1", 10.0, fail=True)
        AlertMonitor(px.store).check()
        now = time.time()
        first = deliver_due(px.store, now=now)
        assert (first.sent, first.retrying) == (1, 1)  # the mail went; the webhook said 500
        assert deliver_due(px.store, now=now + 3.9).retrying == 0  # first retry: 5 s ±20%
        assert deliver_due(px.store, now=now + 6.1).retrying == 1  # and it fails again
        assert deliver_due(px.store, now=now + 6.1 + 7.9).retrying == 0  # then 10 s ±20%
        assert deliver_due(px.store, now=now + 6.1 + 12.1).sent == 1
        (hook,) = webhook.received
        assert hook["title"] == "[CRITICAL] refund-failures firing"
        rows = {r["target"] + r["url"][:4]: r for r in notifications.recent(px.store)}
        assert rows["oncalljson"]["failures"] == 2 and rows["oncalljson"]["status"] == "sent"
        assert rows["oncalljson"]["url"] == f"json://127.0.0.1:{webhook.port}/…"

        metrics = scrape(px)
        assert metrics[("proctor_notification_failures_total", (("target", "oncall"),))] == 2
        assert metrics[("proctor_notifications", (("status", "sent"), ("target", "oncall")))] == 2
        assert (
            metrics[
                ("proctor_alert_firing", (("alert", "refund-failures"), ("severity", "critical")))
            ]
            == 1
        )


def test_a_target_that_never_answers_is_given_up_after_the_last_attempt(
    sqlite_url: str, webhook: Webhook, mailbox: Mailbox
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/nobody-listens"
    policy = alert_policy(webhook, mailbox).replace(
        f'"{webhook.url}", "{mailbox.url}"', f'"{dead}"'
    )
    with Proctor(sqlite_url) as px:
        px.policy.apply(policy.replace("min_events: 3", "min_events: 1"))
        with pytest.raises(ConnectionError):
            tools(px)("A-1", 10.0, fail=True)
        AlertMonitor(px.store).check()
        now = time.time()
        for attempt in range(MAX_ATTEMPTS):
            result = deliver_due(px.store, now=now + attempt * 3600)
            assert (result.retrying, result.failed) == (
                (1, 0) if attempt < MAX_ATTEMPTS - 1 else (0, 1)
            )
        (row,) = notifications.recent(px.store)
        assert row["status"] == "failed" and row["failures"] == MAX_ATTEMPTS
        assert "Connection" in row["last_error"]
        (gave_up,) = kinds(px, "notification.")
        assert gave_up["attempts"] == MAX_ATTEMPTS and gave_up["target"] == "oncall"


def test_an_sla_breach_tells_the_queue_owners_and_escalates_the_item(
    db_url: str, webhook: Webhook, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_PUBLIC_URL", "https://proctor.example.com/")
    with Proctor(db_url) as px:
        px.policy.apply(alert_policy(webhook, mailbox))
        with pytest.raises(ReviewPending) as pending:
            tools(px)("A-1", 500.0)
        item_id = pending.value.item_id
        assert px.reviews.sweep() == []  # within its SLA
        later = time.time() + 5
        assert px.local.service.sweep(now=later) == [item_id]
        assert px.local.service.sweep(now=later + 1) == []  # once per queue, not every sweep
        item = px.reviews.get(item_id)
        assert (item.queue, item.status) == ("senior", "pending")
        breach = kinds(px, "review.sla_breach")[0]
        assert breach["owners"] == ["payments-team"] and breach["escalate_to"] == "senior"
        assert breach["overdue_s"] >= 3.5
        assert [r["to"] for r in kinds(px, "review.escalate")] == ["senior"]
        assert deliver_due(px.store).sent == 1
        (hook,) = webhook.received
        assert hook["title"] == "[SLA] a review in queue 'payments' is past its SLA"
        assert "bot wants to call refund" in hook["message"]
        assert "It moves to queue 'senior'." in hook["message"]
        assert f"https://proctor.example.com/items/{item_id}" in hook["message"]
        assert mailbox.messages == []  # the mailbox belongs to 'oncall', not the owners
        assert verify(px.store).ok


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("metric: error_rate", "alerts.0.metric: Input should be"),
        ("above: 0.3", "needs exactly one threshold"),
        ("notify: [oncall]", "unknown notify target 'nobody'"),
        ("owners: [payments-team]", "owners names unknown notify target 'nobody'"),
        ("window: 10m", "window: a duration is a number of seconds"),
        ("severity: critical", "alerts.0.severity: Input should be"),
    ],
)
def test_malformed_alerts_are_refused_with_their_line(
    sqlite_url: str, webhook: Webhook, mailbox: Mailbox, change: str, message: str
) -> None:
    replacement = {
        "metric: error_rate": "metric: vibes",
        "above: 0.3": "above: 0.3\n    below: 0.1",
        "notify: [oncall]": "notify: [nobody]",
        "owners: [payments-team]": "owners: [nobody]",
        "window: 10m": "window: soon",
        "severity: critical": "severity: apocalyptic",
    }[change]
    text = alert_policy(webhook, mailbox).replace(change, replacement)
    with Proctor(sqlite_url) as px, pytest.raises(PolicyError) as err:
        px.policy.apply(text)
    assert message in str(err.value)
    assert err.value.line is not None


def test_notification_urls_must_look_like_urls(sqlite_url: str) -> None:
    with Proctor(sqlite_url) as px, pytest.raises(PolicyError, match="not a notification URL"):
        px.policy.apply("policy: p\nnotify: {ops: 'not a url'}\n")


def test_environment_variables_in_urls_are_expanded_when_sent() -> None:
    assert notifications.expand("slack://${TOKEN}/x", {"TOKEN": "abc"}) == "slack://abc/x"
    with pytest.raises(notifications.MissingVariable, match="TOKEN is not set"):
        notifications.expand("slack://${TOKEN}/x", {})
    error = notifications.send_apprise("json://${PROCTOR_TEST_UNSET_VAR}/x", "info", "t", "b")
    assert error == "environment variable PROCTOR_TEST_UNSET_VAR is not set"


def scrape(px: Proctor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = AppClient(create_app(px, sweep=False)).get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Silent:
    """A TCP server that accepts connections and never answers: the worst target."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.mark.slow
def test_unreachable_targets_never_slow_or_fail_a_decision(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = Silent()
    refused = free_port()
    monkeypatch.setenv("PROCTOR_ALERT_CHECK_SECONDS", "0.2")
    server = Server(db_url, free_port())
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin}"}
        policy = f"""
policy: busy
notify:
  dead: ["json://127.0.0.1:{silent.port}/hook", "json://127.0.0.1:{refused}/hook"]
agents: {{bot: {{tools: [lookup]}}}}
rules: [{{id: ok, when: 'tool == "lookup"', decide: allow}}]
alerts:
  - {{id: busy, metric: decisions, above: 0, window: 1h, severity: info, notify: [dead]}}
"""
        httpx.post(f"{server.url}/api/v1/policies", headers=admin, json={"text": policy})
        with server.client(server.token("agent", "bot", agents="bot")) as px:

            @px.tool(agent="bot")
            def lookup(order: str) -> str:
                return order

            lookup("first")
            deadline = time.monotonic() + 15
            while not silent.accepted:  # the alert fired and a delivery hangs on its socket
                assert time.monotonic() < deadline, "the alert never tried its target"
                time.sleep(0.05)
            slowest = 0.0
            for i in range(200):
                started = time.perf_counter()
                assert lookup(f"A-{i}") == f"A-{i}"
                slowest = max(slowest, time.perf_counter() - started)
            hanging = silent.accepted[0]
            assert hanging.fileno() != -1  # still held open by the delivery in flight
        # decisions took their usual milliseconds while delivery waited on a silent socket
        assert slowest < 1.0, f"a decision took {slowest:.2f} s"
        outbox = httpx.get(f"{server.url}/api/v1/notifications", headers=admin).json()
        refused_row = next(n for n in outbox if str(refused) in n["url"])
        deadline = time.monotonic() + 15
        while refused_row["failures"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
            outbox = httpx.get(f"{server.url}/api/v1/notifications", headers=admin).json()
            refused_row = next(n for n in outbox if str(refused) in n["url"])
        assert refused_row["status"] == "pending" and refused_row["last_error"]
        (alert,) = httpx.get(f"{server.url}/api/v1/alerts", headers=admin).json()
        assert alert["state"] == "firing"
    finally:
        server.stop()
        silent.close()


def test_the_alerts_commands(tmp_path: Any, webhook: Webhook, mailbox: Mailbox) -> None:
    from tests.test_cli import proctor

    db = f"sqlite:///{tmp_path}/cli.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(alert_policy(webhook, mailbox).replace("min_events: 3", "min_events: 1"))
    assert proctor("policy", "apply", str(policy), "--database", db).returncode == 0
    with Proctor(db) as px, pytest.raises(ConnectionError):
        tools(px)("A-1", 10.0, fail=True)
    checked = proctor("alerts", "check", "--json", "--database", db)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert [t["state"] for t in report["transitions"]] == ["firing"] and report["sent"] == 2
    listed = proctor("alerts", "list", "--database", db)
    assert "refund-failures" in listed.stdout and "firing" in listed.stdout
    assert "notifications: 2 sent" in listed.stdout
    sent = proctor("alerts", "test", "payments-team", "--database", db)
    assert sent.returncode == 0 and "sent json://127.0.0.1" in sent.stdout
    assert webhook.received[-1]["title"] == "Proctor test notification for 'payments-team'"
    unknown = proctor("alerts", "test", "nobody", "--database", db)
    assert unknown.returncode == 2
    assert "no notify target 'nobody' in the active policy (targets: oncall, payments-team)" in (
        unknown.stderr
    )
    problems = proctor("problems", "--json", "--database", db)
    assert {p["kind"] for p in json.loads(problems.stdout)} == {"failing_tool", "alert"}
    bad = proctor("problems", "--window", "soon", "--database", db)
    assert bad.returncode == 2 and "--window" in bad.stderr

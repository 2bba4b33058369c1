"""Webhooks when a human decides, an item expires or a call's outcome becomes unknown:
queued with the event's log record, posted through the outbox to a real receiver on
loopback, signed, and verified with ``proctor.verify_webhook``. On both databases."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from tests.test_calls import effects, records, spawn
from tests.test_review_processes import rest_of
from tests.test_server_process import Server, free_port

from proctor import (
    Denied,
    InDoubt,
    PolicyError,
    Proctor,
    ReviewPending,
    WebhookError,
    verify_webhook,
)
from proctor.store.tables import audit_log, notifications, policies
from proctor.telemetry.notifications import MAX_ATTEMPTS, deliver_due
from proctor.telemetry.webhooks import sign

SECRET = "whsec-test-0123456789abcdef"
POLICY = """
policy: webhooks-test
defaults: {decision: deny, queue: billing, review_timeout: 1h}
queues: {billing: {}, finance: {quorum: 2}}
agents: {bot: {tools: [refund, lookup, wire]}}
rules:
  - {id: ok, when: 'tool in ["refund", "lookup", "wire"]', decide: allow}
  - id: big
    when: tool == "refund" && args.amount > 100.0
    decide: review
    reason: Refunds over 100 need a person
  - {id: wires, when: 'tool == "wire"', decide: review, queue: finance}
webhooks:
  - name: orchestrator
    url: "http://127.0.0.1:PORT/hook"
    secret: ${TEST_WEBHOOK_SECRET}
"""


@dataclass
class Receiver:
    """A webhook receiver on loopback: keeps each request's headers and raw body."""

    port: int = 0
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, secret: str = SECRET) -> list[dict[str, Any]]:
        return [verify_webhook(body, headers, secret) for headers, body in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if hook.fail_first > 0:
                hook.fail_first -= 1
                self.send_response(500)
            else:
                hook.got.append((dict(self.headers.items()), body))
                hook.paths.append(self.path)
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def wpx(db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proctor]:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PROCTOR_PUBLIC_URL", "https://proctor.example.com/")
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "1")
    px = Proctor(db_url)
    px.policy.apply(POLICY.replace("PORT", str(receiver.port)))
    yield px
    px.close()


def tools(px: Proctor, ran: list[str]) -> dict[str, Any]:
    @px.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        ran.append(f"refund {order_id} {amount}")
        return f"refunded {amount} on {order_id}"

    @px.tool(agent="bot", wait=0)
    def wire(to: str) -> str:
        ran.append(f"wire {to}")
        return f"wired {to}"

    @px.tool(agent="bot", key="q")
    def lookup(q: str) -> str:
        ran.append(f"lookup {q}")
        raise TimeoutError("the ledger timed out")  # may have committed: unknown

    return {"refund": refund, "wire": wire, "lookup": lookup}


def outbox(px: Proctor) -> list[dict[str, Any]]:
    with px.store.read() as conn:
        rows = conn.execute(sa.select(notifications).order_by(notifications.c.created_at))
        return [dict(r) for r in rows.mappings()]


def pending_item(call: Any, *args: Any) -> str:
    with pytest.raises(ReviewPending) as info:
        call(*args)
    return str(info.value.item_id)


# -- each event, signed and verified --------------------------------------------------------


def test_an_approval_reaches_the_receiver_signed_with_what_resumes_the_run(
    wpx: Proctor, receiver: Receiver
) -> None:
    ran: list[str] = []
    t = tools(wpx, ran)
    with wpx.run(agent="bot", thread_id="thread-7") as run:
        item = pending_item(t["refund"], "A-1", 250.0)
    assert deliver_due(wpx.store).sent == 0  # opening an item is no webhook event
    wpx.reviews.approve(item, by="ana", note="customer verified")
    # queued by the approval's own transaction, before anything is sent
    (row,) = outbox(wpx)
    assert (row["status"], row["target"], row["source"]) == (
        "pending",
        "webhook:orchestrator",
        "webhook:review.approved",
    )
    assert deliver_due(wpx.store).sent == 1
    (event,) = receiver.events()
    (approved,) = records(wpx, "review.approve")
    headers = receiver.got[0][0]
    assert headers["Proctor-Event-Id"] == event["id"] == approved["id"]
    assert headers["Proctor-Event"] == "review.approved"
    assert headers["Content-Type"] == "application/json"
    assert event["seq"] == approved["seq"]
    assert {k: event[k] for k in ("type", "decision", "item_id", "agent", "tool", "by")} == {
        "type": "review.approved",
        "decision": "approved",
        "item_id": item,
        "agent": "bot",
        "tool": "refund",
        "by": "ana",
    }
    assert event["reason"] == "customer verified"
    assert event["review_reason"] == "Refunds over 100 need a person"
    assert event["rules"] == ["big"]
    assert event["run_id"] == run.id and event["trace_id"] == run.trace_id
    assert event["context"]["thread_id"] == "thread-7"
    assert event["call_key"] == "order_id=A-1" and event["call_id"]
    assert event["link"] == f"https://proctor.example.com/items/{item}"
    assert event["at"].endswith("Z")
    # what the orchestrator does next: resume, exactly once, and no more webhooks
    assert wpx.resume(item) == "refunded 250.0 on A-1"
    assert wpx.resume(item) == "refunded 250.0 on A-1"
    assert ran == ["refund A-1 250.0"]
    assert deliver_due(wpx.store).sent == 0 and len(receiver.got) == 1


def test_rejections_edits_and_votes_short_of_the_quorum(wpx: Proctor, receiver: Receiver) -> None:
    ran: list[str] = []
    t = tools(wpx, ran)
    rejected = pending_item(t["refund"], "A-2", 300.0)
    edited = pending_item(t["refund"], "A-3", 400.0)
    wired = pending_item(t["wire"], "acme")
    wpx.reviews.reject(rejected, by="ana", reason="a duplicate of A-1")
    wpx.reviews.edit(edited, by="ana", args={"amount": 150.0}, note="partial refund")
    wpx.reviews.approve(wired, by="ana")  # one vote of two: nothing is decided yet
    assert deliver_due(wpx.store).sent == 2
    wpx.reviews.approve(wired, by="ben")
    assert deliver_due(wpx.store).sent == 1
    # delivered concurrently, so in any order: the log's seq orders them
    by_type = {e["type"]: e for e in sorted(receiver.events(), key=lambda e: e["seq"])}
    assert list(by_type) == ["review.rejected", "review.edited", "review.approved"]
    assert by_type["review.rejected"]["item_id"] == rejected
    assert by_type["review.rejected"]["reason"] == "a duplicate of A-1"
    assert by_type["review.edited"]["detail"]["diff"] == {"amount": [400.0, 150.0]}
    assert by_type["review.edited"]["reason"] == "partial refund"
    approved = by_type["review.approved"]
    assert (approved["item_id"], approved["by"], approved["queue"]) == (wired, "ben", "finance")
    assert approved["detail"] == {"votes": 2, "quorum": 2}
    assert approved["call_key"] is None  # a call without a key has no key to name


def test_an_expired_item_is_told(wpx: Proctor, receiver: Receiver) -> None:
    wpx.policy.apply(
        POLICY.replace("PORT", str(receiver.port)).replace(
            "review_timeout: 1h", "review_timeout: 1s"
        )
    )
    item = pending_item(tools(wpx, [])["refund"], "A-4", 500.0)
    time.sleep(1.1)
    assert wpx.reviews.sweep() == [item]
    deliver_due(wpx.store)
    (event,) = receiver.events()
    assert (event["type"], event["decision"], event["item_id"]) == (
        "review.expired",
        "expired",
        item,
    )
    assert event["by"] == "proctor"
    assert "review timeout passed" in event["reason"]
    assert event["detail"] == {"on_timeout": "deny"}


def test_an_ambiguous_failure_tells_unknown_then_settled(wpx: Proctor, receiver: Receiver) -> None:
    ran: list[str] = []
    lookup = tools(wpx, ran)["lookup"]
    with pytest.raises(TimeoutError):
        lookup("Q-1")
    deliver_due(wpx.store)
    (unknown,) = receiver.events()
    assert (unknown["type"], unknown["decision"], unknown["call_key"]) == (
        "call.unknown",
        "unknown",
        "q=Q-1",
    )
    assert "may have committed" in unknown["reason"] and "ledger timed out" in unknown["reason"]
    assert unknown["agent"] == "bot" and unknown["tool"] == "lookup"
    with pytest.raises(InDoubt) as info:
        lookup("Q-1")  # never run blind: a person settles it
    assert info.value.call_id == unknown["call_id"]
    (item,) = wpx.reviews.list()
    wpx.reviews.settle(item.id, by="ana", happened=True, note="found in the ledger")
    deliver_due(wpx.store)
    settled = receiver.events()[-1]
    assert (settled["type"], settled["item_id"], settled["call_id"]) == (
        "review.settled",
        item.id,
        unknown["call_id"],
    )
    assert settled["detail"] == {"happened": True} and settled["by"] == "ana"
    assert ran == ["lookup Q-1"]


def test_a_runner_that_died_mid_call_is_told_unknown(
    wpx: Proctor, receiver: Receiver, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    child = spawn("die-after-effect", db_url, out)  # refunds A-1 20.0, then is killed
    assert json.loads(rest_of(child).splitlines()[0]) == {"event": "calling"}
    assert effects(out) == ["A-1 20.0"]
    time.sleep(1.2)  # its lease (1 s) lapses
    deliver_due(wpx.store)
    assert receiver.got == []  # nothing is known to be wrong until the sweeper looks
    (call_id,) = wpx.reviews.sweep()
    deliver_due(wpx.store)
    (event,) = receiver.events()
    (logged,) = records(wpx, "call.unknown")
    assert (event["type"], event["call_id"], event["id"]) == ("call.unknown", call_id, logged["id"])
    assert event["call_key"] == "order_id=A-1"
    assert "runner stopped answering" in event["reason"]


def test_an_approved_call_whose_runner_went_silent_is_told_unknown(
    wpx: Proctor, receiver: Receiver
) -> None:
    item = pending_item(tools(wpx, [])["refund"], "A-9", 250.0)
    wpx.reviews.approve(item, by="ana")
    # a runner on another host claims it and its host goes down: it never renews
    runner = "elsewhere:4242:99:0123456789ab:cafe"
    assert wpx.backend.claim(item, None, runner, "e" * 32).state == "claimed"
    time.sleep(1.2)
    assert wpx.reviews.sweep() == [item]
    deliver_due(wpx.store)
    approved, unknown = sorted(receiver.events(), key=lambda e: e["seq"])
    assert approved["type"] == "review.approved"
    assert (unknown["type"], unknown["item_id"], unknown["call_key"]) == (
        "call.unknown",
        item,
        "order_id=A-9",
    )
    assert "lease expired" in unknown["reason"]
    assert unknown["detail"]["owner"] == runner


# -- delivery ---------------------------------------------------------------------------------


def test_a_failing_receiver_gets_retries_with_one_event_id(
    wpx: Proctor, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    item = pending_item(tools(wpx, [])["refund"], "A-5", 900.0)
    wpx.reviews.reject(item, by="ana", reason="no")
    now = time.time()
    first = deliver_due(wpx.store, now=now)
    assert (first.sent, first.retrying) == (0, 1)
    (row,) = outbox(wpx)
    assert "HTTP 500" in row["last_error"] and row["next_at"] > now
    assert deliver_due(wpx.store, now=now).sent == 0  # not due again yet
    assert deliver_due(wpx.store, now=now + 3600).retrying == 1
    assert deliver_due(wpx.store, now=now + 7200).sent == 1
    (event,) = receiver.events()
    (row,) = outbox(wpx)
    assert (row["status"], row["attempts"], row["failures"]) == ("sent", 3, 2)
    assert event["item_id"] == item


def test_a_receiver_that_never_answers_is_marked_failed_and_logged(
    wpx: Proctor, receiver: Receiver
) -> None:
    receiver.fail_first = 10 * MAX_ATTEMPTS
    wpx.reviews.reject(pending_item(tools(wpx, [])["refund"], "A-6", 900.0), by="ana", reason="no")
    now = time.time()
    for attempt in range(MAX_ATTEMPTS):
        done = deliver_due(wpx.store, now=now + attempt * 3600)
        assert done.failed == (1 if attempt == MAX_ATTEMPTS - 1 else 0)
    (row,) = outbox(wpx)
    assert row["status"] == "failed"
    (failed,) = records(wpx, "notification.failed")
    assert failed["target"] == "webhook:orchestrator" and failed["attempts"] == MAX_ATTEMPTS


def test_without_its_secret_nothing_is_posted_unsigned(
    wpx: Proctor, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    wpx.reviews.reject(pending_item(tools(wpx, [])["refund"], "A-7", 900.0), by="ana", reason="no")
    monkeypatch.delenv("TEST_WEBHOOK_SECRET")
    assert deliver_due(wpx.store).retrying == 1
    (row,) = outbox(wpx)
    assert row["last_error"] == "environment variable TEST_WEBHOOK_SECRET is not set"
    assert receiver.got == []
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)  # set again: sent on the next round
    assert deliver_due(wpx.store, now=time.time() + 3600).sent == 1
    assert receiver.events()[0]["type"] == "review.rejected"


def test_webhooks_go_without_the_notify_extra(
    wpx: Proctor, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without apprise an alert's message waits in the outbox; a webhook needs no apprise."""
    import importlib.util

    from proctor.telemetry import notifications as outbox_module

    with wpx.store.write() as tx:
        outbox_module.enqueue(
            tx,
            source="alert:x",
            names=["oncall"],
            targets={"oncall": ["json://127.0.0.1:9/x"]},
            severity="warning",
            title="t",
            body="b",
        )
    wpx.reviews.reject(pending_item(tools(wpx, [])["refund"], "A-10", 900.0), by="ana", reason="no")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "apprise" else real(name, *a)
    )
    assert deliver_due(wpx.store).sent == 1
    assert receiver.events()[0]["type"] == "review.rejected"
    waiting = [r for r in outbox(wpx) if r["status"] == "pending"]
    assert [(r["source"], r["attempts"]) for r in waiting] == [("alert:x", 0)]


def test_the_secret_is_stored_nowhere(wpx: Proctor, receiver: Receiver) -> None:
    wpx.reviews.reject(pending_item(tools(wpx, [])["refund"], "A-8", 900.0), by="ana", reason="no")
    deliver_due(wpx.store)
    assert receiver.events()
    with wpx.store.read() as conn:
        stored = [
            *conn.execute(sa.select(notifications.c.url, notifications.c.body)).all(),
            *conn.execute(sa.select(policies.c.text)).all(),
            *conn.execute(sa.select(audit_log.c.record)).all(),
        ]
    text = "\n".join(str(v) for row in stored for v in row)
    assert "${TEST_WEBHOOK_SECRET}" in text and SECRET not in text


def test_each_webhook_gets_only_its_events_agents_and_queues(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("OTHER_SECRET", "another-secret")
    policy = POLICY.replace("PORT", str(receiver.port)) + (
        f"  - name: finance-only\n    url: {receiver.url}?only=finance\n"
        "    secret: ${OTHER_SECRET}\n    queues: [finance]\n"
        f"  - name: rejections\n    url: {receiver.url}?only=rejections\n"
        "    secret: ${OTHER_SECRET}\n    events: [review.rejected]\n"
        f"  - name: someone-else\n    url: {receiver.url}?only=other\n"
        "    secret: ${OTHER_SECRET}\n    agents: [other-bot]\n"
    )
    with Proctor(db_url) as px:
        px.policy.apply(policy)
        t = tools(px, [])
        px.reviews.approve(pending_item(t["refund"], "B-1", 200.0), by="ana")
        px.reviews.reject(pending_item(t["wire"], "acme"), by="ana", reason="no")
        assert deliver_due(px.store).sent == 4
    got: dict[str, list[str]] = {}
    for path, (headers, body) in zip(receiver.paths, receiver.got, strict=True):
        name = path.partition("only=")[2] or "orchestrator"
        secret = SECRET if name == "orchestrator" else "another-secret"
        with pytest.raises(WebhookError):  # each webhook signs with its own secret
            verify_webhook(body, headers, "another-secret" if secret == SECRET else SECRET)
        event = verify_webhook(body, headers, secret)
        got.setdefault(name, []).append(event["type"] + "/" + event["queue"])
    assert sorted(got.pop("orchestrator")) == [
        "review.approved/billing",
        "review.rejected/finance",
    ]
    # finance-only: the rejected wire; rejections: the same rejection; other: nothing
    assert got == {
        "finance": ["review.rejected/finance"],
        "rejections": ["review.rejected/finance"],
    }


def test_decisions_without_webhooks_queue_nothing(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY.split("webhooks:")[0])
        t = tools(px, [])
        px.reviews.approve(pending_item(t["refund"], "C-1", 200.0), by="ana")
        with pytest.raises(TimeoutError):
            t["lookup"]("C-2")
        assert outbox(px) == []


def test_the_server_posts_a_remote_reviewers_decision(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: an agent and a reviewer talk to ``proctor serve``; the server's own
    delivery loop posts the signed webhook within its round."""
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)  # the server process reads it
    server = Server(db_url, free_port())
    server.start()
    try:
        import httpx

        admin = {"Authorization": f"Bearer {server.admin}"}
        policy = POLICY.replace("PORT", str(receiver.port))
        httpx.post(f"{server.url}/api/v1/policies", headers=admin, json={"text": policy})
        with (
            server.client(server.token("agent", "bot", agents="bot")) as agent,
            server.client(server.token("reviewer", "ana", queues="billing")) as ana,
        ):
            item = pending_item(tools(agent, [])["refund"], "R-1", 700.0)
            ana.reviews.approve(item, by="ana")
            deadline = time.monotonic() + 15
            while not receiver.got:
                assert time.monotonic() < deadline, "the server never posted the webhook"
                time.sleep(0.05)
        (event,) = receiver.events()
        assert (event["type"], event["item_id"], event["by"]) == ("review.approved", item, "ana")
    finally:
        server.stop()


# -- verification -----------------------------------------------------------------------------


def signed(event: dict[str, Any], secret: str = SECRET, at: float | None = None) -> Any:
    body = orjson.dumps(event)
    stamp = int(time.time() if at is None else at)
    return body, {"proctor-signature": sign(body, secret, stamp)}


def test_verify_returns_the_event_of_a_good_signature() -> None:
    body, headers = signed({"id": "e1", "type": "review.approved"})
    assert verify_webhook(body, headers, SECRET) == {"id": "e1", "type": "review.approved"}
    assert verify_webhook(body.decode(), headers, SECRET)["id"] == "e1"
    # while a secret is rotated, either the old or the new one verifies
    assert verify_webhook(body, headers, ["the-new-secret", SECRET])["id"] == "e1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("body", "signature does not match"),
        ("secret", "signature does not match"),
        ("missing", "no Proctor-Signature header"),
        ("garbled", "needs t= and v1="),
        ("stamp", "timestamp is not a number"),
    ],
)
def test_verify_refuses_a_bad_signature(change: str, message: str) -> None:
    body, headers = signed({"id": "e2", "amount": 100})
    secret = SECRET
    if change == "body":
        body = body.replace(b"100", b"900")
    elif change == "secret":
        secret = "not-the-secret"
    elif change == "missing":
        headers = {}
    elif change == "garbled":
        headers = {"Proctor-Signature": "sha256=abc"}
    else:
        headers = {"Proctor-Signature": "t=yesterday,v1=abc"}
    with pytest.raises(WebhookError, match=message):
        verify_webhook(body, headers, secret)


def test_verify_refuses_an_old_or_future_timestamp() -> None:
    now = float(int(time.time()))  # whole seconds, as the header carries them
    body, old = signed({"id": "e3"}, at=now - 301)
    with pytest.raises(WebhookError, match=r"301 s old \(tolerance 300 s\)"):
        verify_webhook(body, old, SECRET, now=now)
    assert verify_webhook(body, old, SECRET, tolerance=600, now=now)["id"] == "e3"
    body, future = signed({"id": "e4"}, at=now + 3600)
    with pytest.raises(WebhookError, match="in the future"):
        verify_webhook(body, future, SECRET, now=now)
    with pytest.raises(WebhookError, match="no secret"):
        verify_webhook(body, future, "")


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook", "message", "line"),
    [
        ("{name: x, url: 'http://h/x', secret: whsec-literal}", "names an environment variable", 9),
        ("{name: x, url: 'ftp://h/x', secret: '${S}'}", "not an http:// or https:// URL", 9),
        (
            "{name: x, url: 'http://h/x', secret: '${S}', events: [review.aproved]}",
            "should be 'review.approved'",
            9,
        ),
        ("{name: x, url: 'http://h/x', secret: '${S}', queues: [nowhere]}", "unknown queue", 9),
        ("{name: x, url: 'http://h/x'}", "secret", 9),
    ],
)
def test_bad_webhooks_are_refused_with_a_position(hook: str, message: str, line: int) -> None:
    policy = (
        "policy: p\nqueues: {billing: {}}\nagents: {bot: {tools: [t]}}\n"
        "rules: [{id: r, when: 'true', decide: allow}]\n\n\n\nwebhooks:\n  - " + hook + "\n"
    )
    with pytest.raises(PolicyError, match=message) as info:
        _compile(policy)
    assert info.value.line == line


def _compile(text: str) -> None:
    from proctor.policy import compile_policy

    compile_policy(text)


def test_duplicate_webhook_names_are_refused() -> None:
    hook = "  - {name: x, url: 'http://h/x', secret: '${S}'}\n"
    policy = "policy: p\nwebhooks:\n" + hook + hook
    with pytest.raises(PolicyError, match="duplicate webhook name 'x'") as info:
        _compile(policy)
    assert info.value.line == 4


def test_a_policy_without_webhooks_keeps_its_version() -> None:
    from proctor.policy import compile_policy

    text = POLICY.split("webhooks:")[0]
    assert compile_policy(text).version == compile_policy(text + "webhooks: []\n").version


def test_denied_calls_are_no_webhook_event(wpx: Proctor) -> None:
    @wpx.tool(agent="bot", wait=0)
    def delete_account(user: str) -> None:
        raise AssertionError("never runs")

    with pytest.raises(Denied):
        delete_account("u-1")
    assert outbox(wpx) == []


def test_the_example_resumes_its_agent_from_the_webhook() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "webhooks_resume.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith("waiting for a person: item ")
    assert lines[1].startswith("webhook review.approved for item ")
    assert "by lee (thread support-thread-42, call order_id=A-1001)" in lines[1]
    assert lines[2:] == ["refunded 250.00 on A-1001"]

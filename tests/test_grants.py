"""Grants under attack and failure: only the claim's holder records an outcome, a silent
runner's lease makes its action in doubt wherever it ran, every wait ends, and an outcome
write that fails is retried within a bound."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from tests.asgi_client import AppClient
from tests.conftest import records

from proctor import (
    Action,
    InDoubt,
    InvalidRequest,
    Proctor,
    ReviewPending,
    StillRunning,
    StoreError,
)
from proctor.audit.verify import verify
from proctor.backends import verdict_to_wire
from proctor.server.app import create_app
from proctor.server.auth import create_token

POLICY = """
policy: grants
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents:
  support-bot: {tools: [issue_refund, lookup_order]}
  other-bot: {tools: [issue_refund]}
rules:
  - {id: ok, when: 'tool in ["issue_refund", "lookup_order"]', decide: allow}
  - {id: big, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review}
  - {id: no-lookups-of-x, when: 'tool == "lookup_order" && args.order_id == "X"', decide: deny}
"""
REFUND = {"agent": "support-bot", "tool": "issue_refund", "args": {"order_id": "A-1"}}
FOREIGN_RUNNER = "elsewhere:4242:99:0123456789ab:cafe"  # another host: no pid can be checked


def _wait_for(px: Proctor, item_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while px.reviews.get(item_id).status != status:
        assert time.monotonic() < deadline, f"item {item_id} never became {status}"
        time.sleep(0.02)


class Refunds:
    """A tool with a side effect the test can count."""

    def __init__(self, px: Proctor) -> None:
        self.effects: list[float] = []
        self.gate = threading.Event()
        self.gate.set()

        @px.tool(agent="support-bot", name="issue_refund", wait=0)
        def refund(order_id: str, amount: float) -> dict[str, Any]:
            self.gate.wait(30)
            self.effects.append(amount)
            return {"refunded": amount, "order": order_id}

        self.call = refund

    def pending(self, amount: float = 250.0) -> str:
        with pytest.raises(ReviewPending) as info:
            self.call("A-1", amount)
        return info.value.item_id


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "1")
    return 1.0


@pytest.fixture
def gpx(db_url: str, lease: float) -> Iterator[Proctor]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        yield px


# -- 1. only the holder of the claim records the outcome -------------------------------------


@dataclass
class Api:
    px: Proctor
    client: AppClient
    tokens: dict[str, str]

    def post(self, path: str, body: Any, as_: str) -> Any:
        return self.client.post(
            f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"}
        )


@pytest.fixture
def api(gpx: Proctor) -> Iterator[Api]:
    made = {
        "agent": create_token(gpx.store, role="agent", name="bot", agents=["support-bot"]),
        "other": create_token(gpx.store, role="agent", name="bot2", agents=["other-bot"]),
    }
    client = AppClient(create_app(gpx, sweep=False))
    try:
        yield Api(gpx, client, {k: t for k, (_, t) in made.items()})
    finally:
        client.close()


def _item_outcome(item_id: str, token: str, agent: str = "support-bot") -> dict[str, Any]:
    verdict = {
        "decision": {
            "decision": "allow",
            "rule_ids": ["big"],
            "reason": "",
            "policy_version": None,
        },
        "id": "d" * 32,
        "seq": 1,
    }
    return {
        "verdict": verdict,
        "action": {**REFUND, "agent": agent, "args": {"order_id": "A-1", "amount": 250.0}},
        "duration": 0.1,
        "item_id": item_id,
        "has_result": True,
        "result": {"refunded": 999999},
        "claim_token": token,
    }


def test_an_agent_cannot_finish_a_review_item_it_does_not_hold(api: Api) -> None:
    px = api.px
    refunds = Refunds(px)
    denied_before = len(records(px, "access.denied"))

    # Its own pending item, to skip the review: refused, still pending.
    pending = refunds.pending()
    r = api.post("/outcomes", _item_outcome(pending, "f" * 32), "agent")
    assert r.status_code == 403, r.text
    assert px.reviews.get(pending).status == "pending"

    # Its own rejected item: refused, still rejected.
    px.reviews.reject(pending, by="ana", reason="no")
    r = api.post("/outcomes", _item_outcome(pending, "f" * 32), "agent")
    assert r.status_code == 403, r.text
    assert px.reviews.get(pending).status == "rejected"

    # Another agent's approved item, with a forged result: refused, still approved.
    approved = refunds.pending(300.0)
    px.reviews.approve(approved, by="ana")
    r = api.post("/outcomes", _item_outcome(approved, "f" * 32, agent="other-bot"), "other")
    assert r.status_code == 403, r.text
    # ... and by the right agent, without holding the claim: refused too.
    r = api.post("/outcomes", _item_outcome(approved, "f" * 32), "agent")
    assert r.status_code == 403, r.text
    assert px.reviews.get(approved).status == "approved"

    # Every refusal is in the log, naming who tried.
    denied = records(px, "access.denied")[denied_before:]
    assert len(denied) == 4
    assert {d["path"] for d in denied} == {"/api/v1/outcomes"}
    assert {d["name"] for d in denied} == {"bot", "bot2"}

    # The real agent then runs it: the tool body runs, the forged result is nowhere.
    assert px.resume(approved) == {"refunded": 300.0, "order": "A-1"}
    assert refunds.effects == [300.0]
    assert px.reviews.get(approved).result == {"refunded": 300.0, "order": "A-1"}
    assert verify(px.store).ok


def test_the_holder_records_once_and_a_retry_changes_nothing(api: Api) -> None:
    px = api.px
    item = Refunds(px).pending()
    px.reviews.approve(item, by="ana")
    token = "a1" * 16
    r = api.post(f"/reviews/{item}/claim", {"token": token}, "agent")
    assert r.json() == {"state": "claimed", "lease_seconds": 1.0, "held_by": [], "reason": None}
    # The same token claiming again (a retry after a lost response) gets its claim back.
    assert api.post(f"/reviews/{item}/claim", {"token": token}, "agent").json()["state"] == (
        "claimed"
    )
    assert api.post(f"/reviews/{item}/claim", {"token": "b2" * 16}, "agent").json()["state"] == (
        "busy"
    )
    assert api.post(f"/reviews/{item}/lease", {"token": token}, "agent").json() == {"held": True}
    assert api.post(f"/reviews/{item}/lease", {"token": "b2" * 16}, "agent").json() == {
        "held": False
    }

    body = _item_outcome(item, token)
    body["result"] = {"refunded": 250.0}
    assert api.post("/outcomes", body, "agent").status_code == 200
    assert api.post("/outcomes", body, "agent").status_code == 200  # a retry: nothing new
    outcomes = [o for o in records(px, "outcome") if o.get("review_item") == item]
    assert len(outcomes) == 1
    assert px.reviews.get(item).status == "done"
    assert px.reviews.get(item).result == {"refunded": 250.0}
    # Someone else's token cannot overwrite it.
    body["claim_token"] = "c3" * 16
    body["result"] = {"refunded": 1.0}
    assert api.post("/outcomes", body, "agent").status_code == 403
    assert px.reviews.get(item).result == {"refunded": 250.0}


def test_a_plain_outcome_must_name_a_recorded_allow_decision(api: Api) -> None:
    px = api.px
    denied = px.gate.decide(Action("support-bot", "lookup_order", {"order_id": "X"}), None)
    assert denied.decision.decision == "deny"
    body = {
        "verdict": verdict_to_wire(denied),
        "action": {"agent": "support-bot", "tool": "lookup_order", "args": {"order_id": "X"}},
        "duration": 0.1,
    }
    r = api.post("/outcomes", body, "agent")
    assert r.status_code == 409, r.text
    assert records(px, "access.denied")[-1]["status"] == 409
    # A forged "on_error" cannot open a review item: what the decision said comes from the log.
    allowed = px.gate.decide(Action("support-bot", "lookup_order", {"order_id": "A"}), None)
    wire = verdict_to_wire(allowed)
    wire["decision"]["on_error"] = True
    body = {
        "verdict": wire,
        "action": {"agent": "support-bot", "tool": "lookup_order", "args": {"order_id": "A"}},
        "duration": 0.1,
        "error_type": "Timeout",
        "error": "upstream timed out",
    }
    r = api.post("/outcomes", body, "agent")
    assert r.status_code == 200, r.text
    assert r.json() == {"item_id": None}
    assert px.reviews.list(status="pending") == []


# -- 2. leases: a runner that stops answering, anywhere, leaves its action in doubt -----------


def test_a_silent_runner_on_another_host_goes_in_doubt_and_resume_does_not_hang(
    gpx: Proctor,
) -> None:
    refunds = Refunds(gpx)
    item = refunds.pending()
    gpx.reviews.approve(item, by="ana")
    # A runner on another host claims it, then its host goes down: it never renews.
    assert gpx.backend.claim(item, None, FOREIGN_RUNNER, "e" * 32).state == "claimed"
    started = time.monotonic()
    with pytest.raises(InDoubt):
        gpx.resume(item, wait=30)
    assert time.monotonic() - started < 6  # the lease (1 s) plus one re-check
    assert gpx.reviews.get(item).status == "in_doubt"
    assert refunds.effects == []
    (why,) = [r for r in records(gpx, "grant.in_doubt") if r["item_id"] == item]
    assert "lease expired" in why["why"]
    assert why["owner"] == FOREIGN_RUNNER


def test_the_sweeper_finds_lapsed_leases(gpx: Proctor) -> None:
    item = Refunds(gpx).pending()
    gpx.reviews.approve(item, by="ana")
    gpx.backend.claim(item, None, FOREIGN_RUNNER, "e" * 32)
    assert gpx.reviews.sweep() == []
    time.sleep(1.2)
    assert gpx.reviews.sweep() == [item]
    assert gpx.reviews.get(item).status == "in_doubt"


def test_a_live_runner_keeps_its_lease_and_others_wait_with_a_deadline(gpx: Proctor) -> None:
    refunds = Refunds(gpx)
    item = refunds.pending()
    gpx.reviews.approve(item, by="ana")
    refunds.gate.clear()  # the body runs for as long as the test says: 3 leases long
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(gpx.resume(item)))
    runner.start()
    try:
        _wait_for(gpx, item, "executing")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            gpx.reviews.sweep()
            assert gpx.reviews.get(item).status == "executing"  # renewed, never lapsed
            time.sleep(0.2)
        started = time.monotonic()
        with Proctor(gpx.database) as other:
            Refunds(other)
            with pytest.raises(StillRunning) as info:
                other.resume(item, wait=0.5)
        assert info.value.item_id == item
        assert time.monotonic() - started < 3
    finally:
        refunds.gate.set()
        runner.join(10)
    assert results == [{"refunded": 250.0, "order": "A-1"}]
    assert gpx.resume(item) == results[0]  # the recorded result: not run again
    assert refunds.effects == [250.0]


def test_a_late_outcome_from_the_holder_settles_the_doubt(gpx: Proctor) -> None:
    item = Refunds(gpx).pending()
    gpx.reviews.approve(item, by="ana")
    gpx.backend.claim(item, None, FOREIGN_RUNNER, "e" * 32)
    time.sleep(1.2)
    gpx.reviews.sweep()
    assert gpx.reviews.get(item).status == "in_doubt"
    grant = gpx.backend.item(item)
    from proctor.approvals import _grant_verdict

    gpx.backend.record_outcome(
        _grant_verdict(grant),
        Action("support-bot", "issue_refund", {"order_id": "A-1", "amount": 250.0}),
        None,
        error=None,
        duration=1.0,
        item_id=item,
        result={"refunded": 250.0},
        claim_token="e" * 32,
    )
    assert gpx.reviews.get(item).status == "done"
    assert [r["outcome"] for r in records(gpx, "grant.settled")] == ["done"]


def test_approving_an_item_in_doubt_again_needs_a_confirmation(gpx: Proctor) -> None:
    refunds = Refunds(gpx)
    item = refunds.pending()
    gpx.reviews.approve(item, by="ana")
    gpx.backend.claim(item, None, FOREIGN_RUNNER, "e" * 32)
    time.sleep(1.2)
    gpx.reviews.sweep()
    with pytest.raises(InvalidRequest, match="confirm_not_run"):
        gpx.reviews.approve(item, by="ana")
    assert gpx.reviews.get(item).status == "in_doubt"
    gpx.reviews.approve(item, by="ana", note="not in the ledger", confirm_not_run=True)
    (again,) = [r for r in records(gpx, "review.approve") if r.get("rerun_in_doubt")]
    assert again["confirmed_not_run"] is True
    assert again["previous_owner"] == FOREIGN_RUNNER
    # The old runner's token no longer counts; the new run goes through once.
    assert gpx.resume(item) == {"refunded": 250.0, "order": "A-1"}
    assert refunds.effects == [250.0]


# -- 3. an outcome write that fails is retried, within the lease ----------------------------


class WriteLock:
    """Another process's transaction holding the database's write lock (SQLite) or the
    chain's row lock (PostgreSQL)."""

    def __init__(self, px: Proctor) -> None:
        store = px.store
        if store.dialect == "sqlite":
            assert store.sqlite_path is not None
            self.sqlite = sqlite3.connect(store.sqlite_path, isolation_level=None)
            self.sqlite.execute("BEGIN IMMEDIATE")
            self.pg = None
        else:
            url = sa.engine.make_url(store.url).set(drivername="postgresql")
            self.pg = psycopg.connect(url.render_as_string(hide_password=False))
            self.pg.execute("SELECT head_seq FROM proctor_state WHERE id = 1 FOR UPDATE")
            self.sqlite = None

    def release(self) -> None:
        if self.sqlite is not None:
            self.sqlite.execute("ROLLBACK")
            self.sqlite.close()
        if self.pg is not None:
            self.pg.rollback()
            self.pg.close()


@pytest.fixture
def busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCTOR_BUSY_TIMEOUT_MS", "200")
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "3")


def _run_while_locked(px: Proctor, hold_for: float) -> tuple[str, list[Any]]:
    refunds = Refunds(px)
    item = refunds.pending()
    px.reviews.approve(item, by="ana")
    refunds.gate.clear()
    answers: list[Any] = []

    def resume() -> None:
        try:
            answers.append(px.resume(item))
        except StoreError as exc:
            answers.append(exc)

    runner = threading.Thread(target=resume)
    runner.start()
    _wait_for(px, item, "executing")
    lock = WriteLock(px)
    refunds.gate.set()  # the body ends while the outcome cannot be written
    time.sleep(hold_for)
    lock.release()
    runner.join(15)
    assert refunds.effects == [250.0]
    return item, answers


def test_an_outcome_write_that_fails_for_a_while_is_retried(db_url: str, busy: None) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        item, answers = _run_while_locked(px, hold_for=1.0)
        assert answers == [{"refunded": 250.0, "order": "A-1"}]
        assert px.reviews.get(item).status == "done"


def test_an_outcome_that_cannot_be_written_leaves_the_item_in_doubt(
    db_url: str, busy: None
) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        item, answers = _run_while_locked(px, hold_for=4.5)
        (error,) = answers
        assert isinstance(error, StoreError)
        assert "in doubt" in str(error)
        time.sleep(0.5)  # the lease (3 s from the body's end) has lapsed by now
        started = time.monotonic()
        with Proctor(db_url) as other:
            Refunds(other)
            with pytest.raises(InDoubt):
                other.resume(item)
        assert time.monotonic() - started < 5
        assert px.reviews.get(item).status == "in_doubt"


def _in_doubt(px: Proctor) -> str:
    item = Refunds(px).pending()
    px.reviews.approve(item, by="ana")
    px.backend.claim(item, None, FOREIGN_RUNNER, "e" * 32)
    time.sleep(1.2)
    px.reviews.sweep()
    assert px.reviews.get(item).status == "in_doubt"
    return item


def test_the_confirmation_is_asked_by_the_api_the_cli_and_the_console(gpx: Proctor) -> None:
    from tests.test_cli import proctor

    _, admin = create_token(gpx.store, role="admin", name="root")
    client = AppClient(create_app(gpx, sweep=False, session_secret="s"))
    auth = {"Authorization": f"Bearer {admin}"}
    try:
        # API
        item = _in_doubt(gpx)
        r = client.post(f"/api/v1/reviews/{item}/approve", json={}, headers=auth)
        assert r.status_code == 422 and "in doubt" in r.json()["message"]
        r = client.post(
            f"/api/v1/reviews/{item}/approve", json={"confirm_not_run": True}, headers=auth
        )
        assert r.status_code == 200 and r.json()["status"] == "approved"
        # CLI
        item = _in_doubt(gpx)
        db = ["--database", str(gpx.database)]
        done = proctor("queue", "approve", item, "--by", "ana", *db)
        assert done.returncode == 2 and "--confirm-not-run" in done.stderr
        assert "Traceback" not in done.stderr
        done = proctor("queue", "approve", item, "--by", "ana", "--confirm-not-run", *db)
        assert done.returncode == 0 and "approved" in done.stdout
        # console: the box must be ticked
        item = _in_doubt(gpx)
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        client.post("/login", data={"csrf": csrf.group(1), "token": admin})
        page = client.get(f"/items/{item}").text
        assert 'name="confirm_not_run"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        client.post(f"/items/{item}/approve", data={"csrf": csrf.group(1)})
        assert gpx.reviews.get(item).status == "in_doubt"
        client.post(
            f"/items/{item}/approve", data={"csrf": csrf.group(1), "confirm_not_run": "yes"}
        )
        assert gpx.reviews.get(item).status == "approved"
    finally:
        client.close()
    confirmed = [r for r in records(gpx, "review.approve") if r.get("rerun_in_doubt")]
    assert len(confirmed) == 3 and all(r["confirmed_not_run"] for r in confirmed)

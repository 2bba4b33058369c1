"""A real `proctor serve` process on a loopback port, driven by the remote SDK."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.test_review_processes import rest_of

from proctor import (
    Denied,
    Forbidden,
    NotFound,
    Option,
    Proctor,
    Rejected,
    ReviewItem,
    ReviewPending,
)

CHILD = str(Path(__file__).with_name("remote_child.py"))
POLICY = """
policy: remote-test
defaults: {decision: deny, queue: billing, review_timeout: 60s}
queues: {billing: {}, finance: {}, qa: {}}
agents:
  support-bot: {tools: [issue_refund, lookup_order, send_reply, flaky]}
rules:
  - {id: ok, when: 'tool in ["issue_refund", "lookup_order"]', decide: allow}
  - {id: big, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review,
     reason: Refunds over 100 need a billing lead}
  - {id: replies, when: 'tool == "send_reply"', decide: allow, sample: 1.0, queue: qa}
  - {id: flaky, when: 'tool == "flaky"', decide: allow, on_error: review}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    db: str
    port: int
    process: subprocess.Popen[str] | None = None
    admin: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from proctor.cli import main; main()",
                "serve",
                "--port",
                str(self.port),
                "--database",
                self.db,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        for _ in range(10):
            line = self.process.stdout.readline()
            if line.strip().startswith("pxt_"):
                self.admin = line.strip()
            if "serving on" in line:
                break
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()

    def token(self, role: str, name: str, **limits: str) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/tokens",
            headers={"Authorization": f"Bearer {self.admin}"},
            json={"role": role, "name": name, **{k: v.split(",") for k, v in limits.items()}},
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def client(self, token: str) -> Proctor:
        return Proctor(url=self.url, token=token, timeout=5.0)


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    srv = Server(db_url, free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def first_pending(px: Proctor, queue: str | None = None) -> ReviewItem:
    for _ in range(400):
        items = px.reviews.list(queue=queue)
        if items:
            return items[0]
        time.sleep(0.025)
    raise AssertionError("no pending item")


def in_thread(fn: Callable[[], Any]) -> Future[Any]:
    return ThreadPoolExecutor(max_workers=1).submit(fn)


def test_every_path_through_a_real_server(server: Server) -> None:
    agent = server.client(server.token("agent", "runner", agents="support-bot"))
    ana = server.client(server.token("reviewer", "ana", queues="billing,qa"))
    fin = server.client(server.token("reviewer", "fin", queues="finance"))
    author = server.client(server.token("policy_author", "pat"))
    effects: list[Any] = []
    lock = threading.Lock()

    @agent.tool(agent="support-bot")
    def issue_refund(order_id: str, amount: float) -> str:
        with lock:
            effects.append((order_id, amount))
        return f"refunded {amount}"

    @agent.tool(agent="support-bot", wait=0, name="issue_refund")
    def refund_later(order_id: str, amount: float) -> str:
        with lock:
            effects.append((order_id, amount))
        return f"refunded {amount}"

    @agent.tool(agent="support-bot")
    def delete_account(customer: str) -> None:
        raise AssertionError("never")

    @agent.tool(agent="support-bot")
    def send_reply(text: str) -> str:
        return "sent"

    @agent.tool(agent="support-bot")
    def flaky(n: int) -> int:
        raise TimeoutError("upstream")

    with pytest.raises(Denied, match="no policy"):  # fail closed before any policy
        issue_refund("A-0", 1.0)
    author.policy.apply(POLICY, message="first")
    assert issue_refund("A-1", 20.0) == "refunded 20.0"  # allow
    with pytest.raises(Denied, match="envelope"):  # deny
        delete_account("C-1")
    # review -> approve (the agent blocks, the reviewer releases it)
    call = in_thread(lambda: issue_refund("A-2", 300.0))
    item = first_pending(ana, "billing")
    with pytest.raises(Forbidden):
        agent.reviews.approve(item.id)  # an agent can never decide a review
    approved = ana.reviews.approve(item.id, note="ok")
    assert approved.decided_by == "ana"
    assert call.result(timeout=20) == "refunded 300.0"
    # reject
    call = in_thread(lambda: issue_refund("A-3", 400.0))
    item = first_pending(ana, "billing")
    ana.reviews.reject(item.id, reason="duplicate")
    with pytest.raises(Rejected, match="duplicate"):
        call.result(timeout=20)
    # edit
    call = in_thread(lambda: issue_refund("A-4", 500.0))
    item = first_pending(ana, "billing")
    ana.reviews.edit(item.id, args={"amount": 120.0})
    assert call.result(timeout=20) == "refunded 120.0"
    # escalate to a queue ana does not own, decided there by fin
    with pytest.raises(ReviewPending) as info:
        refund_later("A-5", 600.0)
    ana.reviews.escalate(info.value.item_id, to="finance", note="over my limit")
    with pytest.raises(NotFound):  # not her queue any more: she cannot even see it
        ana.reviews.approve(info.value.item_id)
    fin.reviews.approve(info.value.item_id)
    assert agent.resume(info.value.item_id) == agent.resume(info.value.item_id) == "refunded 600.0"
    # choice
    call = in_thread(
        lambda: agent.choose(
            [
                Option(issue_refund, {"order_id": "A-6", "amount": 50.0}, 0.6, ["goodwill"]),
                Option(issue_refund, {"order_id": "A-6", "amount": 30.0}, 0.8, []),
            ],
            agent="support-bot",
        )
    )
    item = first_pending(ana, "billing")
    assert item.kind == "choice" and len(item.options or []) == 2
    ana.reviews.choose(item.id, option=1)
    assert call.result(timeout=20) == "refunded 30.0"
    # sample and exception items
    assert send_reply("hello") == "sent"
    assert first_pending(ana, "qa").kind == "sample"
    with pytest.raises(TimeoutError):
        flaky(1)
    exception = [i for i in ana.reviews.list(queue="billing") if i.kind == "exception"]
    assert exception and exception[0].detail == "upstream"
    # held run: a pending approval holds the rest of the run
    with agent.run(agent="support-bot"):
        with pytest.raises(ReviewPending):
            refund_later("A-7", 700.0)
        with pytest.raises(Denied, match="is held"):
            refund_later("A-8", 1.0)
    assert sorted(effects) == sorted(
        [("A-1", 20.0), ("A-2", 300.0), ("A-4", 120.0), ("A-5", 600.0), ("A-6", 30.0)]
    )
    verified = httpx.get(
        f"{server.url}/api/v1/audit/verify", headers={"Authorization": f"Bearer {server.admin}"}
    ).json()
    assert verified["ok"], verified
    for px in (agent, ana, fin, author):
        px.close()


def test_sigkill_of_the_server_while_an_agent_waits(server: Server, tmp_path: Path) -> None:
    admin = server.client(server.admin)
    admin.policy.apply(POLICY)
    agent_token = server.token("agent", "runner", agents="support-bot")
    reviewer = server.token("reviewer", "ana", queues="billing")
    out = tmp_path / "agent"
    child = subprocess.Popen(
        [sys.executable, CHILD, server.url, agent_token, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert json.loads(child.stdout.readline())["event"] == "calling"
    ana = server.client(reviewer)
    item = first_pending(ana, "billing")
    server.kill()  # the agent's long-poll drops; it keeps retrying
    time.sleep(1.0)
    server.start()  # same port, same database: nothing was lost
    assert ana.reviews.get(item.id).status == "pending"
    ana.reviews.approve(item.id)
    out_text = rest_of(child)
    events = [json.loads(line) for line in out_text.splitlines()]
    assert events == [{"event": "returned", "result": "refunded 250.0 on A-1"}]
    assert len(Path(str(out) + ".effects").read_text().splitlines()) == 1
    assert ana.reviews.get(item.id).status == "done"
    ana.close()
    admin.close()


def test_graceful_shutdown_tells_waiting_agents_to_reconnect(
    server: Server, tmp_path: Path
) -> None:
    admin = server.client(server.admin)
    admin.policy.apply(POLICY)
    agent_token = server.token("agent", "runner", agents="support-bot")
    out = tmp_path / "agent"
    child = subprocess.Popen(
        [sys.executable, CHILD, server.url, agent_token, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert json.loads(child.stdout.readline())["event"] == "calling"
    item = first_pending(admin, "billing")
    started = time.monotonic()
    server.stop()  # SIGTERM: the long-poll is answered with reconnect, not held for 25 s
    assert time.monotonic() - started < 10
    server.start()
    admin.reviews.approve(item.id)
    out_text = rest_of(child)
    assert json.loads(out_text.splitlines()[-1])["result"] == "refunded 250.0 on A-1"
    admin.close()


def test_unreachable_server_fails_closed_within_the_timeout() -> None:
    px = Proctor(url=f"http://127.0.0.1:{free_port()}", token="pxt_x_y", timeout=0.5)

    @px.tool(agent="support-bot")
    def lookup_order(order_id: str) -> str:
        raise AssertionError("must not run")

    start = time.monotonic()
    with pytest.raises(Denied) as info:
        lookup_order("A-1")
    assert time.monotonic() - start < 3
    assert info.value.rule_ids == ("server-unreachable",)
    assert "cannot be reached" in info.value.reason
    px.close()


def test_an_outcome_is_recorded_once_the_server_is_back(server: Server, tmp_path: Path) -> None:
    """The server goes down while an approved tool runs: the runner retries its outcome
    (within its lease) until the server is back, and nothing runs twice."""
    admin = server.client(server.admin)
    admin.policy.apply(POLICY)
    agent_token = server.token("agent", "runner", agents="support-bot")
    out = tmp_path / "agent"
    effects = Path(str(out) + ".effects")
    child = subprocess.Popen(
        [sys.executable, CHILD, server.url, agent_token, str(out), "1.0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert json.loads(child.stdout.readline())["event"] == "calling"
    item = first_pending(admin, "billing")
    admin.reviews.approve(item.id)
    deadline = time.monotonic() + 20
    while not effects.exists():  # the body has started, under the runner's claim
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server.kill()
    time.sleep(6.0)  # past the client's own 5 s of transport retries
    server.start()
    out_text = rest_of(child)
    assert json.loads(out_text.splitlines()[-1]) == {
        "event": "returned",
        "result": "refunded 250.0 on A-1",
    }
    assert len(effects.read_text().splitlines()) == 1
    done = admin.reviews.get(item.id)
    assert (done.status, done.result) == ("done", "refunded 250.0 on A-1")
    admin.close()


def test_values_that_cannot_be_recorded_are_refused_and_logged_remotely(server: Server) -> None:
    admin = server.client(server.admin)
    admin.policy.apply(POLICY)
    agent = server.client(server.token("agent", "runner", agents="support-bot"))

    @agent.tool(agent="support-bot")
    def issue_refund(order_id: str, amount: float) -> str:
        raise AssertionError("must not run")

    for amount, why in ((float("-inf"), "not a finite number"), ("\ud800", "surrogate")):
        with pytest.raises(Denied, match=why) as info:
            issue_refund("A-1", amount)  # type: ignore[arg-type]
        assert info.value.rule_ids == ("invalid-input",)
    with (
        agent.run(agent="support-bot", confidence=float("nan")),
        pytest.raises(Denied, match="not a finite number"),
    ):
        issue_refund("A-2", 5.0)
    denials = httpx.get(
        f"{server.url}/api/v1/decisions",
        params={"kind": "decision"},
        headers={"Authorization": f"Bearer {server.admin}"},
    ).json()
    assert [d["record"]["rules"] for d in denials] == [["invalid-input"]] * 3
    assert all(d["record"]["decision"] == "deny" for d in denials)
    agent.close()
    admin.close()


def approve_in_console(url: str, token: str, item_id: str) -> str:
    """Sign in to the console and press Approve on the item's page, as a reviewer does;
    returns the page the reviewer read."""
    with httpx.Client(base_url=url, timeout=10) as console:
        csrf = re.search(r'name="csrf" value="([^"]+)"', console.get("/login").text)
        assert csrf is not None
        signed = console.post("/login", data={"csrf": csrf.group(1), "token": token})
        assert signed.status_code == 303
        page = console.get(f"/items/{item_id}").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        pressed = console.post(f"/items/{item_id}/approve", data={"csrf": csrf.group(1)})
        assert pressed.status_code == 303, pressed.text[:300]
        return page

"""Call identities, unknown outcomes, reconciliation and holds through a real `proctor serve`,
including a client that retries after its answer was lost on the way back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.test_calls import records
from tests.test_server_process import Server, free_port

from proctor import Conflict, Denied, Forbidden, InDoubt, Proctor, ReviewPending
from proctor.reconcile import Committed, NotCommitted

POLICY = """
policy: calls-remote
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund, lookup, ship]}}
rules:
  - {id: ok, when: 'tool in ["refund", "lookup", "ship"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
"""


@pytest.fixture
def server(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "2")
    srv = Server(db_url, free_port())
    srv.start()
    try:
        with srv.client(srv.admin) as admin:
            admin.policy.apply(POLICY)
        yield srv
    finally:
        srv.stop()


class LosingProxy:
    """Passes HTTP through to the server, except that it drops the server's answer to the
    first request that contains ``marker`` and hangs up: the request was carried out, the
    client never heard."""

    def __init__(self, upstream: int, marker: bytes) -> None:
        self.upstream = upstream
        self.marker = marker
        self.dropped = 0
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream))
        marked = threading.Event()  # this connection carried the marked request

        def up() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(1 << 16):
                    if self.marker in data and self.dropped == 0:
                        marked.set()
                    server.sendall(data)
            with contextlib.suppress(OSError):  # the client left: end the other direction
                server.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=up, daemon=True).start()
        try:
            while data := server.recv(1 << 16):
                if marked.is_set() and self.dropped == 0:
                    self.dropped += 1
                    return  # hang up: the answer is lost
                client.sendall(data)
        except OSError:
            return
        finally:
            for end in (client, server):  # shutdown wakes the other thread's recv, too
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self._listener.close()


def test_identities_hold_over_http_and_a_lost_answer_runs_nothing_twice(
    server: Server, tmp_path: Path
) -> None:
    token = server.token("agent", "runner", agents="bot")
    proxy = LosingProxy(server.port, b"/api/v1/actions")
    agent = server.client(token)
    agent.backend.url = f"http://127.0.0.1:{proxy.port}"  # type: ignore[attr-defined]
    agent.backend.http.base_url = agent.backend.url  # type: ignore[attr-defined]
    runs: list[str] = []

    @agent.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        runs.append(order_id)
        return f"refunded {amount} on {order_id}"

    try:
        # The first decision's answer is lost; the client asks again and is answered once.
        assert refund("A-1", 10.0) == "refunded 10.0 on A-1"
        assert proxy.dropped == 1
        assert refund("A-1", 10.0) == "refunded 10.0 on A-1"  # a repeat: recorded result
        assert runs == ["A-1"]
        with pytest.raises(Conflict, match="other arguments"):
            refund("A-1", 11.0)
        with pytest.raises(ReviewPending) as first:
            refund("R-1", 500.0)
        with pytest.raises(ReviewPending) as second:
            refund("R-1", 500.0)
        assert first.value.item_id == second.value.item_id
    finally:
        proxy.close()
        agent.close()


def test_unknown_outcomes_are_reconciled_over_http(server: Server) -> None:
    agent = server.client(server.token("agent", "runner", agents="bot"))
    runs: list[str] = []

    @agent.tool(agent="bot", key="q")
    def lookup(q: str) -> str:
        runs.append(q)
        if len(runs) == 1:
            raise TimeoutError("upstream timed out")
        return f"found {q}"

    with pytest.raises(TimeoutError):
        lookup("x")
    with pytest.raises(InDoubt) as info:  # no lookup yet: a person is asked
        lookup("x")
    assert info.value.item_id
    lookup.reconcile(lambda call: NotCommitted())  # type: ignore[attr-defined]
    assert lookup("x") == "found x"  # the lookup settles it: exactly one more run
    assert lookup("x") == "found x"
    assert runs == ["x", "x"]
    agent.close()


def test_a_scheduled_reconciliation_over_http(server: Server) -> None:
    agent = server.client(server.token("agent", "runner", agents="bot"))
    runs: list[str] = []

    @agent.tool(agent="bot", key="q")
    def lookup(q: str) -> str:
        runs.append(q)
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError):
        lookup("y")
    lookup.reconcile(lambda call: Committed(f"found {call.args['q']}"))  # type: ignore[attr-defined]
    ((_, answer),) = agent.reconcile()
    assert answer == "committed"
    assert lookup("y") == "found y"
    assert runs == ["y"]
    viewer = server.client(server.token("viewer", "vic"))
    other = server.client(server.token("agent", "other", agents="someone-else"))
    with pytest.raises(Forbidden):  # a viewer reads, but an agent token is for its agents
        other.backend.unknown_calls("bot", "lookup", 10)
    other.close()
    assert viewer.backend.unknown_calls(None, "lookup", 10) == []
    for client in (agent, viewer):
        client.close()


def test_holds_reach_a_sub_run_started_elsewhere(server: Server, db_url: str) -> None:
    token = server.token("agent", "runner", agents="bot")
    parent_agent, sub_agent = server.client(token), server.client(token)
    reviewer = server.client(server.token("reviewer", "ana", queues="billing"))

    @parent_agent.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "refunded"

    @sub_agent.tool(agent="bot", wait=0)
    def ship(order_id: str) -> str:
        raise AssertionError("held work must not run")

    @sub_agent.tool(agent="bot", wait=30)
    def lookup(q: str) -> str:
        raise AssertionError("held work must not run")

    outcome: list[BaseException] = []

    def delegated(parent_id: str) -> None:
        with sub_agent.run(agent="bot", parent=parent_id):
            try:
                lookup("S-2")
            except Denied as refused:
                outcome.append(refused)

    with parent_agent.run(agent="bot") as parent:
        with pytest.raises(ReviewPending) as pending:
            refund("P-1", 900.0)
        with sub_agent.run(agent="bot", parent=parent.id):
            with pytest.raises(Denied) as held:
                ship("S-1")
            assert held.value.rule_ids == ("run-held",)
        waiter = threading.Thread(target=delegated, args=(parent.id,))
        waiter.start()
        with Proctor(db_url) as watcher:  # the waiting sub-run's call is decided, and held
            deadline = time.monotonic() + 20
            while len([d for d in records(watcher, "decision") if d.get("held_by")]) < 2:
                assert time.monotonic() < deadline, "the waiting sub-run was never decided"
                time.sleep(0.05)
        reviewer.reviews.reject(pending.value.item_id, reason="already refunded")
        waiter.join(timeout=30)
        (refused,) = outcome
        assert isinstance(refused, Denied) and refused.rule_ids == ("run-rejected",)
        assert "already refunded" in refused.reason
    for client in (parent_agent, sub_agent, reviewer):
        client.close()

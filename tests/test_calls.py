"""Every call has an identity: exactly once for allowed calls too, outcomes that may be
unknown, reconciliation, and holds that cannot be raced. On both databases."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import records
from tests.test_review_processes import rest_of

from proctor import Conflict, InDoubt, Proctor, ReviewPending
from proctor.audit.receipts import receipt
from proctor.audit.verify import verify
from proctor.reconcile import Committed, Conflicting, NotCommitted

CHILD = str(Path(__file__).with_name("calls_child.py"))
POLICY = """
policy: calls-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents: {bot: {tools: [refund, lookup, ship]}}
rules:
  - {id: ok, when: 'tool in ["refund", "lookup", "ship"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
"""


@pytest.fixture
def cpx(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Proctor:
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "1")
    px = Proctor(db_url)
    px.policy.apply(POLICY)
    yield px
    px.close()


def spawn(mode: str, db: str, out: Path, *extra: str, child: str = CHILD) -> subprocess.Popen[str]:
    """A child agent process (``calls_child.py`` unless ``child`` names another)."""
    return subprocess.Popen(
        [sys.executable, child, mode, db, str(out), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def effects(out: Path) -> list[str]:
    path = Path(str(out) + ".effects")
    return path.read_text().splitlines() if path.exists() else []


# -- exactly once for allowed calls ---------------------------------------------------------


def test_repeats_of_completed_calls_never_run_again(
    cpx: Proctor, db_url: str, tmp_path: Path
) -> None:
    runs: list[str] = []
    lock = threading.Lock()

    @cpx.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        with lock:
            runs.append(order_id)
        return f"refunded {amount} on {order_id}"

    def repeat(offset: int) -> None:
        for n in range(125):
            assert (
                refund(f"A-{(n + offset) % 50}", 10.0) == f"refunded 10.0 on A-{(n + offset) % 50}"
            )

    threads = [threading.Thread(target=repeat, args=(i * 7,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(runs) == sorted(f"A-{n}" for n in range(50))  # 1,000 calls, 50 bodies run
    # Other processes repeat the same calls: none of them runs a body again.
    out = tmp_path / "repeat"
    children = [spawn("repeat", db_url, out, "100") for _ in range(3)]
    for child in children:
        assert json.loads(rest_of(child).splitlines()[-1]) == {"event": "done"}
    assert effects(out) == []
    assert len(records(cpx, "call.repeat")) == 1000 - 50 + 300
    # The same identity with other arguments is refused, naming both digests, and recorded.
    with pytest.raises(Conflict) as info:
        refund("A-7", 99.0)
    assert "other arguments" in str(info.value) and str(info.value).count("digest") == 2
    assert records(cpx, "decision")[-1]["rules"] == ["call-conflict"]
    assert len(runs) == 50
    assert verify(cpx.store).ok


def test_decide_then_execute_runs_once(cpx: Proctor) -> None:
    runs: list[str] = []

    @cpx.tool(agent="bot", wait=0)
    def ship(order_id: str) -> str:
        runs.append(order_id)
        return f"shipped {order_id}"

    call = cpx.decide(ship, "S-1", call_id="tc_123")  # a framework's tool-call id
    assert (call.status, call.key, call.decision.decision) == ("allowed", "tc_123", "allow")
    assert runs == []
    assert cpx.execute(call) == "shipped S-1"
    with pytest.raises(Conflict, match="already executed"):
        cpx.execute(call)
    again = cpx.decide(ship, "S-1", call_id="tc_123")  # a replayed framework step
    assert (again.status, again.result) == ("done", "shipped S-1")
    assert cpx.execute(again) == "shipped S-1"
    with cpx.call_id("tc_123"):
        assert ship("S-1") == "shipped S-1"
    assert runs == ["S-1"]
    life = receipt(cpx.store, again.id or "")
    assert [r["kind"] for r in life["records"]] == [
        "decision",
        "outcome",
        "call.repeat",
        "call.repeat",
    ]
    assert life["status"] == "done" and life["key"] == "tc_123"


def test_a_reviewed_call_repeated_waits_on_the_same_item(cpx: Proctor) -> None:
    runs: list[float] = []

    @cpx.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        runs.append(amount)
        return f"refunded {amount}"

    with pytest.raises(ReviewPending) as first:
        refund("R-1", 500.0)
    with pytest.raises(ReviewPending) as second:  # a framework re-running the node
        refund("R-1", 500.0)
    assert first.value.item_id == second.value.item_id
    assert len(cpx.reviews.list()) == 1  # no orphan items
    cpx.reviews.approve(first.value.item_id, by="ana")
    assert refund("R-1", 500.0) == refund("R-1", 500.0) == "refunded 500.0"
    assert runs == [500.0]


# -- outcomes that may be unknown ----------------------------------------------------------


@pytest.fixture
def killed(cpx: Proctor, db_url: str, tmp_path: Path) -> tuple[Path, str]:
    """A runner killed after its body's side effect, before it recorded the outcome."""
    out = tmp_path / "killed"
    child = spawn("die-after-effect", db_url, out)
    assert json.loads(rest_of(child).splitlines()[0]) == {"event": "calling"}
    assert effects(out) == ["A-1 20.0"]
    time.sleep(1.2)  # its lease (1 s) lapses
    return out, "order_id=A-1"


def refund_tool(px: Proctor, runs: list[float]) -> Any:
    @px.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        runs.append(amount)
        return f"refunded {amount} on {order_id}"

    return refund


def test_unknown_reconciled_as_committed_never_runs_again(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)

    @refund.reconcile
    def look(call: Any) -> Committed:
        assert call.key == "order_id=A-1"
        return Committed("refunded 20.0 on A-1 (found in the ledger)")

    assert refund("A-1", 20.0) == "refunded 20.0 on A-1 (found in the ledger)"
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1 (found in the ledger)"
    assert runs == []
    (unknown,) = records(cpx, "call.unknown")
    assert "lease expired" in unknown["why"]
    (settled,) = records(cpx, "call.reconciled")
    assert settled["answer"] == "committed"
    assert settled["args_digest"] == receipt(cpx.store, settled["call_id"])["args_digest"]


def test_unknown_reconciled_as_not_committed_runs_exactly_once_more(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    refund.reconcile(lambda call: NotCommitted())
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"  # done now: the recorded result
    assert runs == [20.0]
    assert [r["answer"] for r in records(cpx, "call.reconciled")] == ["not_committed"]


def test_unknown_without_a_lookup_waits_for_a_person(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    with pytest.raises(InDoubt) as info:
        refund("A-1", 20.0)
    assert runs == []
    cpx.reviews.sweep()  # the grace period is a lease: past it, a person is asked
    (item,) = cpx.reviews.list()
    assert (item.kind, item.call_id) == ("settle", info.value.call_id)
    with pytest.raises(InDoubt):
        refund("A-1", 20.0)  # still never blind
    cpx.reviews.settle(item.id, by="ana", happened=False, note="not in the ledger")
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"
    assert runs == [20.0]


def test_a_scheduled_reconciliation_settles_unknown_calls_without_running_them(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    seen: list[tuple[str, dict[str, Any]]] = []

    @refund.reconcile
    def look(call: Any) -> Committed:
        seen.append((call.key, call.args))
        return Committed("refunded 20.0 on A-1 (found in the ledger)")

    assert cpx.reconcile() == []  # still "executing" until a sweep finds the lapsed lease
    (unknown,) = cpx.reviews.sweep()
    assert cpx.reconcile() == [(unknown, "committed")]
    assert seen == [("order_id=A-1", {"order_id": "A-1", "amount": 20.0})]
    assert cpx.reconcile() == []  # settled: nothing left to ask about
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1 (found in the ledger)"
    assert runs == []
    assert effects(killed[0]) == ["A-1 20.0"]


def test_a_scheduled_not_committed_lets_the_next_repeat_run_once(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    refund.reconcile(lambda call: NotCommitted())
    (unknown,) = cpx.reviews.sweep()
    assert cpx.reconcile() == [(unknown, "not_committed")]
    assert runs == []  # nothing runs until the agent repeats the call
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"
    assert refund("A-1", 20.0) == "refunded 20.0 on A-1"
    assert runs == [20.0]


def test_a_conflicting_lookup_keeps_it_unknown_with_the_evidence(
    cpx: Proctor, killed: tuple[Path, str]
) -> None:
    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    refund.reconcile(lambda call: Conflicting("the ledger shows 200.0 for A-1"))
    with pytest.raises(InDoubt) as info:
        refund("A-1", 20.0)
    assert info.value.item_id
    item = cpx.reviews.get(info.value.item_id)
    assert item.kind == "settle" and "200.0" in (item.detail or "")
    assert runs == []


def test_an_ambiguous_error_makes_the_call_unknown(cpx: Proctor) -> None:
    runs: list[str] = []

    @cpx.tool(agent="bot", key="q")
    def lookup(q: str) -> str:
        runs.append(q)
        raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError):
        lookup("x")
    assert records(cpx, "outcome")[-1]["outcome"] == "unknown"
    with pytest.raises(InDoubt):
        lookup("x")  # never run blindly: a person is asked at once (no lookup)
    assert runs == ["x"]
    assert [i.kind for i in cpx.reviews.list()] == ["settle"]


def test_the_sweeper_finds_a_runner_that_died_after_it_passed_its_call(
    cpx: Proctor, db_url: str, tmp_path: Path
) -> None:
    """The sweeper reads only calls decided since its last round, and the in-flight ones it
    passed: a call that failed, was swept past, then claimed again by a runner that died
    mid-body, still goes unknown and then to a person."""

    @cpx.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        raise ValueError("card declined")  # known not to have committed: "failed"

    with pytest.raises(ValueError, match="declined"):
        refund("A-1", 20.0)
    assert cpx.reviews.sweep() == []  # its mark passes the failed call
    out = tmp_path / "hung"
    child = spawn("hang-in-body", db_url, out)
    assert child.stdout is not None
    assert json.loads(child.stdout.readline()) == {"event": "calling"}
    assert json.loads(child.stdout.readline()) == {"event": "in-body"}
    try:
        assert cpx.reviews.sweep() == []  # its runner is alive and holds the lease
        for n in range(3):  # newer calls: the mark moves past the running one
            with pytest.raises(ValueError, match="declined"):
                refund(f"B-{n}", 1.0)
        assert cpx.reviews.sweep() == []
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    time.sleep(1.2)  # its lease (1 s) lapses
    (unknown,) = cpx.reviews.sweep()
    assert records(cpx, "call.unknown")[-1]["call_id"] == unknown
    time.sleep(1.1)  # the grace period: no lookup settled it, so a person is asked
    assert cpx.reviews.sweep() == [unknown]
    (item,) = cpx.reviews.list()
    assert (item.kind, item.call_id) == ("settle", unknown)
    assert effects(out) == ["A-1 20.0"]


def test_calls_past_their_retention_are_forgotten_but_never_one_in_flight(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCTOR_LEASE_SECONDS", "1")
    monkeypatch.setenv("PROCTOR_CALL_RETENTION", "1s")
    px = Proctor(db_url)
    try:
        px.policy.apply(POLICY)

        @px.tool(agent="bot", key="q", ambiguous=(TimeoutError,))
        def lookup(q: str) -> str:
            if q == "slow":
                raise TimeoutError("upstream timed out")
            return q.upper()

        for q in ("a", "b", "c"):
            assert lookup(q) == q.upper()
        with pytest.raises(TimeoutError):
            lookup("slow")  # unknown: in flight until settled
        time.sleep(1.1)
        assert lookup("d") == "D"  # the newest row
        px.reviews.sweep()
        with px.store.read() as conn:
            kept = conn.execute(sa.text("SELECT key, status FROM proctor_calls ORDER BY n")).all()
        assert [tuple(r) for r in kept] == [("q=slow", "unknown"), ("q=d", "done")]
        assert lookup("a") == "A"  # forgotten: a new call, run again
    finally:
        px.close()


# -- holds that cannot be raced -----------------------------------------------------------


def test_siblings_in_one_run_never_run_while_an_approval_is_pending(cpx: Proctor) -> None:
    for attempt in range(20):
        _one_parallel_try(cpx, attempt)


def _one_parallel_try(cpx: Proctor, attempt: int) -> None:
    if True:
        starts: list[tuple[str, float]] = []

        @cpx.tool(agent="bot", name="lookup")
        async def lookup(n: int, attempt: int) -> int:
            starts.append((f"lookup-{n}", time.time()))
            return n

        @cpx.tool(agent="bot", name="refund")
        async def refund(order_id: str, amount: float) -> str:
            return order_id

        both_pending = threading.Event()
        decided_at: list[float] = []

        def reviewer() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                items = cpx.reviews.list()
                if len(items) == 2:
                    both_pending.set()
                    time.sleep(0.05)
                    decided_at.append(time.time())
                    for item in items:
                        cpx.reviews.approve(item.id, by="ana")
                    return
                time.sleep(0.005)

        run_ids: list[str] = []

        async def work() -> None:
            with cpx.run(agent="bot") as run:
                run_ids.append(run.id)
                calls = [lookup(n, attempt) for n in range(8)] + [
                    refund(f"G-{attempt}-1", 500.0),
                    refund(f"G-{attempt}-2", 600.0),
                ]
                await asyncio.gather(*calls)

        watcher = threading.Thread(target=reviewer)
        watcher.start()
        asyncio.run(work())
        watcher.join(30)
        assert both_pending.is_set(), f"try {attempt}: the gated calls were not both pending"
        # A sibling first decided after a gated item opened (the database's order) must not
        # have started before that item was approved.
        decisions = [d for d in records(cpx, "decision") if d.get("run_id") == run_ids[0]]
        first_gated = min(d["seq"] for d in decisions if d["decision"] == "review")
        first_seen: dict[str, int] = {}
        for d in decisions:
            if d["tool"] == "lookup":
                first_seen.setdefault(f"lookup-{d['action']['args']['n']}", d["seq"])
        assert len(starts) == 8
        for name, at in starts:
            if first_seen[name] > first_gated:
                assert at >= decided_at[0], f"try {attempt}: {name} ran while an approval waited"
        for item in cpx.reviews.list(status=None):
            if item.status == "pending":
                cpx.reviews.reject(item.id, by="ana", reason="cleanup")


def test_a_sub_run_elsewhere_is_held_and_then_refused_by_its_parent(
    cpx: Proctor, db_url: str, tmp_path: Path
) -> None:
    @cpx.tool(agent="bot", key="order_id", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "refunded"

    with cpx.run(agent="bot") as parent:
        with pytest.raises(ReviewPending) as pending:
            refund("P-1", 900.0)
        out = tmp_path / "sub"
        held = json.loads(rest_of(spawn("sub-run", db_url, out, parent.id)).splitlines()[-1])
        assert held["event"] == "refused" and held["rules"] == ["run-held"]
        waiting = spawn("sub-run-waits", db_url, out, parent.id)
        assert waiting.stdout is not None
        assert json.loads(waiting.stdout.readline()) == {"event": "asking"}
        deadline = time.monotonic() + 20
        while not [d for d in records(cpx, "decision") if d.get("held_by")][1:]:
            assert time.monotonic() < deadline, "the waiting sub-run was never decided"
            time.sleep(0.05)
        cpx.reviews.reject(
            pending.value.item_id, by="ana", reason="the customer was refunded already"
        )
        refused = json.loads(rest_of(waiting).splitlines()[-1])
        assert refused["event"] == "refused" and refused["rules"] == ["run-rejected"]
        assert "refunded already" in refused["reason"]
        assert effects(out) == []
        # Work delegated after the rejection was known is a new decision of its own.
        after = json.loads(rest_of(spawn("sub-run", db_url, out, parent.id)).splitlines()[-1])
        assert after == {"event": "ran", "result": "shipped S-1"}


def test_a_call_made_after_a_rejection_is_its_own_decision(cpx: Proctor) -> None:
    """Only the work that waited on a rejected item is refused: the agent that learned of
    the rejection may go on (tell the customer, try another way)."""
    sent: list[str] = []

    @cpx.tool(agent="bot", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "refunded"

    @cpx.tool(agent="bot", wait=0)
    def lookup(q: str) -> str:
        sent.append(q)
        return q

    with cpx.run(agent="bot"):
        with pytest.raises(ReviewPending) as pending:
            refund("P-1", 900.0)
        cpx.reviews.reject(pending.value.item_id, by="ana", reason="not this one")
        assert lookup("tell the customer") == "tell the customer"
    assert sent == ["tell the customer"]


def test_a_person_settles_from_the_cli_and_reads_the_receipt(
    cpx: Proctor, db_url: str, killed: tuple[Path, str]
) -> None:
    from tests.test_cli import proctor

    runs: list[float] = []
    refund = refund_tool(cpx, runs)
    with pytest.raises(InDoubt) as info:
        refund("A-1", 20.0)
    db = ["--database", db_url]
    done = proctor("queue", "settle", info.value.item_id, "--by", "ana", "--happened", *db)
    assert done.returncode == 0, done.stderr
    assert refund("A-1", 20.0) is None  # it happened; nothing was recorded of its result
    assert runs == []
    shown = proctor("audit", "show", str(info.value.call_id), *db)
    assert shown.returncode == 0, shown.stderr
    for kind in ("decision", "call.unknown", "review.settle"):
        assert kind in shown.stdout
    assert "is done" in shown.stdout
    missing = proctor("audit", "show", "nope", *db)
    assert missing.returncode == 2 and "no call or decision" in missing.stderr

"""The review loop across real processes: wake-ups, races, and SIGKILL at every step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson
import pytest
import sqlalchemy as sa

from proctor import InDoubt, InvalidRequest, Proctor, ReviewItem, ReviewPending
from proctor.audit.verify import verify
from proctor.store.tables import audit_log

CHILD = str(Path(__file__).with_name("review_child.py"))
POLICY = """
policy: review-processes
defaults: {decision: deny, review_timeout: 60s, queue: billing}
queues: {billing: {roles: [billing_lead]}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: routine, when: 'tool == "refund"', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
"""


def spawn(mode: str, db: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHILD, mode, db, str(out), *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def next_event(stream: IO[str] | None) -> dict[str, object]:
    assert stream is not None
    line = stream.readline()
    assert line, "the child exited early"
    return dict(json.loads(line))


def rest_of(child: subprocess.Popen[str], timeout: float = 60) -> str:
    """What the child writes until it exits. Not ``communicate(timeout=...)``: that reads
    the raw pipe and would miss lines an earlier ``readline()`` already buffered."""
    child.wait(timeout=timeout)
    assert child.stdout is not None
    with child.stdout:
        return child.stdout.read()


def finish(child: subprocess.Popen[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in rest_of(child).splitlines()]


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL


def records(px: Proctor, kind: str) -> list[dict[str, Any]]:
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.record)
            .where(audit_log.c.kind == kind)
            .order_by(audit_log.c.seq)
        ).all()
    return [{"seq": seq, "record": orjson.loads(rec)} for seq, rec in rows]


def effects(out: Path) -> list[str]:
    path = Path(str(out) + ".effects")
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def ppx(px: Proctor) -> Proctor:
    px.policy.apply(POLICY)
    return px


def wait_for_items(px: Proctor) -> list[ReviewItem]:
    for _ in range(400):
        items = px.reviews.list()
        if items:
            return items
        time.sleep(0.025)
    raise AssertionError("the agent process opened no review item")


def pending_item(px: Proctor, db: str, out: Path) -> str:
    """An agent process opens an approval and is then killed: the item must survive."""
    child = spawn("pending", db, out)
    event = next_event(child.stdout)
    kill(child)
    item = str(event["item"])
    assert px.reviews.get(item).status == "pending"
    return item


def test_agent_in_another_process_wakes_on_approval(
    ppx: Proctor, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "wait"
    child = spawn("wait", db_url, out)
    assert next_event(child.stdout)["event"] == "calling"
    (item,) = wait_for_items(ppx)
    ppx.reviews.approve(item.id, by="ana")
    events = [next_event(child.stdout), *finish(child)]
    assert [e["event"] for e in events] == ["body-start", "returned"]
    assert events[1]["result"] == {"refunded": 250.0, "order": "A-1"}
    assert len(effects(out)) == 1


def test_twenty_reviewer_processes_one_winner(ppx: Proctor, db_url: str, tmp_path: Path) -> None:
    item = pending_item(ppx, db_url, tmp_path / "p")
    reviewers = [spawn("decide", db_url, tmp_path / f"r{n}", item, str(n)) for n in range(20)]
    outcomes = [finish(r)[0]["event"] for r in reviewers]
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 19


def test_concurrent_resumes_run_the_body_once(ppx: Proctor, db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "agent"
    item = pending_item(ppx, db_url, out)
    ppx.reviews.approve(item, by="ana")  # approved, not yet run: the agent died before
    resumers = [spawn("resume", db_url, out, item) for _ in range(6)]
    results = [finish(r)[-1]["result"] for r in resumers]
    assert results == [{"refunded": 250.0, "order": "A-1"}] * 6
    assert len(effects(out)) == 1
    assert ppx.reviews.get(item).status == "done"


def test_sigkill_while_claimed_leaves_in_doubt_and_never_reruns(
    ppx: Proctor, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "slow"
    child = spawn("slow-body", db_url, out)
    assert next_event(child.stdout)["event"] == "calling"
    (item,) = wait_for_items(ppx)
    ppx.reviews.approve(item.id, by="ana")
    assert next_event(child.stdout)["event"] == "body-start"  # claimed and running
    kill(child)
    assert ppx.reviews.get(item.id).status == "executing"

    @ppx.tool(agent="bot")
    def refund(order_id: str, amount: float) -> str:
        raise AssertionError("an in-doubt action must never re-run by itself")

    with pytest.raises(InDoubt):
        ppx.resume(item.id)
    assert ppx.reviews.get(item.id).status == "in_doubt"
    assert [i.id for i in ppx.reviews.list(status="in_doubt")] == [item.id]
    with pytest.raises(InDoubt):
        ppx.resume(item.id)
    assert len(effects(out)) == 1
    # Approving it again needs the reviewer to say they checked, and the log keeps that.
    with pytest.raises(InvalidRequest, match="in doubt"):
        ppx.reviews.approve(item.id, by="ana")
    assert ppx.reviews.get(item.id).status == "in_doubt"
    # A human who checked the payment system decides: it did not go through, run it again.
    ppx.reviews.approve(item.id, by="ana", note="checked: not refunded", confirm_not_run=True)
    approvals = [
        r["record"]
        for r in records(ppx, "review.approve")
        if r["record"]["item_id"] == item.id and r["record"].get("rerun_in_doubt")
    ]
    assert approvals[0]["confirmed_not_run"] is True
    resumer = spawn("resume", db_url, out, item.id)
    assert finish(resumer)[-1]["result"] == {"refunded": 250.0, "order": "A-1"}
    assert len(effects(out)) == 2


def test_sigkill_at_each_step_loses_nothing_and_runs_nothing_twice(
    ppx: Proctor, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "steps"
    item = pending_item(ppx, db_url, out)  # killed while pending: the item is durable

    @ppx.tool(agent="bot")
    def refund(order_id: str, amount: float) -> str:
        raise AssertionError("this process must not be the one that runs it")

    with pytest.raises(ReviewPending):
        ppx.resume(item)  # nobody decided yet
    ppx.reviews.approve(item, by="ana")
    assert ppx.reviews.get(item).status == "approved"  # approved, not run: survives too
    first = spawn("resume", db_url, out, item)
    assert finish(first)[-1]["result"] == {"refunded": 250.0, "order": "A-1"}
    # done: a new process (a restarted agent, a replayed checkpoint) gets the record
    again = spawn("resume", db_url, out, item)
    assert finish(again)[-1]["result"] == {"refunded": 250.0, "order": "A-1"}
    assert len(effects(out)) == 1
    assert verify(ppx.store).ok


def test_sigkill_of_a_reviewer_mid_queue(ppx: Proctor, db_url: str, tmp_path: Path) -> None:
    @ppx.tool(agent="bot", wait=0)
    def refund(order_id: str, amount: float) -> str:
        return "ok"

    for n in range(40):
        with pytest.raises(ReviewPending):
            refund(f"A-{n}", 500.0)
    reviewer = spawn("review-all", db_url, tmp_path / "rev")
    reported = [str(next_event(reviewer.stdout)["item"]) for _ in range(5)]
    kill(reviewer)
    items = {i.id: i for i in ppx.reviews.list(status=None)}
    assert all(items[i].status == "approved" for i in reported)
    for item in items.values():  # every item is wholly decided or wholly pending
        assert item.status in ("pending", "approved")
        assert (item.status == "approved") == (item.decided_by == "night-shift")
        assert (item.status == "approved") == (item.grant_expires_at is not None)
    result = verify(ppx.store)
    assert result.ok, result.message()

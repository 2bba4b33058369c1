"""`proctor audit replay` pointed at records that are not decisions, or at none."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.test_cli import proctor

from proctor import Proctor, ReviewPending
from proctor.store.tables import audit_log

POLICY = """
policy: replay
defaults: {decision: deny, queue: ops}
queues: {ops: {}}
agents: {bot: {tools: [lookup, refund]}}
rules:
  - {id: ok, when: 'tool == "lookup"', decide: allow}
  - {id: big, when: 'tool == "refund"', decide: review}
"""


@pytest.fixture
def log(db_url: str) -> list[str]:
    """The kinds of the records, from seq 1."""
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot")
        def lookup(order_id: str) -> str:
            return "found"

        @px.tool(agent="bot", wait=0)
        def refund(amount: float) -> str:
            return "refunded"

        lookup("A-1")
        with pytest.raises(ReviewPending) as pending:
            refund(5.0)
        px.reviews.approve(pending.value.item_id, by="ana")
        lookup("A-2")
        with px.store.read() as conn:
            rows = conn.execute(sa.select(audit_log.c.seq, audit_log.c.kind).order_by("seq"))
            kinds = [kind for _, kind in rows]
    return kinds


def test_replaying_a_record_that_is_not_a_decision_names_the_decisions(
    db_url: str, log: list[str]
) -> None:
    assert log == [
        "policy.apply",
        "decision",
        "outcome",
        "decision",
        "review.approve",
        "decision",
        "outcome",
    ]
    for seq, message in [
        (3, "record 3 is an outcome (of decision 2); replay 2, or 4"),
        (5, "record 5 is a review.approve (of decision 4); replay 4, or 6"),
        (7, "record 7 is an outcome (of decision 6); replay 6"),
        (1, "record 1 is a policy.apply; replay 2"),
    ]:
        r = proctor("audit", "replay", str(seq), "-d", db_url)
        assert r.returncode == 2, r
        assert r.stderr == f"error: {message}\n"
    ok = proctor("audit", "replay", "6", "-d", db_url)
    assert ok.returncode == 0 and "the same as recorded" in ok.stdout


def test_replaying_an_unknown_record_is_one_line(db_url: str, log: list[str]) -> None:
    r = proctor("audit", "replay", "99", "-d", db_url)
    assert r.returncode == 2
    assert r.stderr == "error: no record 99 (the log holds 1 to 7)\n"

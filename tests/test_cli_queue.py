"""`proctor queue ...` as a reviewer uses it, against a real database."""

from __future__ import annotations

import json

import pytest
from tests.test_cli import proctor

from proctor import Proctor, ReviewPending

POLICY = """
policy: cli-queue
defaults: {decision: deny, queue: billing}
queues: {billing: {sla: 30m}, finance: {}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: ok, when: 'tool == "refund"', decide: allow}
  - {id: big, when: 'args.amount > 100.0', decide: review, reason: Refunds over 100}
"""


@pytest.fixture
def items(db_url: str) -> list[str]:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)

        @px.tool(agent="bot", wait=0)
        def refund(order_id: str, amount: float) -> str:
            return "ok"

        ids = []
        for n in range(3):
            with px.run(agent="bot", impact=n / 3), pytest.raises(ReviewPending) as info:
                refund(f"A-{n}", 200.0 + n)
            ids.append(info.value.item_id)
    return ids


def test_list_orders_by_severity_and_filters(db_url: str, items: list[str]) -> None:
    r = proctor("queue", "list", "-d", db_url)
    assert r.returncode == 0, r.stderr
    assert "3 pending item(s)" in r.stdout
    positions = [r.stdout.index(i) for i in reversed(items)]  # highest impact first
    assert positions == sorted(positions)
    assert "0 pending" in proctor("queue", "list", "-d", db_url, "--queue", "finance").stdout
    bad = proctor("queue", "list", "-d", db_url, "--status", "bogus")
    assert bad.returncode == 2 and "unknown status" in bad.stderr


def test_show_approve_reject_edit_escalate(db_url: str, items: list[str]) -> None:
    first, second, third = items
    shown = proctor("queue", "show", first, "-d", db_url)
    assert shown.returncode == 0
    assert "bot wants to call refund" in shown.stdout and "Refunds over 100" in shown.stdout
    assert "next: approve, reject, edit, escalate" in shown.stdout

    edit = proctor("queue", "edit", first, "--by", "ana", "--set", "amount=150.0", "-d", db_url)
    assert edit.returncode == 0, edit.stderr
    assert "amount: 200.0 -> 150.0" in edit.stdout and "approved" in edit.stdout
    wrong = proctor("queue", "edit", second, "--by", "ana", "--set", "amount=lots", "-d", db_url)
    assert wrong.returncode == 2 and "'amount' must be float" in wrong.stderr

    assert (
        proctor(
            "queue", "reject", second, "--by", "ana", "--reason", "dup", "-d", db_url
        ).returncode
        == 0
    )
    again = proctor("queue", "approve", second, "--by", "bob", "-d", db_url)
    assert again.returncode == 2 and "already rejected" in again.stderr

    own = proctor("queue", "approve", third, "--by", "bot", "-d", db_url)
    assert own.returncode == 2 and "own action" in own.stderr
    moved = proctor("queue", "escalate", third, "--by", "ana", "--to", "finance", "-d", db_url)
    assert moved.returncode == 0 and "now in finance" in moved.stdout

    missing = proctor("queue", "show", "nope", "-d", db_url)
    assert missing.returncode == 2 and "no review item" in missing.stderr


def test_bench_review_prints_json(sqlite_url: str) -> None:
    r = proctor("bench", "review", "--rounds", "10", "--items", "20", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["wakeup_rounds"] == 10 and data["wakeup_p99_ms"] > 0
    assert data["decisions_per_s_16_reviewers"] > 0


def test_risk_is_shown_for_people_and_stored_exact(sqlite_url: str) -> None:
    risky = POLICY.replace("rules:", "risk: '(args.amount > 100.0 ? 0.6 : 0.0) + 0.3'\nrules:")
    with Proctor(sqlite_url) as px:
        px.policy.apply(risky)

        @px.tool(agent="bot", wait=0)
        def refund(order_id: str, amount: float) -> str:
            return "ok"

        with pytest.raises(ReviewPending) as info:
            refund("A-1", 250.0)
        item_id = info.value.item_id
        assert px.reviews.get(item_id).risk == 0.6 + 0.3 == 0.8999999999999999
    shown = proctor("queue", "show", item_id, "-d", sqlite_url)
    listed = proctor("queue", "list", "-d", sqlite_url)
    assert shown.returncode == listed.returncode == 0
    assert "risk: 0.90 " in shown.stdout
    assert "0.90" in listed.stdout
    assert "0.8999" not in shown.stdout + listed.stdout

"""An edit is a new decision, routed like one: an edit the policy sends elsewhere moves the
item there, unapproved, whichever way the reviewer made it."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa
from tests.asgi_client import AppClient
from tests.test_cli import proctor

from proctor import Forbidden, Proctor, ReviewPending
from proctor.server.app import create_app
from proctor.server.auth import create_token
from proctor.store.tables import audit_log

POLICY = """
policy: edit-routing
defaults: {decision: deny, queue: billing}
queues:
  billing: {roles: [billing_lead]}
  finance: {roles: [finance_director], quorum: 2}
agents:
  support-bot: {tools: [issue_refund]}
rules:
  - {id: routine, when: 'tool == "issue_refund"', decide: allow}
  - id: billing-refund
    when: 'tool == "issue_refund" && args.amount > 100.0 && args.amount <= 1000.0'
    decide: review
    queue: billing
    reason: Refunds over 100 need a billing lead
  - {id: finance-refund, when: 'tool == "issue_refund" && args.amount > 1000.0', decide: review,
     queue: finance, reason: Refunds over 1000 need finance}
  - {id: no-huge, when: 'tool == "issue_refund" && args.amount > 50000000.0', decide: deny,
     reason: No refund is that large}
"""


@pytest.fixture
def epx(px: Proctor) -> Proctor:
    px.policy.apply(POLICY)
    return px


def pending_refund(px: Proctor, amount: float = 995.57) -> str:
    @px.tool(agent="support-bot", wait=0, name="issue_refund")
    def refund(order_id: str, amount: float) -> str:
        return f"refunded {amount}"

    with pytest.raises(ReviewPending) as info:
        refund("A-17", amount)
    return info.value.item_id


def log(px: Proctor, kind: str) -> list[dict[str, object]]:
    with px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == kind).order_by(audit_log.c.seq)
        ).all()
    return [orjson.loads(r[0]) for r in rows]


def assert_moved_to_finance(px: Proctor, item_id: str, editor: str) -> None:
    item = px.reviews.get(item_id)
    assert (item.status, item.queue, item.escalated_from) == ("pending", "finance", "billing")
    assert item.edited_args == {"amount": 9_999_999.0}
    assert item.rule_ids == ["finance-refund"]
    assert item.quorum == 2 and item.reason == "Refunds over 1000 need finance"
    (edit,) = [e for e in log(px, "review.edit") if e["item_id"] == item_id]
    assert edit["granted"] is False and edit["rerouted_to"] == "finance" and edit["by"] == editor
    (moved,) = [e for e in log(px, "review.escalate") if e["item_id"] == item_id]
    assert moved["by_edit"] is True and moved["to"] == "finance"


def test_an_edit_the_policy_sends_to_finance_moves_there_unapproved(epx: Proctor) -> None:
    item = pending_refund(epx)
    epx.reviews.edit(item, by="bill", args={"amount": 9_999_999.0})
    assert_moved_to_finance(epx, item, "bill")
    # Finance decides it now, with its own quorum; the editor's approval counted for nothing.
    epx.reviews.approve(item, by="fran")
    assert epx.reviews.get(item).status == "pending"
    epx.reviews.approve(item, by="fiona")
    granted = epx.reviews.get(item)
    assert granted.status == "approved"
    assert epx.resume(item) == "refunded 9999999.0"


def test_an_edit_within_the_queue_still_approves(epx: Proctor) -> None:
    item = pending_refund(epx)
    epx.reviews.edit(item, by="bill", args={"amount": 500.0})
    assert epx.reviews.get(item).status == "approved"
    assert epx.resume(item) == "refunded 500.0"


def test_an_edit_down_to_what_the_policy_allows_approves(epx: Proctor) -> None:
    item = pending_refund(epx)
    epx.reviews.edit(item, by="bill", args={"amount": 50.0})
    assert epx.reviews.get(item).status == "approved"


def test_an_edit_the_policy_denies_is_refused(epx: Proctor) -> None:
    item = pending_refund(epx)
    with pytest.raises(Forbidden, match="No refund is that large"):
        epx.reviews.edit(item, by="bill", args={"amount": 90_000_000.0})
    assert (epx.reviews.get(item).status, epx.reviews.get(item).queue) == ("pending", "billing")


def test_earlier_votes_do_not_carry_over_to_the_rerouted_item(epx: Proctor) -> None:
    item = pending_refund(epx, 2000.0)  # in finance, quorum 2
    epx.reviews.approve(item, by="fran")
    epx.reviews.edit(item, by="fiona", args={"amount": 500.0})  # now a billing matter
    moved = epx.reviews.get(item)
    assert (moved.status, moved.queue, moved.quorum) == ("pending", "billing", 1)
    epx.reviews.approve(item, by="fran")  # fran's earlier vote was for another action
    assert epx.reviews.get(item).status == "approved"


@pytest.fixture
def api(epx: Proctor) -> Iterator[tuple[AppClient, dict[str, str]]]:
    _, bill = create_token(epx.store, role="reviewer", name="bill", queues=["billing"])
    client = AppClient(create_app(epx, sweep=False))
    try:
        yield client, {"Authorization": f"Bearer {bill}"}
    finally:
        client.close()


def test_the_same_edit_over_the_api(epx: Proctor, api: tuple[AppClient, dict[str, str]]) -> None:
    client, bill = api
    item = pending_refund(epx)
    r = client.post(
        f"/api/v1/reviews/{item}/edit", json={"args": {"amount": 9_999_999.0}}, headers=bill
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["queue"]) == ("pending", "finance")
    assert_moved_to_finance(epx, item, "bill")
    # Not her queue any more: she can neither see nor approve it.
    assert client.post(f"/api/v1/reviews/{item}/approve", json={}, headers=bill).status_code == 404


def test_the_same_edit_from_the_cli(epx: Proctor, db_url: str) -> None:
    item = pending_refund(epx)
    done = proctor(
        "queue", "edit", item, "--by", "bill", "--set", "amount=9999999.0", "--database", db_url
    )
    assert done.returncode == 0, done.stderr
    assert "needs a decision in queue 'finance'" in done.stdout
    assert "not counted" in done.stdout
    assert_moved_to_finance(epx, item, "bill")


def test_the_same_edit_in_the_console(epx: Proctor) -> None:
    """A billing reviewer edits 995.57 to 9,999,999 in the browser: the console says the
    item moved to finance, and it did, unapproved."""
    if epx.store.dialect != "sqlite":
        pytest.skip("one browser run is enough: the database part is tested above")
    pytest.importorskip("playwright")
    from tests.test_console import chromium, serve

    item = pending_refund(epx)
    _, bill = create_token(epx.store, role="reviewer", name="bill", queues=["billing"])
    with serve(epx) as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url + "/login")
        page.fill("input[name=token]", bill)
        page.click("button[type=submit]")
        page.goto(f"{url}/items/{item}")
        page.click("summary")
        page.fill("input[name=arg_amount]", "9999999")
        page.click("#preview-edit")
        page.click("#confirm-edit")
        flash = page.locator(".flash")
        flash.wait_for()
        assert "needs a decision in queue 'finance'" in flash.inner_text()
        assert "not counted" in flash.inner_text()
    assert_moved_to_finance(epx, item, "bill")

"""The console's lists as data, in-process: paging the queue and the log (counts, bounds,
filters kept, a stable order), where an item stands, the next item after a decision, the
overview's queue panels, and verifying the chain only on demand."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.asgi_client import AppClient
from tests.console_seed import Seeded, seed

from proctor import Proctor, ReviewPending
from proctor._clock import simulated
from proctor.server import console_pages, queue_data
from proctor.server.app import create_app
from proctor.server.auth import create_token

ROW_ID = re.compile(r'<tr class="sev-\w+" data-id="(\w+)"')


@dataclass
class Desk:
    px: Proctor
    client: AppClient
    seeded: Seeded
    tokens: dict[str, str]
    now: float

    def sign_in(self, who: str) -> None:
        sign_in(self.client, self.tokens[who])

    def get(self, url: str) -> str:
        return get(self.client, url)

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get("/queue"))
        assert found is not None
        return found.group(1)


def sign_in(client: AppClient, token: str) -> None:
    client.client.cookies.clear()
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert csrf is not None
    r = client.post("/login", data={"csrf": csrf.group(1), "token": token})
    assert r.status_code == 303


def get(client: AppClient, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r.text


def rows(page: str) -> list[str]:
    return ROW_ID.findall(page)


def link(page: str, rel: str) -> str:
    found = re.search(rf'<a href="([^"]+)" class="{rel}"', page)
    assert found is not None, f"no {rel} link"
    return html.unescape(found.group(1))


@pytest.fixture
def desk(db_url: str) -> Iterator[Desk]:
    with Proctor(db_url) as px:
        now = time.time()
        seeded = seed(px, pending=137, decisions=300, now=now)
        tokens = {
            "ada": create_token(px.store, role="admin", name="ada")[1],
            "lee": create_token(px.store, role="reviewer", name="lee", queues=["ops", "qa"])[1],
        }
        client = AppClient(create_app(px, sweep=False))
        try:
            # One moment for the whole test: severity moves as SLAs approach, and the test
            # compares pages read at different instants.
            with simulated(lambda: now + 1):
                yield Desk(px, client, seeded, tokens, now + 1)
        finally:
            client.close()


def test_paging_through_137_items(desk: Desk) -> None:
    desk.sign_in("ada")
    seen: list[str] = []
    for n, (first, last, count) in enumerate([(1, 50, 50), (51, 100, 50), (101, 137, 37)], 1):
        page = desk.get(f"/queue?page={n}")
        assert f"Rows {first}-{last} of 137" in page and f"page {n} of 3" in page
        assert len(rows(page)) == count
        seen += rows(page)
    assert sorted(seen) == sorted(desk.seeded.item_ids)  # every item once: none twice
    assert seen == [i.id for i in desk.px.reviews.list()]  # in review order, most severe first
    first, last = desk.get("/queue"), desk.get("/queue?page=3")
    assert 'class="prev disabled"' in first and link(first, "next") == "/queue?page=2"
    assert 'class="next disabled"' in last and link(last, "prev") == "/queue?page=2"
    assert rows(desk.get("/queue?page=99")) == rows(last)  # past the end: the last page
    assert rows(desk.get("/queue?page=nope")) == rows(first)
    assert "Rows 1-100 of 137" in desk.get("/queue?size=100")
    assert "Rows 1-50 of 137" in desk.get("/queue?size=7")  # not an offered size


def test_filters_and_the_page_are_kept(desk: Desk) -> None:
    desk.sign_in("ada")
    billing = desk.seeded.by_queue["billing"]
    in_billing = {i.id for i in desk.px.reviews.list(queue="billing")}
    assert billing > 25
    page = desk.get("/queue?queue=billing&size=25")
    assert f"Rows 1-25 of {billing}" in page
    following = link(page, "next")
    assert following == "/queue?queue=billing&page=2&size=25"
    second = desk.get(following)
    assert f"Rows 26-{min(50, billing)} of {billing}" in second
    assert set(rows(second)) <= in_billing and not set(rows(second)) & set(rows(page))
    # The live refresh asks for the same page of the same list.
    refresh = re.search(r'hx-get="([^"]+)"', second)
    assert refresh is not None
    assert html.unescape(refresh.group(1)) == "/queue/rows?queue=billing&page=2&size=25"
    fragment = desk.get(html.unescape(refresh.group(1)))
    assert rows(fragment) == rows(second) and "Rows 26-" in fragment
    # Items opened from the list carry it, so the item page knows where it stands.
    assert f'href="/items/{rows(second)[0]}?queue=billing&amp;size=25"' in second
    kinds = desk.get("/queue?kind=sample")
    assert "No rows" in kinds and "Nothing waiting" in kinds


def test_a_very_long_list_says_it_is_cut(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_data, "MOST", 100)
    desk.sign_in("ada")
    page = desk.get("/queue")
    assert "Rows 1-50 of 100+" in page and "Only the newest 100 items are listed" in page


def test_a_reviewer_pages_through_their_queues_only(desk: Desk) -> None:
    desk.sign_in("lee")
    mine = desk.seeded.by_queue["ops"] + desk.seeded.by_queue["qa"]
    page = desk.get("/queue")
    assert f"of {mine}" in page
    assert not set(rows(page)) - {
        i.id for q in ("ops", "qa") for i in desk.px.reviews.list(queue=q)
    }
    assert "Rows 1-" not in desk.get("/queue?queue=billing")  # not theirs: nothing listed


def test_the_item_page_says_where_it_stands(desk: Desk) -> None:
    desk.sign_in("ada")
    listed = [i.id for i in desk.px.reviews.list(queue="finance")]
    page = desk.get(f"/items/{listed[1]}?queue=finance")
    assert f"<b>2</b> of {len(listed)}" in page and "finance · pending" in page
    assert f'href="/items/{listed[0]}?queue=finance" rel="prev"' in page
    assert f'href="/items/{listed[2]}?queue=finance" rel="next"' in page
    assert 'href="/queue?queue=finance" id="back-to-list"' in page
    deep = [i.id for i in desk.px.reviews.list()][120]
    assert 'href="/queue?page=3" id="back-to-list"' in desk.get(f"/items/{deep}")
    assert f'action="/items/{listed[1]}/approve?queue=finance&amp;at=1"' in page


def test_a_decision_leads_to_the_next_item_of_the_same_list(desk: Desk) -> None:
    desk.sign_in("ada")
    csrf = desk.csrf()
    listed = [i.id for i in desk.px.reviews.list(queue="legal-and-compliance-review")]
    nav = "queue=legal-and-compliance-review"
    for n, item_id in enumerate(listed):
        verb, form = ("reject", {"reason": "notice period"}) if n % 2 else ("approve", {})
        r = desk.client.post(f"/items/{item_id}/{verb}?{nav}&at=0", data={"csrf": csrf, **form})
        assert r.status_code == 303
        if n + 1 < len(listed):
            assert r.headers["location"] == f"/items/{listed[n + 1]}?{nav}"
            page = desk.get(r.headers["location"])
            assert f"<b>1</b> of {len(listed) - n - 1}" in page
            assert ("Rejected" if verb == "reject" else "Approved") in page
        else:
            assert r.headers["location"] == f"/queue/done?{nav}"
            done = desk.get(r.headers["location"])
            assert "The queue is empty" in done and f'href="/queue?{nav}"' in done
    statuses = {desk.px.reviews.get(i).status for i in listed}
    assert statuses == ({"approved", "rejected"} if len(listed) > 1 else {"approved"})


def test_the_next_item_after_a_decision() -> None:
    ids = ["a", "b", "c", "d"]
    assert queue_data.next_after(["a", "c", "d"], "b", 1) == "c"  # the one that took its place
    assert queue_data.next_after(["a", "b", "c"], "d", 3) == "a"  # past the end: from the top
    assert queue_data.next_after(ids, "b", 1) == "c"  # still listed (status "all"): the next
    assert queue_data.next_after(ids, "d", 3) == "a"
    assert (
        queue_data.next_after(["x"], "x", 0) is None and queue_data.next_after([], "x", 0) is None
    )
    assert queue_data.next_after(["a"], "x", None) == "a"
    where = queue_data.position(ids, "c")
    assert (where.index, where.total, where.previous, where.next) == (2, 4, "b", "d")
    assert queue_data.position(ids, "z").index is None
    assert queue_data.position(ids, "z").next == "a"


def test_the_order_uses_the_review_items_severity(desk: Desk) -> None:
    for item in desk.px.reviews.list(status=None):
        light = queue_data.severity(
            item.risk, item.impact, item.sla_due, item.created_at, item.status, desk.now
        )
        assert light == item.severity(desk.now), item.id


def test_pager_bounds() -> None:
    p = queue_data.Pager.of(137, 3, 50)
    assert (p.start, p.end, p.pages, p.previous, p.next) == (101, 137, 3, 2, None)
    empty = queue_data.Pager.of(0, 5, 50)
    assert (empty.page, empty.start, empty.end, empty.pages) == (1, 0, 0, 1)
    assert queue_data.Pager.of(100, 9, 50).page == 2


def test_the_log_pages_from_a_snapshot(desk: Desk) -> None:
    desk.sign_in("ada")
    with desk.px.store.read() as conn:
        total = conn.exec_driver_sql("SELECT count(*) FROM proctor_audit_log").scalar()
    page = desk.get("/audit")
    assert f"Records 1-50 of {total}" in page
    following = link(page, "next")
    assert following == f"/audit?upto={total}&page=2"
    desk.px.reviews.approve(desk.seeded.item_ids[0], by="ada")  # the log grows meanwhile
    second = desk.get(following)
    assert f"Records 51-100 of {total}" in second  # the same records as when it began
    seqs = [int(s) for s in re.findall(r"<tr><td>(\d+)</td>", second)]
    assert seqs == list(range(total - 50, total - 100, -1))
    assert f"of {total + 1}" in desk.get("/audit")  # a new search sees the new record
    with desk.px.store.read() as conn:
        reviews = conn.exec_driver_sql(
            "SELECT count(*) FROM proctor_audit_log WHERE kind = 'decision' AND decision = 'review'"
        ).scalar()
    found = desk.get("/audit?kind=decision&decision=review")
    assert f"Records 1-50 of {reviews}" in found
    assert link(found, "next").startswith("/audit?decision=review&kind=decision&upto=")
    assert "No records" in desk.get("/audit?agent=nobody")
    last = -(-total // 50)
    beyond = desk.get(f"/audit?upto={total}&page=999")
    assert f"Records {(last - 1) * 50 + 1}-{total} of {total}" in beyond
    assert re.findall(r"<tr><td>(\d+)</td>", beyond)[-1] == "1"


def test_the_log_is_verified_on_demand_only(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    desk.sign_in("ada")

    def walk_everything(*args: object) -> None:
        raise AssertionError("the audit page walked the chain")

    with monkeypatch.context() as m:
        m.setattr(console_pages, "verify", walk_everything)
        page = desk.get("/audit")
    assert 'id="verify-button"' in page and "Verified" not in page
    r = desk.client.post(
        "/audit/verify", data={"csrf": desk.csrf()}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and "Verified at" in r.text and "records verified" in r.text
    plain = desk.client.post("/audit/verify", data={"csrf": desk.csrf()})  # without htmx
    assert plain.status_code == 303 and "Verified: ok" in desk.get("/audit")
    with desk.px.store.write() as tx:
        tx.sql("UPDATE proctor_audit_log SET agent = 'mallory' WHERE seq = 5")
    r = desk.client.post(
        "/audit/verify", data={"csrf": desk.csrf()}, headers={"HX-Request": "true"}
    )
    assert "Verification FAILED" in r.text and "record 5" in r.text


CRAFTED = """
policy: crafted
defaults: {decision: deny, queue: billing, review_timeout: 30d}
queues: {billing: {sla: 30m}, finance: {sla: 2h}, qa: {}}
agents: {bot: {tools: [refund]}}
rules:
  - {id: small, when: 'tool == "refund" && args.amount <= 1000.0', decide: review}
  - {id: big, when: 'tool == "refund" && args.amount > 1000.0', decide: review, queue: finance}
"""


def test_the_overview_shows_queue_depth_and_sla_breaches(sqlite_url: str) -> None:
    now = time.time()
    with Proctor(sqlite_url) as px:
        px.policy.apply(CRAFTED)

        @px.tool(agent="bot", wait=0)
        def refund(amount: float) -> str:
            return "ok"

        # billing: three opened 2 h ago (90 min past a 30 min SLA), two 5 min ago (in time);
        # finance: one 3 h ago (1 h past its 2 h SLA); qa: nothing.
        for ago, amount in [(7200, 10.0)] * 3 + [(300, 20.0)] * 2 + [(10800, 2000.0)]:
            with simulated(lambda ago=ago: now - ago), pytest.raises(ReviewPending):
                refund(amount)
        token = create_token(px.store, role="viewer", name="vic")[1]
        client = AppClient(create_app(px, sweep=False))
        try:
            sign_in(client, token)
            with simulated(lambda: now):
                page = get(client, "/")
        finally:
            client.close()

    def cells(panel: str, queue: str) -> list[str]:
        section = page.split(f'id="{panel}"', 1)[1].split("</section>", 1)[0]
        row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', section, re.S)
        if row is None:
            return []
        found = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
        return [re.sub(r"<[^>]+>", "", c).strip() for c in found]

    assert cells("queue-depth", "billing") == ["billing", "5", "2h 00m"]
    assert cells("queue-depth", "finance") == ["finance", "1", "3h 00m"]
    assert cells("queue-depth", "qa") == ["qa", "0", "-"]
    assert cells("sla-breaches", "billing") == ["billing", "3", "1h 30m"]
    assert cells("sla-breaches", "finance") == ["finance", "1", "60m"]
    assert cells("sla-breaches", "qa") == []

"""The console over a desk's worth of work (146 items waiting in five queues, three days of
decisions), in a real browser: paging, one-line rows, working through a list item after
item, the overview's panels and time axis, the policy page, and a phone's width."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.console_seed import POLICY, Seeded, seed
from tests.test_console import chromium, serve, shot

from proctor import Proctor
from proctor.policy import lifecycle
from proctor.policy.compile import compile_policy
from proctor.server.auth import create_token

PHONE = {"width": 375, "height": 740}
LEGAL = "legal-and-compliance-review"


@dataclass
class Desk:
    url: str
    px: Proctor
    seeded: Seeded
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with Proctor(f"sqlite:///{tmp_path}/desk.db") as px:
        seeded = seed(px)
        px.policy.apply(POLICY.replace("> 100.0", "> 150.0"), author="pat", message="raise limit")
        tokens = {
            "ada": create_token(px.store, role="admin", name="ada")[1],
            "lee": create_token(px.store, role="reviewer", name="lee", queues=[LEGAL, "ops"])[1],
        }
        with serve(px) as url:
            yield Desk(url, px, seeded, tokens)


def open_page(
    browser: Browser, desk: Desk, who: str, viewport: dict[str, int] | None = None
) -> Page:
    return signed_in(browser, desk.url, desk.tokens[who], viewport)


def signed_in(
    browser: Browser, url: str, token: str, viewport: dict[str, int] | None = None
) -> Page:
    page = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}).new_page()
    page.goto(url + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Review queue")
    return page


def row_heights(page: Page) -> list[float]:
    heights: list[float] = page.evaluate(
        "Array.from(document.querySelectorAll('table.queue tbody tr'))"
        ".map(r => r.getBoundingClientRect().height)"
    )
    return heights


def test_the_pages_over_a_desk_of_work(browser: Browser, desk: Desk) -> None:
    page = open_page(browser, desk, "ada")
    total = desk.seeded.pending
    expect(page.locator(".pager .count").first).to_have_text(f"Rows 1-50 of {total}")
    assert page.locator("table.queue tbody tr").count() == 50
    # One line a row, the table as wide as the window, long values cut short on screen and
    # whole on hover.
    for path in ("/queue", "/queue?queue=qa", f"/queue?queue={LEGAL}"):
        page.goto(desk.url + path)
        heights = row_heights(page)
        assert max(heights) - min(heights) < 1 and max(heights) < 45, (path, set(heights))
        width = page.evaluate("document.querySelector('table.queue').getBoundingClientRect().width")
        assert width >= 1280 - 2 * 20, width
    page.goto(desk.url + "/queue?queue=qa")
    first = page.locator("table.queue tbody tr").first
    item = desk.px.reviews.get(first.get_attribute("data-id") or "")
    assert json.loads(first.locator("td.args").get_attribute("title") or "") == item.args
    assert len(item.args["body"]) > 400  # a long reply, on one line
    page.goto(desk.url + "/queue")
    sla = page.locator("table.queue tbody tr").first.locator(".sla")
    expect(sla).to_have_class(re.compile("overdue"))
    expect(sla).to_contain_text("overdue ")
    shot(page, "load-queue")

    page.goto(desk.url + "/")
    depth = page.locator("#queue-depth tbody tr")
    assert depth.count() == 5
    assert depth.first.get_attribute("data-queue") == "billing"
    assert depth.first.locator("td").nth(1).inner_text() == str(desk.seeded.by_queue["billing"])
    assert page.locator("#sla-breaches tbody tr").count() >= 3
    # Three days of decisions: an hour axis, each label once (weekday and time).
    labels = page.locator("#outcomes svg text[text-anchor=middle]").all_text_contents()
    assert len(labels) >= 6 and len(set(labels)) == len(labels), labels
    assert all(re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d:00$", t) for t in labels), labels
    assert re.search(r"per [23] hours", page.inner_text("#outcomes"))
    shot(page, "load-overview")

    page.goto(f"{desk.url}/items/{desk.seeded.item_ids[-1]}")
    expect(page.locator("#progress")).to_contain_text(f"of {total}")
    shot(page, "load-item")
    page.goto(desk.url + "/audit")
    expect(page.locator(".pager .count").first).to_contain_text("Records 1-50 of ")
    shot(page, "load-audit")
    page.goto(desk.url + "/policies")
    expect(page.locator("pre.diff")).to_contain_text("150.0")
    shot(page, "load-policy")


def test_paging_keeps_the_filters_and_the_live_refresh_keeps_the_page(
    browser: Browser, desk: Desk
) -> None:
    page = open_page(browser, desk, "ada")
    page.click(".pager a.next >> nth=0")
    expect(page.locator(".pager .count").first).to_have_text(
        f"Rows 51-100 of {desk.seeded.pending}"
    )
    assert page.url.endswith("/queue?page=2")
    page.select_option("select[name=queue]", "billing")
    page.select_option("select[name=size]", "25")
    page.click("form.filters button")
    billing = desk.seeded.by_queue["billing"]
    expect(page.locator(".pager .count").first).to_have_text(f"Rows 1-25 of {billing}")
    page.click(".pager a.next >> nth=0")
    expect(page.locator(".pager .count").first).to_have_text(f"Rows 26-50 of {billing}")
    assert "queue=billing" in page.url and "size=25" in page.url and "page=2" in page.url
    listed = [r.get_attribute("data-id") for r in page.locator("table.queue tbody tr").all()]
    assert all(desk.px.reviews.get(i or "").queue == "billing" for i in listed)
    # Someone decides an item elsewhere: the list refreshes itself, on the same page.
    desk.px.reviews.approve(desk.px.reviews.list(queue="billing")[0].id, by="ana")
    with page.expect_response(lambda r: "/queue/rows" in r.url, timeout=10_000) as refresh:
        pass
    assert "page=2" in refresh.value.url and "queue=billing" in refresh.value.url
    expect(page.locator(".pager .count").first).to_have_text(f"Rows 26-50 of {billing - 1}")


def test_working_through_a_list_item_after_item(browser: Browser, desk: Desk) -> None:
    page = open_page(browser, desk, "lee")
    page.goto(f"{desk.url}/queue?queue={LEGAL}")
    waiting = [i.id for i in desk.px.reviews.list(queue=LEGAL)]
    n = len(waiting)
    assert n >= 4
    page.click("a.item-link >> nth=0")
    progress = page.locator("#progress")
    expect(progress).to_contain_text(f"1 of {n}")
    page.click("#approve")
    expect(page.locator(".flash")).to_contain_text("Approved close_account for")
    expect(progress).to_contain_text(f"1 of {n - 1}")  # the next item of the same list
    assert f"queue={LEGAL}" in page.url
    page.fill("input[name=reason]", "notice period not over")
    page.click("#reject")
    expect(page.locator(".flash")).to_contain_text("Rejected close_account for")
    expect(progress).to_contain_text(f"1 of {n - 2}")
    page.click("#next-item")
    expect(progress).to_contain_text(f"2 of {n - 2}")
    page.click("#back-to-list")
    expect(page.locator(".pager .count").first).to_have_text(f"Rows 1-{n - 2} of {n - 2}")
    page.click("a.item-link >> nth=0")
    for left in range(n - 2, 0, -1):
        expect(progress).to_contain_text(f"1 of {left}")
        page.click("#approve")
    expect(page.locator("#done")).to_contain_text("The queue is empty")
    page.click("#back-to-list")
    expect(page.locator("table.queue")).to_contain_text("Nothing waiting")
    assert page.url.endswith(f"/queue?queue={LEGAL}")
    statuses = [desk.px.reviews.get(i).status for i in waiting]
    assert statuses.count("rejected") == 1 and statuses.count("approved") == n - 1


def test_no_page_scrolls_sideways_on_a_phone(browser: Browser, desk: Desk) -> None:
    page = open_page(browser, desk, "ada", PHONE)
    qa_item = desk.px.reviews.list(queue="qa")[0].id
    pages = {
        "overview": "/",
        "queue": "/queue",
        "queue-2": "/queue?page=2",
        "queue-qa": "/queue?queue=qa",
        "item": f"/items/{desk.seeded.item_ids[-1]}",
        "item-long": f"/items/{qa_item}?queue=qa",
        "done": "/queue/done?kind=sample",
        "audit": "/audit",
        "audit-2": "/audit?page=2",
        "policy": "/policies",
        "run": "/runs/no-such-run",
        "missing": "/items/no-such-item",
    }
    wide = {}
    for name, path in pages.items():
        page.goto(desk.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            wide[name] = width
        for link in page.locator("header nav a").all():  # the nav wraps, all of it in view
            box = link.bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"], (name, box)
        if name in ("overview", "queue", "item", "audit", "policy"):
            shot(page, f"load-phone-{name}")
    page.goto(desk.url + "/")
    page.click("button.link")  # sign out
    page.goto(desk.url + "/login")
    if page.evaluate("document.documentElement.scrollWidth") > PHONE["width"]:
        wide["login"] = page.evaluate("document.documentElement.scrollWidth")
    assert not wide, wide


def test_the_policy_page_marks_the_shadow_and_shows_a_compact_diff(
    browser: Browser, desk: Desk
) -> None:
    stricter = POLICY.replace("> 100.0", "> 80.0")
    lifecycle.apply_shadow(
        desk.px.store, compile_policy(stricter, "shadow"), stricter, "pat", "try 80"
    )
    active = desk.px.policy.active()
    assert active is not None
    page = open_page(browser, desk, "ada")
    page.goto(desk.url + "/policies")
    expect(page.locator("#active-version")).to_have_text(active.version[:16])
    expect(page.locator("#shadow-version")).to_have_text(compile_policy(stricter, "s").version[:16])
    expect(page.locator("table.history tr.shadow .tag.shadow")).to_have_text("shadow")
    expect(page.locator("table.history tr.chosen .tag.active")).to_have_text("active")
    diff = page.inner_text("pre.diff")
    assert "\n\n" not in diff.strip()  # one line of text per line of diff, no blank ones
    assert len(diff.strip().splitlines()) == page.locator("pre.diff span").count()
    page.click("text=what the shadow changes")
    expect(page.locator("pre.diff")).to_contain_text("> 80.0")


def test_the_policy_page_says_how_to_apply_one(browser: Browser, tmp_path: Path) -> None:
    with Proctor(f"sqlite:///{tmp_path}/empty.db") as px:
        token = create_token(px.store, role="viewer", name="vic")[1]
        with serve(px) as url:
            page = signed_in(browser, url, token)
            page.goto(url + "/policies")
            text = page.inner_text("#no-policy")
    assert "No policy is active" in text and "every action is refused" in text
    assert "proctor policy apply FILE" in text
    assert f"curl -X POST {url}/api/v1/policies" in text

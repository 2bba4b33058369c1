"""The review console in a real browser (Debian's Chromium via Playwright) against a real
server on a loopback port, with agents blocked on decisions made in the pages."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from proctor import Proctor, Rejected, ReviewItem
from proctor.server.app import create_app
from proctor.server.auth import create_token

CHROMIUM = "/usr/bin/chromium"
# Screenshots land in build/screenshots; PROCTOR_SCREENSHOTS=docs/screenshots refreshes the
# ones the README shows.
SHOTS = Path(
    os.environ.get("PROCTOR_SCREENSHOTS", Path(__file__).parent.parent / "build" / "screenshots")
)
POLICY = """
policy: console-test
defaults: {decision: deny, queue: billing, review_timeout: 120s}
queues: {billing: {sla: 30m, escalate_to: finance}, finance: {sla: 2h}, qa: {}}
agents: {support-bot: {tools: [issue_refund, lookup_order]}}
risk: "has(args.amount) ? args.amount / 1000.0 : 0.0"
rules:
  - {id: ok, when: 'tool in ["issue_refund", "lookup_order"]', decide: allow}
  - {id: big, when: 'tool == "issue_refund" && args.amount > 100.0', decide: review,
     reason: Refunds over 100 need a billing lead}
  - {id: huge, when: 'tool == "issue_refund" && args.amount > 5000.0', decide: deny}
"""

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs Debian's chromium for the console tests (.ci/run installs it)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    url: str
    px: Proctor
    tokens: dict[str, str]
    effects: list[Any]

    def agent_call(self, amount: float, order: str = "A-1") -> Future[Any]:
        """An agent blocked (wait=None) on a refund until someone decides in the console."""
        px, effects = self.px, self.effects

        def call() -> Any:
            @px.tool(agent="support-bot", name="issue_refund")
            def issue_refund(order_id: str, amount: float) -> str:
                effects.append((order_id, amount))
                return f"refunded {amount} on {order_id}"

            with px.run(
                agent="support-bot",
                ticket="T-77",
                confidence=0.91,
                sources=["tickets/T-77", f"orders/{order}"],
            ):
                return issue_refund(order, amount)

        return ThreadPoolExecutor(max_workers=1).submit(call)

    def pending(self, timeout: float = 10) -> ReviewItem:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.px.reviews.list()
            if items:
                return items[0]
            time.sleep(0.02)
        raise AssertionError("no pending item")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def site(sqlite_url: str) -> Iterator[Site]:
    px = Proctor(sqlite_url)
    px.policy.apply(POLICY, author="pat", message="first")
    tokens = {
        "ana": create_token(px.store, role="reviewer", name="ana", queues=["billing", "finance"])[
            1
        ],
        "quinn": create_token(px.store, role="reviewer", name="quinn", queues=["qa"])[1],
        "vic": create_token(px.store, role="viewer", name="vic")[1],
        "bot": create_token(px.store, role="agent", name="bot", agents=["support-bot"])[1],
    }
    try:
        with serve(px) as url:
            yield Site(url, px, tokens, [])
    finally:
        px.close()


@contextlib.contextmanager
def serve(px: Proctor) -> Iterator[str]:
    """The app over ``px`` on a loopback port, in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(px, sweep=False), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


def login(page: Page, site: Site, who: str) -> None:
    page.goto(site.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", site.tokens[who])
    page.click("button[type=submit]")
    assert page.url.endswith("/queue"), page.url


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_bad_login_is_refused(page: Page, site: Site) -> None:
    page.goto(site.url + "/login")
    page.fill("input[name=token]", "pxt_nope_nope")
    page.click("button[type=submit]")
    assert "unknown or revoked" in page.inner_text("main")


def test_an_agent_token_cannot_sign_in(page: Page, site: Site) -> None:
    page.goto(site.url + "/login")
    page.fill("input[name=token]", site.tokens["bot"])
    page.click("button[type=submit]")
    assert page.url.endswith("/login")
    assert "Agent tokens cannot sign in to the console" in page.inner_text("main")
    page.goto(site.url + "/audit")
    assert page.url.endswith("/login")  # no session was made


def test_edit_and_approve_releases_the_agent(page: Page, site: Site) -> None:
    call = site.agent_call(250.0)
    item = site.pending()
    login(page, site, "ana")
    row = page.locator("table.queue tbody tr", has_text="issue_refund")
    assert row.count() == 1 and "billing" in row.inner_text()
    shot(page, "queue")
    page.click("a.item-link")
    assert page.url.endswith(f"/items/{item.id}")
    text = page.inner_text("main")
    assert "support-bot wants to call issue_refund" in text
    assert "Refunds over 100 need a billing lead" in text and "tickets/T-77" in text
    shot(page, "item")
    page.click("summary")
    page.fill("input[name=arg_amount]", "150")
    page.click("#preview-edit")
    assert "250.0" in page.inner_text("table.diff") and "150.0" in page.inner_text("table.diff")
    page.click("#confirm-edit")
    # The only item was decided: the console says the queue is empty and links back.
    expect(page.locator("#done")).to_contain_text("The queue is empty")
    expect(page.locator(".flash")).to_contain_text("Approved issue_refund for support-bot")
    assert call.result(timeout=15) == "refunded 150.0 on A-1"  # the agent continued
    assert site.effects == [("A-1", 150.0)]
    # Wait for what the item page needs (the recorded outcome), then look: no racing a
    # reload against the agent.
    wait_for(lambda: site.px.reviews.get(item.id).status == "done")
    page.goto(f"{site.url}/items/{item.id}")
    expect(page.locator(".outcome")).to_contain_text("The agent ran it")
    page.click("#back-to-list")
    expect(page.locator("table.queue")).to_contain_text("Nothing waiting")  # it left the queue
    run_id = site.px.reviews.get(item.id).run_id
    page.goto(f"{site.url}/runs/{run_id}")
    assert "issue_refund" in page.inner_text("main")
    shot(page, "run")
    page.goto(site.url + "/")
    assert page.locator("svg.chart").count() == 5
    shot(page, "overview")


def test_the_overview_ranks_open_problems(page: Page, site: Site) -> None:
    px = site.px

    @px.tool(agent="support-bot", name="lookup_order")
    def lookup_order(order_id: str) -> str:
        raise ConnectionError("orders database unreachable")

    for i in range(4):
        with pytest.raises(ConnectionError):
            lookup_order(f"A-{i}")
    login(page, site, "vic")
    page.goto(site.url + "/")
    rows = page.locator("#problems tr.problem")
    assert rows.count() == 1
    assert rows.first.get_attribute("class") == "problem critical"
    text = rows.first.inner_text()
    assert "lookup_order is failing for support-bot" in text
    assert "4 of 4 calls failed (100%); most often ConnectionError" in text
    rows.first.locator("a").click()  # to the failed calls in the decision log
    assert page.url.endswith("/audit?agent=support-bot&tool=lookup_order&kind=outcome")
    assert page.locator("table tr").count() == 5  # header + four failed calls
    page.goto(site.url + "/")
    shot(page, "problems")


def test_new_items_appear_without_a_reload(page: Page, site: Site) -> None:
    login(page, site, "ana")
    assert "Nothing waiting" in page.inner_text("table.queue")
    call = site.agent_call(300.0, "A-9")
    page.wait_for_selector("text=issue_refund", timeout=10_000)  # htmx polls the rows
    site.px.reviews.reject(site.pending().id, by="ana", reason="cleanup")
    with pytest.raises(Rejected):
        call.result(timeout=15)


def test_reject_with_a_reason_reaches_the_agent(page: Page, site: Site) -> None:
    call = site.agent_call(400.0)
    item = site.pending()
    login(page, site, "ana")
    page.goto(f"{site.url}/items/{item.id}")
    page.fill("input[name=reason]", "duplicate of T-12")
    page.click("#reject")
    with pytest.raises(Rejected) as info:
        call.result(timeout=15)
    assert info.value.reason == "duplicate of T-12"
    expect(page.locator(".flash")).to_contain_text("Rejected issue_refund for support-bot")
    expect(page.locator("#done")).to_contain_text("Nothing left to review")
    assert site.px.reviews.get(item.id).status == "rejected" and site.effects == []


def test_escalate_moves_the_item(page: Page, site: Site) -> None:
    call = site.agent_call(600.0)
    item = site.pending()
    login(page, site, "ana")
    page.goto(f"{site.url}/items/{item.id}")
    page.select_option("select[name=to]", "finance")
    page.fill("form[action*='/escalate'] input[name=note]", "over my limit")
    page.click("#escalate")
    expect(page.locator(".flash")).to_contain_text("Escalated issue_refund for support-bot")
    assert site.px.reviews.get(item.id).queue == "finance"
    page.goto(f"{site.url}/items/{item.id}")
    expect(page.locator("main")).to_contain_text("in queue finance")
    site.px.reviews.approve(item.id, by="fin")
    assert call.result(timeout=15) == "refunded 600.0 on A-1"


def test_reviewer_without_the_queue_cannot_act(page: Page, site: Site) -> None:
    call = site.agent_call(250.0)
    item = site.pending()
    login(page, site, "quinn")  # reviews qa only
    assert "Nothing waiting" in page.inner_text("table.queue")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")  # a genuine one
    response = page.goto(f"{site.url}/items/{item.id}")
    assert response is not None and response.status == 404
    forced = page.request.post(
        f"{site.url}/items/{item.id}/approve", form={"csrf": csrf or "", "note": "sneaky"}
    )
    assert forced.status in (403, 404)
    assert site.px.reviews.get(item.id).status == "pending"
    site.px.reviews.reject(item.id, by="ana", reason="cleanup")
    with pytest.raises(Rejected):
        call.result(timeout=15)


def test_viewer_sees_no_action_buttons(page: Page, site: Site) -> None:
    call = site.agent_call(250.0)
    item = site.pending()
    login(page, site, "vic")
    page.goto(f"{site.url}/items/{item.id}")
    assert "wants to call issue_refund" in page.inner_text("main")
    assert page.locator("#approve").count() == 0 and page.locator("#reject").count() == 0
    assert page.locator("form[action*='/items/']").count() == 0
    site.px.reviews.reject(item.id, by="ana", reason="cleanup")
    with pytest.raises(Rejected):
        call.result(timeout=15)


def test_posts_without_the_csrf_token_are_refused(page: Page, site: Site) -> None:
    call = site.agent_call(250.0)
    item = site.pending()
    login(page, site, "ana")
    missing = page.request.post(f"{site.url}/items/{item.id}/approve", form={"note": "x"})
    wrong = page.request.post(
        f"{site.url}/items/{item.id}/approve", form={"csrf": "forged", "note": "x"}
    )
    assert missing.status == 403 and wrong.status == 403
    assert "CSRF" in missing.text()
    assert site.px.reviews.get(item.id).status == "pending"
    site.px.reviews.reject(item.id, by="ana", reason="cleanup")
    with pytest.raises(Rejected):
        call.result(timeout=15)


def test_policy_and_audit_pages(page: Page, site: Site) -> None:
    site.px.policy.apply(POLICY.replace("100.0", "150.0"), author="pat", message="raise limit")
    login(page, site, "vic")
    page.goto(site.url + "/policies")
    text = page.inner_text("main")
    assert "raise limit" in text and "+" in page.inner_text("pre.diff")
    page.goto(site.url + "/audit?kind=policy.apply")
    assert "Verified" not in page.inner_text("main")  # not on every view: on demand
    page.click("#verify-button")
    expect(page.locator("#verify")).to_contain_text("Verified at")
    assert "records verified" in page.inner_text("#verify")
    assert page.locator("table tr").count() == 3  # header + two policy changes


def test_screenshots_are_real_pngs() -> None:
    for name in ("queue", "item", "run", "overview", "problems"):
        path = SHOTS / f"{name}.png"
        if path.exists():
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shutil.which("chromium") or Path(CHROMIUM).exists()

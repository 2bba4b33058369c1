"""The overview's circuit breakers and self-healing figures in a real browser: a breaker
opened by real failing tool calls, seen by a reviewer, reset by an admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.test_breakers_view import POLICY, records, workload
from tests.test_console import chromium, serve, shot  # skips this module without chromium

from proctor import Proctor
from proctor.server.auth import create_token


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


def sign_in(page: Page, url: str, token: str) -> None:
    page.context.clear_cookies()
    page.goto(url + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    assert page.url.endswith("/queue"), page.url
    page.goto(url + "/")


def test_breakers_on_the_overview_and_an_admin_resets_one(page: Page, sqlite_url: str) -> None:
    px = Proctor(sqlite_url)
    try:
        px.policy.apply(POLICY)
        _, admin = create_token(px.store, role="admin", name="root")
        _, reviewer = create_token(px.store, role="reviewer", name="ana", queues=["ops"])
        with serve(px) as url:
            workload(px)  # real calls that fail, retry, fall back and open two breakers

            sign_in(page, url, reviewer)
            pay = page.locator("#breakers tr[data-scope='bot/pay']")
            expect(pay.locator(".tag")).to_have_text("open")
            expect(pay.locator("td.rate")).to_contain_text("100% (4 of 4)")
            expect(pay.locator("td.opened")).to_contain_text("ago")
            expect(page.locator("#breakers tr[data-scope='*/ship'] .tag")).to_have_text("open")
            assert page.locator("#breakers button.reset").count() == 0  # not an admin
            expect(page.locator("#healing dd.failed")).to_have_text("6")
            expect(page.locator("#healing dd.recovered")).to_contain_text("4 (67%)")
            expect(page.locator("#healing dd.by-retry")).to_have_text("1")
            expect(page.locator("#healing dd.by-fallback")).to_have_text("2")
            expect(page.locator("#healing dd.by-lookup")).to_have_text("1")
            expect(page.locator("#healing dd.escalated")).to_have_text("1")
            # A reviewer's own post (with a good CSRF token) is refused all the same.
            csrf = page.locator("input[name=csrf]").first.get_attribute("value")
            refused = page.request.post(
                url + "/breakers/bot/pay/reset", form={"csrf": csrf or ""}, max_redirects=0
            )
            assert refused.status == 403

            sign_in(page, url, admin)
            shot(page, "overview-breakers")
            pay.locator("button.reset").click()
            expect(page.locator(".flash")).to_contain_text("Closed the circuit breaker bot/pay")
            expect(pay.locator(".tag")).to_have_text("closed")
            assert pay.locator("button.reset").count() == 0  # nothing left to reset
            expect(page.locator("#breakers tr[data-scope='*/ship'] button.reset")).to_have_count(1)
            # The star and slash of a per-tool scope survive the form's URL.
            page.locator("#breakers tr[data-scope='*/ship'] button.reset").click()
            expect(page.locator(".flash")).to_contain_text("Closed the circuit breaker */ship")
        closed = records(px, "breaker.closed")
        assert [(r["scope"], r["by"]) for r in closed] == [("bot/pay", "root"), ("*/ship", "root")]
        denied = records(px, "access.denied")
        assert any(r.get("path") == "/breakers/bot/pay/reset" for r in denied)
    finally:
        px.close()

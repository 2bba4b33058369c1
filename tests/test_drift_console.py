"""The console's Drift pages in a real browser against a real server on loopback: the
monitors, one monitor's histogram and timeline drawn on the server, its detections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect
from tests.test_console import CHROMIUM, chromium, serve, shot  # noqa: F401  (skips without it)
from tests.test_drift_monitor import lookups, policy, refunds

from proctor import Proctor
from proctor.drift.monitor import DriftMonitor
from proctor.server.auth import create_token


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_the_drift_pages_show_reference_current_timeline_and_response(
    sqlite_url: str, browser: Browser
) -> None:
    with Proctor(sqlite_url) as px:
        px.policy.apply(policy(0.1))
        refunds(px, 300, 50.0, seed=1)
        refunds(px, 200, 50.0, seed=2)
        lookups(px, 400, seed=3)
        DriftMonitor(px.store).check()
        refunds(px, 100, 85.0, seed=4)
        DriftMonitor(px.store).check()
        token = create_token(px.store, role="viewer", name="vic")[1]
        with serve(px) as url:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(url + "/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.click("nav >> text=Drift")
            rows = page.locator("#monitors tbody tr, #monitors tr:has(td)")
            expect(rows.first).to_contain_text("refund-amount")
            expect(rows.first.locator(".tag")).to_have_text("drift")
            expect(page.locator("table.detections")).to_contain_text("bot/refund stage 3 → 2")
            page.click("#monitors >> text=refund-amount")
            expect(page.locator("h1")).to_contain_text("refund-amount")
            histogram = page.locator("#distribution svg")
            expect(histogram).to_have_attribute(
                "aria-label", "reference against the latest window (share of events)"
            )
            assert histogram.locator("rect").count() >= 2 * 12  # a bar per bin for each side
            timeline = page.locator("#timeline svg")
            assert timeline.locator("circle").count() == 3  # windows of 100 after the reference
            expect(timeline.locator("circle[r='4']")).to_have_count(1)  # the detection
            expect(page.locator("table.detections")).to_contain_text("ks")
            shot(page, "drift")
            context.close()

"""The owner's path in a real browser: a wrong payment-method mapping → the banner counts the problems →
the mapping is fixed on the page → the problems retry by themselves and close → "All in step", live,
without a reload. The page has no horizontal overflow at 1280 px and at 390 px. Screenshots land in
``test-output/`` (the one of the problems is also the picture in docs/sync-log.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbconnect.db.models import Location
from qbconnect.sandbox.stack import Stack
from tests.conftest import TEST_ADMIN
from tests.support.browser import BROWSER_MARKS, CHROMIUM, LAUNCH_ARGS, NO_OVERFLOW, OUTPUT
from tests.support.stack_fixtures import build_stack

pytestmark = BROWSER_MARKS


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Stack, str, str]]:
    stack = build_stack(tmp_path)
    location_id = stack.install_crm_location(name="Acme Plumbing")
    realm_id = stack.connect_quickbooks(location_id, name="Acme Plumbing LLC", country="US")
    stack.drain()
    yield stack, location_id, realm_id
    stack.stop()


def _settings(stack: Stack, location_id: str, **values: Any) -> None:
    with stack.runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        assert location is not None
        location.settings = {**(location.settings or {}), **values}


def test_wrong_mapping_then_fixed_on_the_page(shop: tuple[Stack, str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    stack, location_id, realm_id = shop
    _settings(stack, location_id, payment_method_map={"visa": "999"})
    contact = stack.crm.create_contact(location_id, firstName="Kira", lastName="Garcia", email="kira@example.com")
    for amount in (59.38, 187.99, 885):
        stack.crm.create_order(
            location_id,
            contact_id=contact["id"],
            source_type="funnel",
            source_sub_type="one_step_order_form",
            items=[{"name": "Course", "amount": amount}],
        )
    stack.crm.flush_webhooks()
    stack.drain()
    assert stack.qbo.entities(realm_id, "SalesReceipt") == []
    valid_method = str(stack.qbo.entities(realm_id, "PaymentMethod")[0]["Id"])

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stack.service_url}/settings/integrations?location_id={location_id}")
            page.get_by_label("Admin token").fill(TEST_ADMIN)
            page.get_by_role("button", name="Sign in").click()

            expect(page.locator("#health-text")).to_have_text("3 items need your attention")
            problems = page.locator(".problem")
            expect(problems).to_have_count(3)
            expect(problems.first).to_contain_text("Payment methods → QuickBooks payment methods")
            assert page.evaluate(NO_OVERFLOW)
            page.screenshot(path=str(OUTPUT / "sync-log-1280-attention.png"), full_page=True)
            page.screenshot(path=str(OUTPUT / "sync-log.png"))  # the top of the page, as docs/sync-log.md shows it

            page.set_viewport_size({"width": 390, "height": 844})
            first_row = page.locator(".log-row summary").first
            first_row.click()
            assert page.evaluate(NO_OVERFLOW), page.evaluate("document.documentElement.scrollWidth")
            expect(problems.first.get_by_role("button", name="Retry")).to_be_visible()
            problems.first.get_by_role("button", name="Retry").scroll_into_view_if_needed()
            box = problems.first.get_by_role("button", name="Retry").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390
            page.screenshot(path=str(OUTPUT / "sync-log-390-attention.png"), full_page=True)

            page.set_viewport_size({"width": 1280, "height": 900})
            # The mapping is chosen by name: the broken id shows as inactive or deleted until replaced.
            method = page.get_by_role("combobox", name="QuickBooks payment method for Visa")
            expect(method).to_contain_text("(inactive or deleted)")
            method.select_option(valid_method)
            page.get_by_role("button", name="Save settings").click()
            expect(page.get_by_text("Settings saved.")).to_be_visible()
            stack.drain()  # the worker runs the three retries
            # The page refreshes itself: no reload between the drain and "All in step".
            expect(page.locator("#health-text")).to_contain_text("All in step", timeout=30_000)
            expect(page.locator(".problem")).to_have_count(0)
            # The history no longer shows a red failure for what is now booked.
            expect(page.locator("#sync-log summary .pill-failed")).to_have_count(0, timeout=30_000)
            receipts = page.locator("#sync-log summary").filter(has_text="Sales receipt")
            expect(receipts.locator(".pill-done")).to_have_count(3, timeout=30_000)  # the history refreshes itself
            assert page.evaluate(NO_OVERFLOW)
            page.screenshot(path=str(OUTPUT / "sync-log-1280-in-step.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate(NO_OVERFLOW), page.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(OUTPUT / "sync-log-390-in-step.png"), full_page=True)
        finally:
            browser.close()
    assert len(stack.qbo.entities(realm_id, "SalesReceipt")) == 3  # booked once each, no duplicate

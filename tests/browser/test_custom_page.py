"""The page as the CRM shows it: framed inside the CRM emulator's stand-in Settings > Integrations page,
which answers REQUEST_USER_DATA with the user context encrypted with the app's Shared Secret. The page
opens without a login; the admin maps a tax by name, saves, and the sales receipt that failed on the old
mapping is retried by itself and turns synced. Checked at 1280 px and 390 px; screenshots in
``test-output/``."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from qbconnect.db.models import Activity, Location
from qbconnect.sandbox.stack import Stack
from tests.support.browser import BROWSER_MARKS, CHROMIUM, LAUNCH_ARGS, NO_OVERFLOW, OUTPUT
from tests.support.stack_fixtures import build_stack

pytestmark = BROWSER_MARKS


@pytest.fixture
def uk_shop(tmp_path: Path) -> Iterator[tuple[Stack, str, str]]:
    stack = build_stack(tmp_path)
    location_id = stack.install_crm_location(name="Acme UK", country="GB")
    realm_id = stack.connect_quickbooks(location_id, name="Acme UK Ltd", country="GB", home_currency="USD")
    stack.drain()
    yield stack, location_id, realm_id
    stack.stop()


def _failed_vat_sale(stack: Stack, location_id: str) -> str:
    """A GB checkout with 20% VAT while "VAT" is mapped to a tax code QuickBooks does not have."""
    with stack.runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        assert location is not None
        location.settings = {**(location.settings or {}), "tax_code_map": {"VAT": "999"}}
    contact = stack.crm.create_contact(location_id, firstName="Kira", lastName="Garcia", email="kira@example.com")
    order = stack.crm.create_order(
        location_id,
        contact_id=contact["id"],
        source_type="website",
        source_sub_type="store",
        items=[{"name": "Guide", "amount": 50}],
        tax=Decimal("10.00"),
    )
    stack.crm.orders[order["_id"]]["taxSummary"][0].update({"name": "VAT", "rate": Decimal(20)})
    stack.crm.flush_webhooks()
    stack.drain()
    with stack.runtime.sessions() as session:
        failed = [a for a in session.query(Activity).all() if a.status == "failed"]
    assert failed, "the wrong tax code should have failed the sale"
    return str(order["_id"])


def test_framed_in_the_crm_the_admin_fixes_a_tax_mapping_by_name(uk_shop: tuple[Stack, str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    stack, location_id, realm_id = uk_shop
    _failed_vat_sale(stack, location_id)
    codes = {str(c["Name"]): str(c["Id"]) for c in stack.qbo.entities(realm_id, "TaxCode")}
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{stack.crm_url}/ui/locations/{location_id}/integrations")
            app = page.frame_locator("#app-frame")
            # Signed in by the CRM's user context: no login form, the location's own page.
            expect(app.locator("h1")).to_have_text("QB Connect", timeout=30_000)
            expect(app.locator("input[name=token]")).to_have_count(0)
            expect(app.locator("#health-text")).to_contain_text("need", timeout=15_000)
            tax = app.get_by_role("combobox", name="QuickBooks tax code for VAT", exact=True)
            expect(tax).to_contain_text("(inactive or deleted)")
            tax.select_option(label="20.0% S")
            page.screenshot(path=str(OUTPUT / "custom-page-1280-mapping.png"), full_page=True)
            app.get_by_role("button", name="Save settings").click()
            expect(app.get_by_text("Settings saved.")).to_be_visible(timeout=15_000)
            stack.drain()  # the worker runs the retry the save queued
            expect(app.locator("#health-text")).to_contain_text("All in step", timeout=30_000)
            frame = page.frame(url=lambda url: "/settings/integrations" in url)
            assert frame is not None and frame.evaluate(NO_OVERFLOW)
            page.screenshot(path=str(OUTPUT / "custom-page-1280-in-step.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            assert frame.evaluate(NO_OVERFLOW), frame.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(OUTPUT / "custom-page-390.png"), full_page=True)
        finally:
            browser.close()
    (receipt,) = stack.qbo.entities(realm_id, "SalesReceipt")
    lines = [ln for ln in receipt["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in lines] == [codes["20.0% S"]]
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("60.00")
    with stack.runtime.sessions() as session:
        location = session.get(Location, location_id)
        assert location is not None and location.settings["tax_code_map"]["VAT"] == codes["20.0% S"]

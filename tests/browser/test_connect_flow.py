"""A real browser connects QuickBooks: log in, "Connect to QuickBooks", the sandbox's consent page, back.

Uses Debian's chromium through Playwright; the QBO sandbox shows its consent page (no auto-approve).
The screenshot lands in ``test-output/`` at the repository root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qbconnect.sandbox.stack import Stack
from tests.conftest import TEST_ADMIN
from tests.support.browser import BROWSER_MARKS, CHROMIUM, LAUNCH_ARGS, OUTPUT
from tests.support.stack_fixtures import build_stack

pytestmark = BROWSER_MARKS


@pytest.fixture
def consent_stack(tmp_path: Path) -> Iterator[Stack]:
    built = build_stack(tmp_path, qbo_options={"auto_approve": False})
    yield built
    built.stop()


def test_admin_connects_quickbooks_in_a_browser(consent_stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    stack = consent_stack
    location_id = stack.install_crm_location(name="Acme Plumbing")
    stack.qbo.add_company(name="Acme Plumbing LLC", country="US")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{stack.service_url}/settings/integrations?location_id={location_id}")
            expect(page.get_by_role("heading", name="Admin sign-in")).to_be_visible()
            page.get_by_label("Admin token").fill(TEST_ADMIN)
            page.get_by_role("button", name="Sign in").click()

            page.get_by_role("link", name="Connect to QuickBooks").click()
            expect(page.get_by_role("heading", name="Connect your app to QuickBooks")).to_be_visible()
            page.get_by_label("Acme Plumbing LLC").check()
            page.get_by_role("button", name="Connect").click()

            expect(page.locator("#company-name")).to_have_text("Acme Plumbing LLC")
            expect(page.get_by_text("QuickBooks is connected.")).to_be_visible()
            expect(page.get_by_role("button", name="Disconnect")).to_be_visible()
            page.screenshot(path=str(OUTPUT / "connect-flow.png"), full_page=True)
        finally:
            browser.close()
    with stack.runtime.sessions() as session:
        from sqlalchemy import select

        from qbconnect.db.models import QboConnection

        conn = session.execute(select(QboConnection)).scalar_one()
    assert conn.location_id == location_id and conn.company_name == "Acme Plumbing LLC"

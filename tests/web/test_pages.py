"""Settings > Integrations: login with a signed session cookie, CSRF on forms, what the page shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing

import httpx
import pytest
from sqlalchemy import select

from qbconnect.db.models import Activity, Location, QboConnection
from qbconnect.sandbox.stack import Stack
from qbconnect.services.qbo_lists import clear_cache
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(base_url: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    form = client.get("/login", params={"next": "/settings/integrations"})
    token = CSRF.search(form.text)
    assert token is not None
    answer = client.post(
        "/login", data={"token": TEST_ADMIN, "csrf_token": token.group(1), "next": "/settings/integrations"}
    )
    assert answer.status_code == 303, answer.text
    return client


@pytest.fixture
def browser(connected: Connected) -> Iterator[httpx.Client]:  # noqa: F811
    with closing(login(connected.stack.service_url)) as client:
        yield client


def page(client: httpx.Client, location_id: str) -> httpx.Response:
    answer = client.get("/settings/integrations", params={"location_id": location_id})
    assert answer.status_code == 200, answer.text
    return answer


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None
    return found.group(1)


def test_pages_redirect_to_login_and_login_sets_a_safe_cookie(stack: Stack) -> None:  # noqa: F811
    base = stack.service_url
    answer = httpx.get(f"{base}/settings/integrations?location_id=x")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fsettings%2Fintegrations%3Flocation_id%3Dx"
    with httpx.Client(base_url=base, follow_redirects=False) as client:
        form = client.get("/login", params={"next": "//evil.example/"})
        token = csrf_of(form.text)
        wrong = client.post("/login", data={"token": "nope", "csrf_token": token, "next": "/"})
        assert wrong.status_code == 401 and "not right" in wrong.text
        token = csrf_of(wrong.text)
        forged = client.post("/login", data={"token": TEST_ADMIN, "csrf_token": "forged", "next": "/"})
        assert forged.status_code == 401 and "expired" in forged.text
        token = csrf_of(forged.text)
        ok = client.post("/login", data={"token": TEST_ADMIN, "csrf_token": token, "next": "//evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/settings/integrations"
        cookie = next(h for h in ok.headers.get_list("set-cookie") if h.startswith("qbc_session="))
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        assert TEST_ADMIN not in cookie
    # A tampered cookie is not a session.
    value = cookie.split(";")[0].split("=", 1)[1]
    tampered = httpx.get(
        f"{base}/settings/integrations", cookies={"qbc_session": value[:-3] + "abc"}, follow_redirects=False
    )
    assert tampered.status_code == 303 and tampered.headers["location"].startswith("/login")


def test_not_connected_page_offers_connect_to_quickbooks(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="New Shop")
    with closing(login(stack.service_url)) as client:
        html = page(client, location_id).text
    assert "Connect to QuickBooks" in html
    assert f'href="/connect/quickbooks?location_id={location_id}"' in html
    assert "Not connected" in html


def test_connected_page_shows_company_health_and_forms(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    html = page(browser, connected.location_id).text
    assert "Acme Plumbing LLC" in html and connected.realm_id in html
    assert "Connected since" in html and "days left" in html
    assert 'action="/settings/integrations/disconnect"' in html
    assert "Review requests are off because no review link is set" in html
    # Pick lists come from the company's QuickBooks lists.
    assert ">Sales of Product Income</option>" in html and ">Checking</option>" in html
    assert ">Widget</option>" in html
    # Every POST form carries the CSRF token.
    forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, flags=re.S)
    assert forms and all('name="csrf_token"' in form for form in forms)
    assert "Preview" in html and "Acme Plumbing LLC" in html.split("review-preview")[1]


def test_settings_form_saves_and_refuses_without_csrf(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    token = csrf_of(page(browser, connected.location_id).text)
    fields = {
        "location_id": connected.location_id,
        "sync_invoices": "on",
        "import_contacts": "on",
        "review_request_enabled": "on",
        "review_request_channel": "SMS",
        "review_link": "https://g.page/r/acme/review",
        "review_subject": "Thanks!",
        "review_message": "Hi {first_name}, review {business_name}: {review_link}",
        "item_strategy": "match_or_create",
        "tax_code_map.key.0": "VAT|20",
        "tax_code_map.value.0": "3",
        "tax_code_map.key.1": "",
        "tax_code_map.value.1": "",
        "contacts_without_email": "skip",
        "contact_tag": "quickbooks",
        "transaction_poll_minutes": "7",
        "refund_lookback_days": "30",
    }
    refused = browser.post("/settings/integrations/settings", data={**fields, "csrf_token": "wrong"})
    assert refused.status_code == 403
    saved = browser.post("/settings/integrations/settings", data={**fields, "csrf_token": token})
    assert saved.status_code == 303 and "saved=1" in saved.headers["location"]
    with connected.stack.runtime.sessions() as session:
        location = session.get(Location, connected.location_id)
        assert location is not None
        stored = location.settings
    assert stored["sync_sales_receipts"] is False and stored["sync_invoices"] is True
    assert stored["review_request_channel"] == "SMS" and stored["transaction_poll_minutes"] == 7
    assert stored["tax_code_map"] == {"VAT|20": "3"}
    assert "order_form" in stored["receipt_kinds_disabled"]  # no receipt kind box was ticked
    html = page(browser, connected.location_id).text
    assert "Review requests are off" not in html

    bad = browser.post(
        "/settings/integrations/settings",
        data={**fields, "csrf_token": token, "review_link": "nope"},
    )
    assert bad.status_code == 422
    assert "not saved" in bad.text
    assert 'value="nope"' in bad.text  # what was typed is kept


def test_api_writes_with_the_cookie_need_the_csrf_header(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    token = csrf_of(page(browser, connected.location_id).text)
    url = f"/api/locations/{connected.location_id}/settings"
    assert browser.get(url).status_code == 200
    assert browser.patch(url, json={"sync_invoices": False}).status_code == 403
    assert browser.patch(url, json={"sync_invoices": False}, headers={"X-CSRF-Token": token}).status_code == 200


def test_disconnect_and_retry_forms(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    with connected.stack.runtime.sessions.begin() as session:
        row = Activity(
            location_id=connected.location_id,
            kind="invoice",
            entity_id="inv-9",
            direction="crm_to_qbo",
            status="failed",
            error_category="permanent",
            error_message="QuickBooks refused the invoice: the customer is inactive",
            attempts=1,
        )
        session.add(row)
        session.flush()
        activity_id = row.id
    html = page(browser, connected.location_id).text
    assert "the customer is inactive" in html and ">Retry</button>" in html
    token = csrf_of(html)
    partial = browser.get("/settings/integrations/sync-log", params={"location_id": connected.location_id})
    assert partial.status_code == 200 and "the customer is inactive" in partial.text
    retried = browser.post(
        "/settings/integrations/retry",
        data={"location_id": connected.location_id, "activity_id": str(activity_id), "csrf_token": token},
    )
    assert retried.status_code == 303 and "retried=1" in retried.headers["location"]
    no_csrf = browser.post("/settings/integrations/disconnect", data={"location_id": connected.location_id})
    assert no_csrf.status_code == 403
    gone = browser.post(
        "/settings/integrations/disconnect", data={"location_id": connected.location_id, "csrf_token": token}
    )
    assert gone.status_code == 303
    with connected.stack.runtime.sessions() as session:
        assert session.execute(select(QboConnection.status)).scalar_one() == "disconnected"
    html = browser.get(gone.headers["location"]).text
    assert "QuickBooks is disconnected" in html and "Connect to QuickBooks" in html
    assert "the customer is inactive" in html  # history kept


def test_locations_index(stack: Stack) -> None:  # noqa: F811
    first = stack.install_crm_location(name="One")
    stack.install_crm_location(name="Two")
    with closing(login(stack.service_url)) as client:
        html = client.get("/settings/integrations").text
    assert "One" in html and "Two" in html and first in html


def test_mappings_are_chosen_by_name_saved_as_ids_and_an_inactive_one_is_flagged(
    browser: httpx.Client,
    connected: Connected,  # noqa: F811
) -> None:
    shop, location_id, realm = connected.stack, connected.location_id, connected.realm_id
    contact = shop.crm.create_contact(location_id, firstName="Ann", lastName="Lee", email="ann@example.com")
    shop.crm.create_invoice(
        location_id,
        contact_id=str(contact["id"]),
        items=[
            {
                "name": "Boiler service",
                "productId": "prod-boiler",
                "qty": 1,
                "amount": "90.00",
                "taxes": [{"name": "Sales tax", "rate": "8.25"}],
            },
        ],
    )
    methods = {str(m["Name"]): str(m["Id"]) for m in shop.qbo.entities(realm, "PaymentMethod")}
    items = {str(i["Name"]): str(i["Id"]) for i in shop.qbo.entities(realm, "Item")}
    visa, item_name = methods["Visa"], sorted(items)[0]

    html = page(browser, location_id).text
    assert "Boiler service" in html and "Sales tax (8.25%)" in html  # the CRM side, by name
    assert f'<option value="{visa}">Visa</option>' in html  # the QuickBooks side, by name
    token = csrf_of(html)
    saved = browser.post(
        "/settings/integrations/settings",
        data={
            "location_id": location_id,
            "csrf_token": token,
            "item_strategy": "match_or_create",
            "contacts_without_email": "skip",
            "product_item_map.key.0": "prod-boiler",
            "product_item_map.value.0": items[item_name],
            "payment_method_map.key.0": "visa",
            "payment_method_map.value.0": visa,
        },
    )
    assert saved.status_code == 303
    with shop.runtime.sessions() as session:
        location = session.get(Location, location_id)
        assert location is not None
        assert location.settings["product_item_map"] == {"prod-boiler": items[item_name]}
        assert location.settings["payment_method_map"] == {"visa": visa}

    shop.qbo.ui_update(realm, "PaymentMethod", {"Id": visa, "Active": False})
    clear_cache()
    html = page(browser, location_id).text
    assert "(inactive or deleted)" in html and "mapping-missing" in html
    assert "make it active again in QuickBooks" in html


def test_white_label_name_and_colour_and_no_platform_name_on_the_page(
    browser: httpx.Client,
    connected: Connected,  # noqa: F811
) -> None:
    settings = connected.stack.runtime.settings
    settings.product_name, settings.brand_color = "Acme Books Sync", "#aa3300"
    html = page(browser, connected.location_id).text
    assert "Integrations · Acme Books Sync</title>" in html and "</span> Acme Books Sync</div>" in html
    assert "--accent: #aa3300" in html
    assert "QB Connect" not in html and "HighLevel" not in html
    listing = browser.get("/login").text
    assert "Acme Books Sync" in listing and "HighLevel" not in listing


def test_brand_colour_must_be_a_hex_colour() -> None:
    from pydantic import ValidationError

    from qbconnect.config import Settings

    with pytest.raises(ValidationError):
        Settings(_env_file=None, brand_color="red; background: url(x)")  # type: ignore[call-arg]

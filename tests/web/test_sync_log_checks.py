"""Pre-flight checks: custom numbers, automated sales tax, currencies, closing date, Undeposited Funds, tax
codes of a non-US company — from stored facts, QuickBooks asked only for the account (and that cached)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qbconnect.db.models import Activity, Location, QboConnection
from qbconnect.sandbox.stack import Stack
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@pytest.fixture
def api(connected: Connected) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(
        base_url=connected.stack.service_url, headers={"Authorization": f"Bearer {TEST_ADMIN}"}, timeout=30
    ) as client:
        yield client


def _checks(api: httpx.Client, location_id: str) -> dict[str, dict[str, Any]]:
    answer = api.get(f"/api/locations/{location_id}/checks")
    assert answer.status_code == 200, answer.text
    return {check["id"]: check for check in answer.json()["checks"]}


def _prefs(connected: Connected, **changes: dict[str, Any]) -> None:  # noqa: F811
    with connected.stack.runtime.sessions.begin() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        prefs = dict(conn.preferences)
        for key, value in changes.items():
            prefs[key] = {**(prefs.get(key) or {}), **value}
        conn.preferences = prefs


def test_a_us_company_as_connected(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    found = _checks(api, connected.location_id)
    assert set(found) == {"custom_txn_numbers", "automated_sales_tax", "currency", "closing_date", "undeposited_funds"}
    for check in found.values():
        assert check["status"] in ("ok", "warning", "problem") and check["title"] and check["meaning"]
    assert found["closing_date"]["status"] == "ok"
    assert found["undeposited_funds"]["status"] == "ok"
    assert found["currency"]["status"] == "ok"
    assert api.get("/api/locations/nope/checks").status_code == 404


def test_stored_preferences_drive_the_answers(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _prefs(
        connected,
        SalesFormsPrefs={"CustomTxnNumbers": False},
        TaxPrefs={"PartnerTaxEnabled": True},
        AccountingInfoPrefs={"BookCloseDate": "2026-06-30"},
        CurrencyPrefs={"MultiCurrencyEnabled": False},
    )
    with connected.stack.runtime.sessions.begin() as session:
        session.add(
            Activity(
                location_id=connected.location_id,
                kind="invoice",
                entity_id="eur-1",
                direction="crm_to_qbo",
                status="done",
                amount=Decimal("10.00"),
                currency="EUR",
            )
        )
    found = _checks(api, connected.location_id)
    assert found["custom_txn_numbers"]["status"] == "warning" and found["custom_txn_numbers"]["fix"]
    assert found["automated_sales_tax"]["status"] == "warning"
    assert found["closing_date"]["status"] == "warning" and "2026-06-30" in found["closing_date"]["title"]
    assert found["currency"]["status"] == "problem" and "EUR" in found["currency"]["title"]
    assert "Multicurrency" in found["currency"]["fix"]
    assert api.get(f"/api/locations/{connected.location_id}/checks").json()["status"] == "problem"


def test_undeposited_funds_is_read_once_then_cached(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _checks(api, connected.location_id)
    with connected.stack.runtime.sessions() as session:
        location = session.get(Location, connected.location_id)
        assert location is not None and location.state["preflight"]["undeposited"] is True
    company = connected.stack.qbo.company(connected.realm_id)
    for account in company.objects["Account"].values():
        if account.get("AccountSubType") == "UndepositedFunds":
            account["Active"] = False
            account["AccountSubType"] = "Savings"
    assert _checks(api, connected.location_id)["undeposited_funds"]["status"] == "ok"  # cached
    with connected.stack.runtime.sessions.begin() as session:
        location = session.get(Location, connected.location_id)
        assert location is not None
        location.state = {k: v for k, v in location.state.items() if k != "preflight"}
    missing = _checks(api, connected.location_id)["undeposited_funds"]
    assert missing["status"] == "problem" and "Deposit account" in missing["fix"]
    api.patch(f"/api/locations/{connected.location_id}/settings", json={"deposit_account_id": "35"})
    assert _checks(api, connected.location_id)["undeposited_funds"]["status"] == "ok"


def test_a_non_us_company_needs_its_tax_codes_mapped(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Acme UK", country="GB")
    stack.connect_quickbooks(location_id, name="Acme UK Ltd", country="GB")
    stack.drain()
    with httpx.Client(base_url=stack.service_url, headers={"Authorization": f"Bearer {TEST_ADMIN}"}) as api:
        found = _checks(api, location_id)
        assert "automated_sales_tax" not in found
        assert found["tax_codes"]["status"] == "problem"
        api.patch(f"/api/locations/{location_id}/settings", json={"tax_code_map": {"VAT": "3", "exempt": "5"}})
        assert _checks(api, location_id)["tax_codes"]["status"] == "ok"

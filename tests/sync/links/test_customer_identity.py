"""One customer identity: the link the contact import (or any path) wrote serves the invoice and receipt
lookup without a QuickBooks call; emails match in any case, sub-addresses exactly; an unseen email is
found through change data capture even when QuickBooks' email query misses it."""

from __future__ import annotations

from typing import Any

import pytest

from qbconnect.clock import utcnow
from qbconnect.db.models import Location
from qbconnect.domain.crm_models import CrmContactDetails
from qbconnect.qbo.client import QboClient
from qbconnect.sync import lookup
from qbconnect.sync.contacts.state import IMPORT_KEY
from qbconnect.sync.links import customers
from tests.sync.invoices.test_invoice_harness import LOCATION, Harness, harness  # noqa: F401


def contact(**kw: Any) -> CrmContactDetails:
    values: dict[str, Any] = {"id": "c-1", "name": "Ana Shop", "email": "ana+shop@example.com"}
    values.update(kw)
    return CrmContactDetails(**values)


def imported(harness: Harness, realm: str, qbo_id: str, *, contact_id: str = "c-1", **kw: Any) -> None:  # noqa: F811
    """What the contact import writes for a customer it linked."""
    customers.record_contact(
        harness.session,
        LOCATION,
        contact_id=contact_id,
        qbo_id=qbo_id,
        email=kw.pop("email", "ana+shop@example.com"),
        content_hash="h",
        realm_id=realm,
        **kw,
    )


def finish_import(harness: Harness, realm: str) -> None:  # noqa: F811
    location = harness.session.get(Location, LOCATION)
    if location is None:
        location = Location(id=LOCATION, state={})
        harness.session.add(location)
    started = utcnow().isoformat()
    location.state = {
        **(location.state or {}),
        IMPORT_KEY: {"status": "done", "realm_id": realm, "started_at": started},
    }
    harness.session.flush()


def test_imported_link_serves_the_contact_without_a_quickbooks_call(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    imported(harness, realm, "58")
    calls = qbo.calls
    assert lookup.resolve_customer(harness.ctx(), contact(), qbo) == "58"
    # another contact with the same person's email, in another letter case
    assert lookup.resolve_customer(harness.ctx(), contact(id="c-2", email=" Ana+Shop@Example.COM "), qbo) == "58"
    assert lookup.resolve_customer(harness.ctx(), contact(id=None, email="ANA+SHOP@example.com"), qbo) == "58"
    assert qbo.calls == calls
    assert customers.find_customer(harness.session, LOCATION, "c-2") is not None


def test_sub_address_is_kept_exact(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    imported(harness, realm, "58", email="ana@example.com")
    assert (
        customers.known_customer(
            harness.session, LOCATION, contact_id="c-9", email="ana+shop@example.com", realm_id=realm, currency=None
        )
        is None
    )
    found = customers.known_customer(
        harness.session, LOCATION, contact_id="c-9", email="ana@example.com", realm_id=realm, currency=None
    )
    assert found is not None and found.qbo_id == "58"


def test_multicurrency_uses_the_imported_link_of_the_same_currency(harness: Harness) -> None:  # noqa: F811
    realm = harness.company(multicurrency=True)
    qbo = harness.qbo(realm)
    imported(harness, realm, "58", currency="usd")
    calls = qbo.calls
    assert lookup.resolve_customer(harness.ctx(), contact(), qbo, currency="USD") == "58"
    assert qbo.calls == calls
    assert (
        customers.known_customer(
            harness.session, LOCATION, contact_id="c-1", email=None, realm_id=realm, currency="EUR"
        )
        is None
    )


def test_link_of_another_company_or_a_deleted_customer_does_not_serve(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    imported(harness, "other-realm", "58")
    assert (
        customers.known_customer(
            harness.session, LOCATION, contact_id="c-1", email="ana+shop@example.com", realm_id=realm, currency=None
        )
        is None
    )
    imported(harness, realm, "61", contact_id="c-3")
    customers.mark_deleted(harness.session, LOCATION, qbo_id="61")
    assert (
        customers.known_customer(
            harness.session, LOCATION, contact_id="c-3", email="ana+shop@example.com", realm_id=realm, currency=None
        )
        is None
    )


def _query_misses_plus(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    real = QboClient.query

    def query(self: QboClient, statement: str) -> list[dict[str, Any]]:
        asked.append(statement)
        if "PrimaryEmailAddr" in statement and "+" in statement:
            return []  # as field reports show for addresses with "+"
        return real(self, statement)

    monkeypatch.setattr(QboClient, "query", query)
    return asked


def test_a_missed_email_query_is_not_trusted_change_data_capture_finds_the_customer(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    realm = harness.company()
    ana = harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "Ana Shop", "PrimaryEmailAddr": {"Address": "Ana+Shop@example.com"}}
    )
    asked = _query_misses_plus(monkeypatch)
    found = lookup.resolve_customer(harness.ctx(), contact(), harness.qbo(realm))
    assert found == ana["Id"]
    assert any("PrimaryEmailAddr" in q for q in asked)  # the query ran (nothing known, no import) and missed
    shops = [c for c in harness.entities(realm, "Customer") if "Shop" in str(c.get("DisplayName"))]
    assert len(shops) == 1


def test_after_a_complete_import_an_unseen_email_costs_one_change_read_and_no_query(
    harness: Harness,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    realm = harness.company()
    finish_import(harness, realm)
    asked = _query_misses_plus(monkeypatch)
    qbo = harness.qbo(realm)
    calls = qbo.calls
    created = lookup.resolve_customer(harness.ctx(), contact(email="new@example.com"), qbo)
    assert not any("PrimaryEmailAddr" in q for q in asked)
    assert qbo.calls - calls == 2  # one CDC read, one create
    assert lookup.resolve_customer(harness.ctx(), contact(id="c-2", email="NEW@example.com"), qbo) == created
    assert qbo.calls - calls == 2

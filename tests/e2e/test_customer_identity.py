# ruff: noqa: F811  (pytest fixtures imported by name)
"""One customer identity end to end: once the contact import linked a customer, the invoice sync finds it
without asking QuickBooks; a sub-addressed email never becomes a second QuickBooks customer."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from qbconnect.qbo.client import QboClient
from qbconnect.sandbox.stack import Stack
from tests.e2e.test_contacts import run_import
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

N = 4


def settle(stack: Stack) -> None:
    for _ in range(6):
        delivered = stack.deliver_webhooks()
        runs = stack.drain()
        if not delivered and not runs:
            return


def customer_reads(stack: Stack, since: int) -> Counter[str]:
    """QuickBooks reads (GET: reads and queries) that looked at customers, by operation."""
    return Counter(
        f"{r.method} {r.operation}"
        for r in stack.qbo.request_log[since:]
        if r.method == "GET" and (r.entity or "").lower() == "customer"
    )


@pytest.fixture(params=["single", "multicurrency"])
def company(stack: Stack, request: pytest.FixtureRequest) -> Connected:
    location_id = stack.install_crm_location(name="Acme Plumbing")
    realm_id = stack.connect_quickbooks(
        location_id, name="Acme Plumbing LLC", country="US", multicurrency=request.param == "multicurrency"
    )
    stack.drain()
    return Connected(stack=stack, location_id=location_id, realm_id=realm_id)


def test_imported_customers_cost_no_quickbooks_read_for_invoices_and_payments(company: Connected) -> None:
    stack, loc, realm = company.stack, company.location_id, company.realm_id
    stack.qbo.seed_customers(realm, N)
    assert run_import(stack, loc)["status"] == "done"
    customers_before = len(stack.qbo.entities(realm, "Customer"))
    contacts = {str(c["email"]).lower(): c for c in stack.crm.contacts(loc) if c.get("email")}
    assert len(contacts) == N

    start = len(stack.qbo.request_log)
    invoices = []
    for n in range(1, N + 1):
        contact = contacts[f"customer{n}@example.com"]
        created = stack.crm.create_invoice(
            loc, contact_id=contact["id"], items=[{"name": "Repair", "qty": 1, "amount": "80.00"}], currency="USD"
        )
        stack.crm.send_invoice(str(created["_id"]))
        invoices.append(str(created["_id"]))
    settle(stack)
    for invoice_id in invoices:
        stack.crm.record_invoice_payment(invoice_id, Decimal("80.00"))
    settle(stack)

    assert len(stack.qbo.entities(realm, "Invoice")) == N
    assert len(stack.qbo.entities(realm, "Payment")) == N
    assert len(stack.qbo.entities(realm, "Customer")) == customers_before  # every invoice found its customer
    assert customer_reads(stack, start) == Counter()


def test_sub_addressed_email_never_makes_a_second_customer(
    connected: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QuickBooks' email query misses ``ana+shop@…`` (as field reports show); the customer created in
    QuickBooks after the import is still found (change data capture), in any letter case."""
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    stack.qbo.seed_customers(realm, 2)
    assert run_import(stack, loc)["status"] == "done"
    ana = stack.qbo.ui_create(
        realm, "Customer", {"DisplayName": "Ana Shop", "PrimaryEmailAddr": {"Address": "ana+shop@example.com"}}
    )
    real_query = QboClient.query

    def query_missing_plus(self: QboClient, statement: str) -> list[dict[str, Any]]:
        return [] if "PrimaryEmailAddr" in statement and "+" in statement else real_query(self, statement)

    monkeypatch.setattr(QboClient, "query", query_missing_plus)
    invoices = []
    for n, email in enumerate(["Ana+Shop@Example.com", "ana+shop@example.com"]):
        contact = stack.crm.create_contact(loc, firstName="Ana", lastName=f"Shop {n}", email=email)
        created = stack.crm.create_invoice(
            loc, contact_id=contact["id"], items=[{"name": "Repair", "qty": 1, "amount": "10.00"}], currency="USD"
        )
        stack.crm.send_invoice(str(created["_id"]))
        invoices.append(str(created["_id"]))
        settle(stack)
    qbo_invoices = stack.qbo.entities(realm, "Invoice")
    assert len(qbo_invoices) == 2
    assert {inv["CustomerRef"]["value"] for inv in qbo_invoices} == {str(ana["Id"])}
    shops = [c for c in stack.qbo.entities(realm, "Customer") if "shop" in str(c.get("DisplayName")).lower()]
    assert [c["Id"] for c in shops] == [ana["Id"]]

"""Invoice sync end to end: each CRM trigger through signed webhooks, jobs and both emulators, for a US
company and a UK (GB, VAT) company with a tax mapping."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.db.models import Activity, Location
from qbconnect.sandbox.qbo.state import RequestRecord
from qbconnect.sandbox.stack import Stack
from qbconnect.services import log_actions
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.registry import PERIODIC
from qbconnect.sync.engine.routing import INVOICE_RECONCILE
from tests.support.stack_fixtures import stack  # noqa: F401


@dataclass
class Books:
    stack: Stack
    location_id: str
    realm_id: str
    country: str
    currency: str

    # ---- the CRM side ----
    def contact(self, email: str = "ann@example.com", first: str = "Ann", last: str = "Lee") -> dict[str, Any]:
        crm = self.stack.crm
        found = crm.find_by_email(self.location_id, email)
        return found or crm.create_contact(self.location_id, firstName=first, lastName=last, email=email)

    def tax(self) -> list[dict[str, Any]]:
        return [{"name": "Sales tax", "rate": "8.25"}] if self.country == "US" else [{"name": "VAT", "rate": 20}]

    def invoice(self, *, email: str = "ann@example.com", items: list[dict[str, Any]] | None = None, **kw: Any) -> str:
        items = items or [
            {"name": "Repair", "qty": 2, "amount": "60.00", "taxes": self.tax()},
            {"name": "Call-out fee", "qty": 1, "amount": "35.50"},
        ]
        created = self.stack.crm.create_invoice(
            self.location_id, contact_id=self.contact(email)["id"], items=items, currency=self.currency, **kw
        )
        return str(created["_id"])

    def crm_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self.stack.crm.invoice(invoice_id)

    # ---- running ----
    def settle(self) -> None:
        for _ in range(6):
            delivered = self.stack.deliver_webhooks()
            runs = self.stack.drain()
            if not delivered and not runs:
                return

    def reconcile(self) -> None:
        hook = next(p for p in PERIODIC if p.name == "invoice_reconcile")
        with self.stack.runtime.sessions.begin() as session:
            hook.fn(self.stack.runtime, session)
        self.stack.drain()

    def set_settings(self, **values: Any) -> None:
        with self.stack.runtime.sessions.begin() as session:
            location = session.get(Location, self.location_id)
            assert location is not None
            location.settings = {**(location.settings or {}), **values}

    # ---- the QuickBooks side ----
    def qbo_invoices(self) -> list[dict[str, Any]]:
        return self.stack.qbo.entities(self.realm_id, "Invoice")

    def qbo_invoice_for(self, crm_id: str) -> dict[str, Any]:
        link = self.link(crm_id)
        assert link is not None and link.qbo_id, f"no QuickBooks invoice linked to {crm_id}"
        return self.stack.qbo.get(self.realm_id, "Invoice", link.qbo_id)

    def payments(self) -> list[dict[str, Any]]:
        return self.stack.qbo.entities(self.realm_id, "Payment")

    def customers(self) -> list[dict[str, Any]]:
        return self.stack.qbo.entities(self.realm_id, "Customer")

    def link(self, crm_id: str) -> Link | None:
        with self.stack.runtime.sessions() as session:
            return session.execute(
                select(Link).where(Link.kind == "invoice", Link.crm_id == crm_id)
            ).scalar_one_or_none()

    def rows(self, crm_id: str) -> list[Activity]:
        with self.stack.runtime.sessions() as session:
            return list(
                session.execute(select(Activity).where(Activity.entity_id == crm_id).order_by(Activity.id)).scalars()
            )

    def last_row(self, crm_id: str) -> Activity:
        rows = self.rows(crm_id)
        assert rows, f"no sync-log row for {crm_id}"
        return rows[-1]

    def assert_in_step(self, crm_id: str) -> dict[str, Any]:
        crm = self.crm_invoice(crm_id)
        qinv = self.qbo_invoice_for(crm_id)
        assert Decimal(str(qinv["TotalAmt"])) == crm["total"]
        assert Decimal(str(qinv["Balance"])) == crm["amountDue"]
        row = self.last_row(crm_id)
        assert row.status == "done", row.error_message
        return qinv


def make_books(stack: Stack, country: str) -> Books:  # noqa: F811
    if country == "US":
        location_id = stack.install_crm_location(name="Acme Plumbing")
        realm_id = stack.connect_quickbooks(location_id, name="Acme Plumbing LLC", country="US")
        books = Books(stack, location_id, realm_id, "US", "USD")
    else:
        location_id = stack.install_crm_location(name="Acme Plumbing UK", country="GB")
        realm_id = stack.connect_quickbooks(location_id, name="Acme Plumbing Ltd", country="GB", home_currency="GBP")
        codes = {c["Name"]: c["Id"] for c in stack.qbo.entities(realm_id, "TaxCode")}
        books = Books(stack, location_id, realm_id, "GB", "GBP")
        books.set_settings(tax_code_map={"rate:20": codes["20.0% S"], "exempt": codes["Exempt"]})
    stack.drain()
    return books


@pytest.fixture(params=["US", "GB"])
def books(stack: Stack, request: pytest.FixtureRequest) -> Books:  # noqa: F811
    return make_books(stack, str(request.param))


@pytest.fixture
def us_books(stack: Stack) -> Books:  # noqa: F811
    return make_books(stack, "US")


# ---- triggers ---------------------------------------------------------------------------------------


def test_sent_invoice_becomes_one_qbo_invoice(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    [qinv] = books.qbo_invoices()
    assert books.assert_in_step(inv)["Id"] == qinv["Id"]
    assert "created" in (books.last_row(inv).summary or "")
    assert f"(CRM id {inv})" in qinv["PrivateNote"]
    assert qinv["BillEmail"]["Address"] == "ann@example.com"
    [customer] = [c for c in books.customers() if (c.get("PrimaryEmailAddr") or {}).get("Address")]
    assert customer["DisplayName"] == "Ann Lee"
    if books.country == "GB":
        assert qinv["GlobalTaxCalculation"] == "TaxExcluded"
    else:
        assert Decimal(str(qinv["TxnTaxDetail"]["TotalTax"])) == Decimal("9.90")


def test_draft_is_skipped_until_sent(books: Books) -> None:
    inv = books.invoice()
    books.settle()
    assert books.qbo_invoices() == []
    books.stack.crm.update_invoice(inv, name="Still drafting")
    books.settle()
    assert books.qbo_invoices() == []
    books.stack.crm.send_invoice(inv)
    books.settle()
    books.assert_in_step(inv)


def test_edit_updates_the_same_invoice_sparsely_keeping_qbo_fields(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    qinv = books.qbo_invoice_for(inv)
    # the accountant adds a memo in QuickBooks (a field we do not own)
    books.stack.qbo.ui_update(
        books.realm_id,
        "Invoice",
        {"Id": qinv["Id"], "SyncToken": qinv["SyncToken"], "CustomerMemo": {"value": "Thanks!"}},
    )
    books.stack.crm.update_invoice(
        inv, items=[{"name": "Repair", "qty": 3, "amount": "60.00", "taxes": books.tax()}], due_date="2031-01-31"
    )
    books.settle()
    after = books.assert_in_step(inv)
    assert after["Id"] == qinv["Id"] and len(books.qbo_invoices()) == 1
    assert after["CustomerMemo"]["value"] == "Thanks!"  # preserved (the update hit 5010 first, then re-read)
    assert after["DueDate"] == "2031-01-31"
    assert "updated" in (books.last_row(inv).summary or "")


def test_extra_discount_percentage_and_fixed(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    books.stack.crm.update_invoice(inv, discount={"type": "percentage", "value": 10})
    books.settle()
    qinv = books.assert_in_step(inv)
    assert any(line["DetailType"] == "DiscountLineDetail" for line in qinv["Line"])
    books.stack.crm.update_invoice(inv, discount={"type": "fixed", "value": "12.34"})
    books.settle()
    books.assert_in_step(inv)


def test_partial_then_full_payment(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    books.stack.crm.record_invoice_payment(inv, Decimal("50.00"))
    books.settle()
    qinv = books.assert_in_step(inv)
    assert Decimal(str(qinv["Balance"])) == books.crm_invoice(inv)["total"] - Decimal("50.00")
    [payment] = books.payments()
    assert Decimal(str(payment["TotalAmt"])) == Decimal("50.00")
    assert payment["Line"][0]["LinkedTxn"][0]["TxnId"] == qinv["Id"]
    books.stack.crm.record_invoice_payment(inv, books.crm_invoice(inv)["amountDue"])
    books.settle()
    qinv = books.assert_in_step(inv)
    assert Decimal(str(qinv["Balance"])) == 0
    assert len(books.payments()) == 2


def test_void_voids_payments_first_then_the_invoice(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.stack.crm.record_invoice_payment(inv, Decimal("20.00"))
    books.settle()
    books.stack.crm.void_invoice(inv)
    books.settle()
    qinv = books.qbo_invoice_for(inv)
    assert Decimal(str(qinv["TotalAmt"])) == 0 and Decimal(str(qinv["Balance"])) == 0
    assert "Voided" in qinv["PrivateNote"]
    assert all(Decimal(str(p["TotalAmt"])) == 0 for p in books.payments())
    assert len(books.qbo_invoices()) == 1  # voided, never deleted
    row = books.last_row(inv)
    assert row.status == "done" and "voided" in (row.summary or "")


def test_delete_in_crm_voids_in_qbo(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    books.stack.crm.delete_invoice(inv)
    books.settle()
    [qinv] = books.qbo_invoices()
    assert Decimal(str(qinv["TotalAmt"])) == 0 and "Voided" in qinv["PrivateNote"]
    assert "deleted in the CRM" in (books.last_row(inv).summary or "")


def test_invoice_sent_before_connecting_stays_skipped(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Early Bird")
    crm = stack.crm
    contact = crm.create_contact(location_id, firstName="Old", lastName="Timer", email="old@example.com")
    early = crm.create_invoice(location_id, contact_id=contact["id"], items=[{"name": "Job", "qty": 1, "amount": 100}])
    crm.send_invoice(early["_id"])
    crm.flush_webhooks(drop=True)  # sent while not connected
    draft = crm.create_invoice(location_id, contact_id=contact["id"], items=[{"name": "Job", "qty": 1, "amount": 40}])
    crm.advance_clock(0.01)
    realm_id = stack.connect_quickbooks(location_id, name="Early Bird LLC", country="US")
    stack.drain()
    crm.advance_clock(1)
    books = Books(stack, location_id, realm_id, "US", "USD")
    crm.record_invoice_payment(early["_id"], Decimal("30"))
    crm.send_invoice(draft["_id"])  # a draft prepared before connecting, sent after: synced
    books.settle()
    row = books.last_row(early["_id"])
    assert row.status == "skipped" and "before QuickBooks was connected" in (row.summary or "")
    crm.record_invoice_payment(early["_id"], Decimal("70"))
    books.settle()
    assert books.last_row(early["_id"]).status == "skipped"  # the decision is kept
    [qinv] = books.qbo_invoices()
    assert books.assert_in_step(draft["_id"])["Id"] == qinv["Id"]


def test_invoice_sync_turned_off_is_skipped(us_books: Books) -> None:
    us_books.set_settings(sync_invoices=False)
    inv = us_books.invoice()
    us_books.stack.crm.send_invoice(inv)
    us_books.settle()
    assert us_books.qbo_invoices() == []
    assert "turned off" in (us_books.last_row(inv).summary or "")


def test_lost_webhooks_are_healed_by_reconciliation(books: Books) -> None:
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.stack.crm.flush_webhooks(drop=True)
    books.reconcile()
    books.assert_in_step(inv)
    books.stack.crm.advance_clock(2)
    books.stack.crm.record_invoice_payment(inv, Decimal("10"))
    books.stack.crm.flush_webhooks(drop=True)
    books.reconcile()
    books.assert_in_step(inv)
    assert len(books.payments()) == 1
    # a pass with nothing new queues nothing
    before = len(books.rows(inv))
    books.reconcile()
    assert len(books.rows(inv)) == before
    with books.stack.runtime.sessions() as session:
        location = session.get(Location, books.location_id)
        assert location is not None and location.state["invoice_reconcile"]["cursor"]
        rows = session.execute(select(Activity).where(Activity.kind == INVOICE_RECONCILE)).scalars().all()
    assert rows and all(r.status == "done" for r in rows)
    assert "queued for sync" in (rows[-1].summary or "")


def test_lost_create_answer_gives_exactly_one_invoice(us_books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)
    inv = us_books.invoice()
    us_books.stack.crm.send_invoice(inv)
    us_books.settle()  # customer and items known now
    other = us_books.invoice(email="bob@example.com")
    us_books.stack.qbo.inject_fault("lost_response", entity="Invoice", method="POST", count=10)
    us_books.stack.crm.send_invoice(other)
    us_books.settle()
    us_books.stack.qbo.clear_faults()
    us_books.stack.drain()
    assert len(us_books.qbo_invoices()) == 2
    us_books.assert_in_step(other)
    link = us_books.link(other)
    assert link is not None and link.request_id
    assert any(
        r.request_id == link.request_id and r.operation.endswith(":replay") for r in us_books.stack.qbo.request_log
    )


def test_customer_display_name_collision_6240(us_books: Books) -> None:
    us_books.stack.qbo.ui_create(us_books.realm_id, "Vendor", {"DisplayName": "Ann Lee"})
    inv = us_books.invoice()
    us_books.stack.crm.send_invoice(inv)
    us_books.settle()
    qinv = us_books.assert_in_step(inv)
    customer = us_books.stack.qbo.get(us_books.realm_id, "Customer", qinv["CustomerRef"]["value"])
    assert customer["DisplayName"] == "Ann Lee (ann@example.com)"
    second = us_books.invoice()
    us_books.stack.crm.send_invoice(second)
    us_books.settle()
    assert us_books.assert_in_step(second)["CustomerRef"]["value"] == customer["Id"]
    assert len([c for c in us_books.customers() if c.get("PrimaryEmailAddr")]) == 1


def test_duplicate_webhooks_and_redelivery_are_harmless(us_books: Books) -> None:
    inv = us_books.invoice()
    us_books.stack.crm.send_invoice(inv)
    us_books.stack.crm.flush_webhooks(times=3)
    us_books.settle()
    us_books.reconcile()
    us_books.assert_in_step(inv)
    assert len(us_books.qbo_invoices()) == 1


def test_unmapped_tax_fails_with_a_plain_reason(stack: Stack) -> None:  # noqa: F811
    books = make_books(stack, "GB")
    books.set_settings(tax_code_map={})
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    row = books.last_row(inv)
    assert row.status == "failed" and row.error_category == "permanent"
    assert "No QuickBooks tax code is mapped" in (row.error_message or "")
    assert books.qbo_invoices() == []


# ---- fix, then Retry (issue 14): a refused request is planned again under a new requestid ----------------


def retry_failed_row(books: Books, crm_id: str) -> None:
    """Press Retry on the record's failed sync-log row (the path of `qbconnect retry` and the API)."""
    row = books.last_row(crm_id)
    assert row.status == "failed", row.summary
    with books.stack.runtime.sessions.begin() as session:
        log_actions.retry_one(session, row.id)
    books.settle()


def posts_of(books: Books, entity: str) -> list[RequestRecord]:
    return [r for r in books.stack.qbo.request_log if r.method == "POST" and r.entity == entity]


def test_wrong_item_mapping_fixed_then_retry_books_the_invoice_once(us_books: Books) -> None:
    books = us_books
    books.set_settings(product_item_map={"prod_repair": "999"})
    repair = {"name": "Repair", "qty": 2, "amount": "60.00", "productId": "prod_repair", "taxes": books.tax()}
    inv = books.invoice(items=[repair])
    books.stack.crm.send_invoice(inv)
    books.settle()
    row = books.last_row(inv)
    assert row.status == "failed" and books.qbo_invoices() == []

    item = next(i for i in books.stack.qbo.entities(books.realm_id, "Item") if i.get("Type") == "Service")
    books.set_settings(product_item_map={"prod_repair": str(item["Id"])})
    retry_failed_row(books, inv)

    [qinv] = books.qbo_invoices()
    assert books.assert_in_step(inv)["Id"] == qinv["Id"]
    assert qinv["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == str(item["Id"])
    refused, booked = posts_of(books, "Invoice")
    assert refused.status == 400 and booked.status == 200 and refused.request_id != booked.request_id


def test_wrong_payment_method_mapping_fixed_then_retry_books_the_payment_once(us_books: Books) -> None:
    """The owner's path: ``visa = 999`` typed by mistake; the retry re-sent the saved payment for ever."""
    books = us_books
    inv = books.invoice()
    books.stack.crm.send_invoice(inv)
    books.settle()
    books.set_settings(payment_method_map={"visa": "999"})
    books.stack.crm.record_invoice_payment(inv, Decimal("59.38"))
    books.settle()
    assert books.last_row(inv).status == "failed" and books.payments() == []

    visa = next(m for m in books.stack.qbo.entities(books.realm_id, "PaymentMethod") if m["Name"] == "Visa")
    books.set_settings(payment_method_map={"visa": str(visa["Id"])})
    retry_failed_row(books, inv)

    qinv = books.assert_in_step(inv)
    assert Decimal(str(qinv["Balance"])) == books.crm_invoice(inv)["total"] - Decimal("59.38")
    [payment] = books.payments()
    assert Decimal(str(payment["TotalAmt"])) == Decimal("59.38") and payment["PaymentMethodRef"]["value"] == visa["Id"]
    refused, booked = posts_of(books, "Payment")
    assert refused.status == 400 and booked.status == 200 and refused.request_id != booked.request_id
    # the rest paid later books the remainder once
    books.stack.crm.record_invoice_payment(inv, books.crm_invoice(inv)["amountDue"])
    books.settle()
    assert Decimal(str(books.assert_in_step(inv)["Balance"])) == 0 and len(books.payments()) == 2

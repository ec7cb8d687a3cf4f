"""The ``invoice`` handler through the engine: each job is enqueued by kind and run by JobRunner, with the
platform clients pointed at the QuickBooks and CRM emulators; the sync-log row and both emulators are checked."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.routing import INVOICE
from tests.support.engine_harness import JobRun, run_job
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

ITEMS = [{"name": "Repair", "qty": 2, "amount": "60.00"}, {"name": "Call-out fee", "qty": 1, "amount": "35.50"}]


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)


def sent_invoice(c: Connected, email: str = "ann@example.com") -> str:
    crm = c.stack.crm
    contact = crm.find_by_email(c.location_id, email) or crm.create_contact(
        c.location_id, firstName="Ann", lastName="Lee", email=email
    )
    invoice_id = str(crm.create_invoice(c.location_id, contact_id=contact["id"], items=ITEMS)["_id"])
    crm.send_invoice(invoice_id)
    return invoice_id


def sync(c: Connected, invoice_id: str) -> JobRun:
    return run_job(c.stack.runtime, c.location_id, INVOICE, invoice_id)


def qbo_invoices(c: Connected) -> list[dict[str, Any]]:
    return c.stack.qbo.entities(c.realm_id, "Invoice")


def money(value: Any) -> Decimal:
    return Decimal(str(value))


def test_a_sent_invoice_is_created_in_quickbooks(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)

    run = sync(c, invoice_id)

    assert run.state == "done"
    assert run.activity is not None and run.activity.status == "done"
    assert "created" in (run.activity.summary or "")
    [qinv] = qbo_invoices(c)
    assert run.activity.crm_id == invoice_id and run.activity.qbo_id == qinv["Id"]
    crm_invoice = c.stack.crm.invoice(invoice_id)
    assert money(qinv["TotalAmt"]) == crm_invoice["total"] == Decimal("155.50")
    assert money(qinv["Balance"]) == crm_invoice["amountDue"]
    assert len(c.stack.qbo.entities(c.realm_id, "Customer")) == 1


def test_an_edited_invoice_is_updated_in_place(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    sync(c, invoice_id)
    [before] = [inv["Id"] for inv in qbo_invoices(c)]
    c.stack.crm.update_invoice(invoice_id, items=[{"name": "Repair", "qty": 3, "amount": "60.00"}])

    run = sync(c, invoice_id)

    assert run.state == "done" and run.activity is not None
    assert "updated" in (run.activity.summary or "")
    [qinv] = qbo_invoices(c)
    assert qinv["Id"] == before == run.activity.qbo_id
    assert money(qinv["TotalAmt"]) == Decimal("180.00") == c.stack.crm.invoice(invoice_id)["total"]


def test_an_unchanged_invoice_costs_no_write(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    sync(c, invoice_id)
    writes_before = [r for r in c.stack.qbo.request_log if r.method == "POST"]

    run = sync(c, invoice_id)

    assert run.state == "done" and run.activity is not None
    assert "already matches" in (run.activity.summary or "")
    assert [r for r in c.stack.qbo.request_log if r.method == "POST"] == writes_before


def test_a_payment_becomes_a_quickbooks_payment_linked_to_the_invoice(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    sync(c, invoice_id)
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("50.00"))

    run = sync(c, invoice_id)

    assert run.state == "done" and run.activity is not None
    assert "payment 50.00 recorded" in (run.activity.summary or "")
    [qinv] = qbo_invoices(c)
    [payment] = c.stack.qbo.entities(c.realm_id, "Payment")
    assert money(payment["TotalAmt"]) == Decimal("50.00")
    assert payment["Line"][0]["LinkedTxn"][0] == {"TxnId": qinv["Id"], "TxnType": "Invoice"}
    assert money(qinv["Balance"]) == Decimal("105.50") == c.stack.crm.invoice(invoice_id)["amountDue"]


def test_a_voided_invoice_is_voided_with_its_payments(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("20.00"))
    sync(c, invoice_id)
    c.stack.crm.void_invoice(invoice_id)

    run = sync(c, invoice_id)

    assert run.state == "done" and run.activity is not None
    assert "voided" in (run.activity.summary or "")
    [qinv] = qbo_invoices(c)  # voided, never deleted
    assert money(qinv["TotalAmt"]) == 0 and money(qinv["Balance"]) == 0
    assert "Voided" in qinv["PrivateNote"]
    [payment] = c.stack.qbo.entities(c.realm_id, "Payment")
    assert money(payment["TotalAmt"]) == 0


def test_a_draft_invoice_is_skipped_without_quickbooks_calls(connected: Connected) -> None:
    c = connected
    contact = c.stack.crm.create_contact(c.location_id, firstName="Ann", lastName="Lee", email="ann@example.com")
    draft = str(c.stack.crm.create_invoice(c.location_id, contact_id=contact["id"], items=ITEMS)["_id"])
    seen = len(c.stack.qbo.request_log)

    run = sync(c, draft)

    assert run.state == "skipped" and run.activity is not None and run.activity.status == "skipped"
    assert "draft" in (run.activity.summary or "")
    assert qbo_invoices(c) == [] and len(c.stack.qbo.request_log) == seen

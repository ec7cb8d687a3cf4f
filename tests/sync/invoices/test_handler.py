"""The ``invoice`` handler through the engine: each job is enqueued by kind and run by JobRunner, with the
platform clients pointed at the QuickBooks and CRM emulators; the sync-log row and both emulators are checked."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from qbconnect.qbo.client import QboClient
from qbconnect.sandbox.qbo.state import RequestRecord
from qbconnect.services.activity_log import headline
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.routing import INVOICE
from tests.support.engine_harness import JobRun, run_again, run_job, set_settings
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


def payment_posts(c: Connected) -> list[RequestRecord]:
    return [r for r in c.stack.qbo.request_log if r.method == "POST" and r.entity == "Payment"]


def test_a_payment_whose_answer_was_lost_is_replayed_with_the_same_requestid(
    connected: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outcome unknown (the answer lost on every try of the run): the saved request is replayed unchanged, even
    when the settings changed meanwhile, and QuickBooks answers with the payment it made: one payment."""
    c = connected
    sent: list[dict[str, Any]] = []
    create = QboClient.create

    def recording(self: QboClient, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        if entity == "Payment":
            sent.append(body)
        return create(self, entity, body, request_id=request_id)

    monkeypatch.setattr(QboClient, "create", recording)
    invoice_id = sent_invoice(c)
    sync(c, invoice_id)
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("50.00"))
    c.stack.qbo.inject_fault("lost_response", entity="Payment", method="POST", count=20)

    first = sync(c, invoice_id)

    assert first.job.state == "pending" and first.activity is not None and first.activity.status == "retrying"
    c.stack.qbo.clear_faults()
    visa = next(m for m in c.stack.qbo.entities(c.realm_id, "PaymentMethod") if m["Name"] == "Visa")
    set_settings(c.stack.runtime, c.location_id, payment_method_map={"default": visa["Id"]})  # a re-plan differs
    again = run_again(c.stack.runtime, first.job.id)

    assert again.state == "done"
    [payment] = c.stack.qbo.entities(c.realm_id, "Payment")
    assert len(sent) == 2 and sent[0] == sent[1] and "PaymentMethodRef" not in sent[1]
    assert len({r.request_id for r in payment_posts(c)}) == 1
    assert payment_posts(c)[-1].operation.endswith(":replay") and payment_posts(c)[-1].status == 200
    assert money(payment["TotalAmt"]) == Decimal("50.00") == money(qbo_invoices(c)[0]["TotalAmt"]) - Decimal("105.50")
    assert money(qbo_invoices(c)[0]["Balance"]) == Decimal("105.50")


def test_a_refused_payment_is_planned_again_under_a_new_requestid(connected: Connected) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    sync(c, invoice_id)
    set_settings(c.stack.runtime, c.location_id, payment_method_map={"default": "999"})
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("50.00"))

    refused = sync(c, invoice_id)

    assert refused.state == "failed"
    set_settings(c.stack.runtime, c.location_id, payment_method_map={})
    done = sync(c, invoice_id)

    assert done.state == "done"
    first, second = payment_posts(c)
    assert (first.status, second.status) == (400, 200) and first.request_id != second.request_id
    [payment] = c.stack.qbo.entities(c.realm_id, "Payment")
    assert "PaymentMethodRef" not in payment


def test_the_result_reads_as_a_sentence_in_the_sync_log(connected: Connected) -> None:
    c = connected
    contact = c.stack.crm.create_contact(c.location_id, firstName="Kira", lastName="Garcia", email="kira@example.com")
    invoice_id = str(
        c.stack.crm.create_invoice(
            c.location_id,
            contact_id=contact["id"],
            items=[{"name": "Repair", "qty": 1, "amount": "885.00"}],
            invoice_number="1042",
        )["_id"]
    )
    c.stack.crm.send_invoice(invoice_id)

    run = sync(c, invoice_id)

    row = run.activity
    assert row is not None and row.status == "done"
    assert (row.label, row.number, row.customer, row.customer_email) == (
        "Invoice #1042",
        "1042",
        "Kira Garcia",
        "kira@example.com",
    )
    assert (row.amount, row.currency, row.qbo_type) == (Decimal("885.00"), "USD", "Invoice")
    assert headline(row) == f"Invoice #1042 · Kira Garcia · $885.00 → QuickBooks invoice {row.qbo_id}"


def test_a_payment_recorded_in_quickbooks_itself_stops_the_void_with_its_id(connected: Connected) -> None:
    """The only read of a void: QuickBooks refused it because a payment we did not book is applied."""
    c = connected
    invoice_id = sent_invoice(c)
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("20.00"))
    sync(c, invoice_id)
    [qinv] = qbo_invoices(c)
    theirs = c.stack.qbo.ui_create(
        c.realm_id,
        "Payment",
        {
            "CustomerRef": qinv["CustomerRef"],
            "TotalAmt": 10,
            "Line": [{"Amount": 10, "LinkedTxn": [{"TxnId": qinv["Id"], "TxnType": "Invoice"}]}],
        },
    )
    c.stack.crm.void_invoice(invoice_id)
    seen = len(c.stack.qbo.request_log)

    run = sync(c, invoice_id)

    assert run.state == "failed" and run.activity is not None
    assert f"recorded in QuickBooks itself ({theirs['Id']})" in (run.activity.error_message or "")
    reads = [r.operation for r in c.stack.qbo.request_log[seen:] if r.method == "GET"]
    assert reads == ["read", "query"]  # their payment changed the invoice (stale SyncToken), then the refusal
    ours = [p for p in c.stack.qbo.entities(c.realm_id, "Payment") if p["Id"] != theirs["Id"]]
    assert [money(p["TotalAmt"]) for p in ours] == [0]  # ours is voided; the invoice waits for theirs

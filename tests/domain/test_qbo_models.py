"""QuickBooks objects parsed into typed records, from Intuit's own sample answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain.qbo_models import QboCustomer, QboInvoice, QboPayment, QboReceipt
from tests.support.reference import reference_dir


def _sample(name: str) -> dict[str, Any]:
    path = reference_dir("qbo", "examples", "docs-api-reference", name)
    data: dict[str, Any] = json.loads(path.read_text(), parse_float=Decimal)
    return data


def test_invoice_from_intuits_create_answer() -> None:
    invoice = QboInvoice.from_api(_sample("invoice__03__create-an-invoice-sample-response.json")["Invoice"])
    assert (invoice.id, invoice.customer_id, invoice.doc_number, invoice.sync_token) == ("238", "1", "1069", "0")
    assert invoice.total == Decimal("100.0") and invoice.balance == Decimal("100.0")
    assert invoice.created_at is not None and invoice.created_at.tzinfo is not None


def test_payment_from_intuits_create_answer_names_the_invoice_it_pays() -> None:
    payment = QboPayment.from_api(_sample("payment__04__create-a-payment-sample-response.json")["Payment"])
    assert (payment.id, payment.customer_id, payment.total, payment.invoice_ids) == ("125", "20", Decimal(25), ("67",))


def test_sales_receipt_from_intuits_create_answer() -> None:
    receipt = QboReceipt.from_api(_sample("salesreceipt__03__create-a-salesreceipt-response.json")["SalesReceipt"])
    assert receipt.id and receipt.total > 0 and receipt.sync_token == "0"


def test_customer_fields_and_a_deleted_customer_from_cdc() -> None:
    customer = QboCustomer.from_api(
        {
            "Id": "58",
            "DisplayName": "Ana Shop",
            "PrimaryEmailAddr": {"Address": "Ana+Shop@Example.com"},
            "Active": True,
            "CurrencyRef": {"value": "USD"},
            "SyncToken": "3",
            "MetaData": {"LastUpdatedTime": "2026-11-30T10:00:00-08:00"},
        }
    )
    assert customer.email == "Ana+Shop@Example.com"  # as sent; the identity normalises case only
    assert customer.active and not customer.deleted and customer.currency == "USD"
    assert customer.updated_at == datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    gone = QboCustomer.from_api({"Id": "59", "status": "Deleted"})
    assert gone.deleted and gone.email is None and gone.display_name is None


def test_odd_values_never_raise() -> None:
    payment = QboPayment.from_api({"Id": 7, "TotalAmt": True, "Line": "x", "MetaData": {"CreateTime": "not a time"}})
    assert (payment.id, payment.total, payment.invoice_ids, payment.created_at) == ("7", Decimal(0), (), None)


def test_invoice_fields_the_sparse_update_compares_and_the_payments_applied() -> None:
    sample = _sample("invoice__03__create-an-invoice-sample-response.json")["Invoice"]
    invoice = QboInvoice.from_api(
        {**sample, "LinkedTxn": [{"TxnId": "125", "TxnType": "Payment"}, {"TxnId": "7", "TxnType": "Estimate"}]}
    )
    assert invoice.lines and all("DetailType" in line for line in invoice.lines)
    assert invoice.payment_ids == ("125",)
    assert invoice.paid == invoice.total - invoice.balance
    assert invoice.due_date == sample.get("DueDate") and invoice.txn_date == sample.get("TxnDate")
    taxed = QboInvoice.from_api({"Id": "1", "TxnTaxDetail": {"TotalTax": "9.90"}, "BillEmail": {"Address": "a@b.c"}})
    assert (taxed.total_tax, taxed.bill_email, taxed.apply_tax_after_discount) == (Decimal("9.90"), "a@b.c", False)
    assert QboInvoice.from_api({"Id": "1"}).total_tax is None


def test_payment_sync_token_and_note_from_intuits_answer() -> None:
    payment = QboPayment.from_api(_sample("payment__04__create-a-payment-sample-response.json")["Payment"])
    assert payment.sync_token == "0"
    voided = QboPayment.from_api({"Id": "9", "SyncToken": "1", "TotalAmt": 0, "Line": [], "PrivateNote": "Voided"})
    assert (voided.invoice_ids, voided.private_note) == ((), "Voided")

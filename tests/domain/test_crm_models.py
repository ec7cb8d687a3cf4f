from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain.crm_models import CrmInvoice, CrmOrder, CrmTransaction, parse_date, parse_datetime
from tests.support.reference import reference_dir


def _example(name: str) -> dict[str, Any]:
    path = reference_dir("highlevel", "webhooks", "examples") / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_invoice_from_webhook_example() -> None:
    inv = CrmInvoice.from_api(_example("InvoiceSent"))
    assert inv.id == "6578278e879ad2646715ba9c"
    assert inv.status == "sent"
    assert inv.number == "19"
    assert inv.currency == "USD"
    assert inv.total == Decimal(999) and inv.amount_due == Decimal(999) and inv.amount_paid == 0
    assert inv.issue_date == date(2023, 1, 1)
    assert inv.created_at == datetime(2023, 12, 12, 9, 27, 42, 355000, tzinfo=UTC)
    assert inv.contact.email == "alex@example.com"
    assert inv.contact.phone == "+1-214-559-6993"
    assert inv.contact.address is not None and inv.contact.address.country_code == "US"
    assert inv.items[0].name == "Macbook Pro" and inv.items[0].unit_price == Decimal(999)
    assert inv.discount is not None and inv.discount.type == "percentage" and inv.discount.value == 10
    assert inv.live_mode is False


def test_invoice_numbers_and_floats_parse_exactly() -> None:
    inv = CrmInvoice.from_api(
        {
            "_id": "i1",
            "invoiceNumber": 42,
            "total": 0.30000000000000004,
            "amountPaid": 0.1,
            "invoiceItems": [
                {
                    "name": "A",
                    "qty": 3,
                    "amount": 0.1,
                    "taxInclusive": True,
                    "taxes": [{"_id": "t", "name": "VAT", "rate": 20}],
                }
            ],
            "discount": {"type": "fixed", "value": 0},
            "totalSummary": {"subTotal": 0.3, "discount": 0, "tax": 0.05},
        }
    )
    assert inv.number == "42"
    assert inv.amount_paid == Decimal("0.1")
    assert inv.amount_due == inv.total - inv.amount_paid
    assert inv.discount is None  # a zero discount is no discount
    assert inv.items[0].tax_inclusive and inv.items[0].taxes[0].rate == 20
    assert inv.tax_total == Decimal("0.05")


def test_order_from_webhook_example() -> None:
    order = CrmOrder.from_api(_example("OrderCreate"))
    assert order.id == "660ed43bfdf9fc05a0de7a40"
    assert (order.source_type, order.source_sub_type) == ("website", "store")
    assert order.amount == Decimal("150.1")
    assert (order.subtotal, order.discount, order.tax, order.shipping) == (138, 0, Decimal("12.1"), 0)
    assert order.contact.name == "Maxwell Schmidt" and order.contact.email == "limof@mailinator.com"
    assert order.contact.address is not None and order.contact.address.country_code == "CV"
    assert [i.unit_price for i in order.items] == [17, 121]
    assert order.items[1].taxes[0].rate == 10 and order.items[0].taxes == ()
    assert order.items[1].product_id == "64f84dea1e2c5ae21f0714dd"
    assert order.tax_lines[0].amount == Decimal("12.1")
    assert order.live_mode is False


def test_order_from_list_entry() -> None:
    order = CrmOrder.from_api(
        {
            "_id": "o1",
            "altId": "loc",
            "contactName": "James Bond",
            "contactEmail": "james@x.com",
            "amount": 100,
            "subtotal": 100,
            "discount": 10,
            "sourceType": "funnel",
            "sourceSubType": "one_step_order_form",
        }
    )
    assert order.location_id == "loc" and order.contact.name == "James Bond"
    assert order.discount == 10 and order.source_type == "funnel"


def test_transaction_from_list_and_get_shapes() -> None:
    listed = CrmTransaction.from_api(
        {
            "_id": "t1",
            "altId": "loc",
            "amount": 100,
            "currency": "usd",
            "status": "succeeded",
            "liveMode": True,
            "entityType": "order",
            "entityId": "o1",
            "entitySourceType": "funnel",
            "entitySourceSubType": "two_step_order_form",
            "subscriptionId": "sub_1",
            "chargeId": "in_1KGcXDCScnf89tZohCsmImwE",
            "amountRefunded": 10,
            "paymentMethod": {"card": {"brand": "discover", "last4": "0012"}},
            "fulfilledAt": "2023-11-20T10:27:36.515Z",
            "createdAt": "2023-11-20T10:23:36.515Z",
        }
    )
    assert listed.currency == "USD" and listed.order_id == "o1"
    assert (listed.source_type, listed.source_sub_type) == ("funnel", "two_step_order_form")
    assert listed.card_brand == "discover" and listed.payment_method_type == "card"
    assert listed.charged_at == datetime(2023, 11, 20, 10, 27, 36, 515000, tzinfo=UTC)
    assert listed.amount_refunded == 10 and listed.charge_reference.startswith("in_")

    got = CrmTransaction.from_api(
        {
            "_id": "t2",
            "amount": 5,
            "entitySource": {"type": "invoice", "id": "inv9"},
            "invoiceId": "inv9",
            "paymentProvider": {"type": "stripe"},
            "createdAt": "2024-01-01T00:00:00Z",
        }
    )
    assert got.source_type == "invoice" and got.invoice_id == "inv9" and got.payment_provider == "stripe"
    assert got.charged_at == datetime(2024, 1, 1, tzinfo=UTC) and got.charge_reference == "t2"


def test_time_parsing_is_utc() -> None:
    assert parse_datetime("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_datetime("2024-01-01T00:00:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_datetime("garbage") is None
    assert parse_date("2024-02-03T10:00:00Z") == date(2024, 2, 3)
    assert parse_date(None) is None

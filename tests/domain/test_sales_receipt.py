from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmOrder, CrmTransaction
from qbconnect.domain.errors import MappingError
from qbconnect.domain.sales_receipt import (
    SHIPPING_ITEM_ID,
    ReceiptContext,
    build_refund_receipt,
    build_sales_receipt,
    payment_method_draft,
    refund_needed,
)
from tests.support.qbo_xsd import validate_qbo_json
from tests.support.reference import reference_dir

US = CompanyFacts(is_us=True)


def _order_example() -> dict[str, Any]:
    path = reference_dir("highlevel", "webhooks", "examples") / "OrderCreate.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _txn(**overrides: Any) -> CrmTransaction:
    data: dict[str, Any] = {
        "_id": "txn-1",
        "amount": 150.1,
        "currency": "USD",
        "status": "succeeded",
        "liveMode": True,
        "entityType": "order",
        "entityId": "660ed43bfdf9fc05a0de7a40",
        "entitySourceType": "website",
        "entitySourceSubType": "store",
        "entitySourceName": "Ecom Store",
        "chargeId": "ch_3OqLongStripeChargeIdentifier",
        "paymentMethod": {"card": {"brand": "visa", "last4": "4242"}},
        "fulfilledAt": "2024-04-04T16:24:31.297Z",
    }
    data.update(overrides)
    return CrmTransaction.from_api(data)


def _ctx(**overrides: Any) -> ReceiptContext:
    values: dict[str, Any] = {
        "customer_id": "58",
        "company": US,
        "item_ids": ["11", "12"],
        "fallback_item_id": "99",
        "payment_method_id": "4",
        "deposit_account_id": "35",
    }
    values.update(overrides)
    return ReceiptContext(**values)


def _total(body: dict[str, Any]) -> Decimal:
    lines = sum(Decimal(str(ln["Amount"])) for ln in body["Line"] if ln["DetailType"] == "SalesItemLineDetail")
    discount = sum(Decimal(str(ln["Amount"])) for ln in body["Line"] if ln["DetailType"] == "DiscountLineDetail")
    tax = Decimal(str(body.get("TxnTaxDetail", {}).get("TotalTax", 0)))
    return lines - discount + tax


def test_receipt_from_order_example() -> None:
    order = CrmOrder.from_api(_order_example())
    body = build_sales_receipt(_txn(), order, _ctx())
    assert validate_qbo_json("SalesReceipt", body) == []
    assert [ln["Amount"] for ln in body["Line"]] == [Decimal("17.00"), Decimal("121.00")]
    assert body["Line"][1]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "TAX"}
    assert body["TxnTaxDetail"] == {"TotalTax": Decimal("12.10")}
    assert _total(body) == Decimal("150.10")
    assert body["TxnDate"] == "2024-04-04"
    assert body["PaymentRefNum"] == "ch_3OqLongStripeCharg"[:21] and len(body["PaymentRefNum"]) <= 21
    assert body["PaymentMethodRef"] == {"value": "4"} and body["DepositToAccountRef"] == {"value": "35"}
    assert "txn-1" in body["PrivateNote"] and "ch_3OqLongStripeChargeIdentifier" in body["PrivateNote"]
    assert "order form" in body["PrivateNote"]


def test_receipt_with_discount_and_shipping() -> None:
    data = _order_example()
    data["amountSummary"] = {"subtotal": 138, "discount": 8, "tax": 11.3, "shipping": 5}
    data["taxSummary"] = []
    data["amount"] = 146.3
    body = build_sales_receipt(_txn(amount=146.3), CrmOrder.from_api(data), _ctx(shipping_item_id=None))
    shipping = body["Line"][2]
    assert shipping["SalesItemLineDetail"]["ItemRef"] == {"value": SHIPPING_ITEM_ID}
    assert body["Line"][3]["DetailType"] == "DiscountLineDetail" and body["Line"][3]["Amount"] == Decimal("8.00")
    assert _total(body) == Decimal("146.30")
    assert validate_qbo_json("SalesReceipt", body) == []


def test_renewal_not_matching_order_is_one_line() -> None:
    order = CrmOrder.from_api(_order_example())
    body = build_sales_receipt(_txn(amount=29, subscriptionId="sub_1"), order, _ctx())
    assert len(body["Line"]) == 1
    assert body["Line"][0]["Amount"] == Decimal("29.00")
    assert body["Line"][0]["SalesItemLineDetail"]["ItemRef"] == {"value": "99"}
    assert _total(body) == Decimal("29.00")
    assert "subscription" in body["PrivateNote"]
    assert validate_qbo_json("SalesReceipt", body) == []
    no_order = build_sales_receipt(_txn(amount=10), None, _ctx())
    assert _total(no_order) == Decimal("10.00")
    with pytest.raises(MappingError, match="item"):
        build_sales_receipt(_txn(amount=10), None, _ctx(fallback_item_id=None))


def test_non_us_receipt_uses_tax_codes() -> None:
    company = CompanyFacts(is_us=False, home_currency="USD")
    ctx = _ctx(company=company, tax_mapping=TaxMapping({"10%": "6"}, exempt_code="9"))
    body = build_sales_receipt(_txn(), CrmOrder.from_api(_order_example()), ctx)
    assert body["GlobalTaxCalculation"] == "TaxExcluded"
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in body["Line"]] == ["9", "6"]
    assert validate_qbo_json("SalesReceipt", body) == []


def test_receipt_currency_must_be_bookable() -> None:
    with pytest.raises(MappingError, match="EUR"):
        build_sales_receipt(_txn(currency="EUR"), None, _ctx())


def test_payment_method_draft() -> None:
    assert payment_method_draft(_txn()) == {"Name": "Visa", "Type": "CREDIT_CARD"}
    assert payment_method_draft(_txn(paymentMethod={"card": {"brand": "amex"}})) == {
        "Name": "American Express",
        "Type": "CREDIT_CARD",
    }
    assert payment_method_draft(_txn(paymentMethod={"us_bank_account": {}}))["Name"] == "Bank Transfer"
    assert payment_method_draft(_txn(paymentMethod=None)) == {"Name": "Other", "Type": "NON_CREDIT_CARD"}


def test_refunds() -> None:
    assert refund_needed(Decimal(10), Decimal(0)) == Decimal("10.00")
    assert refund_needed(Decimal(10), Decimal(10)) == Decimal("0.00")
    txn = _txn(amountRefunded=10, updatedAt="2024-05-01T08:00:00Z")
    body = build_refund_receipt(txn, Decimal("10"), _ctx(refund_account_id="36"))
    assert body["Line"][0]["Amount"] == Decimal("10.00")
    assert body["DepositToAccountRef"] == {"value": "36"}
    assert body["TxnDate"] == "2024-05-01"
    assert "refund" in body["PrivateNote"]
    assert validate_qbo_json("RefundReceipt", body) == []
    with pytest.raises(MappingError, match="account"):
        build_refund_receipt(txn, Decimal(1), _ctx(deposit_account_id=None))

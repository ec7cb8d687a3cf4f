"""Non-US sales receipts get the same rounding line as invoices (``build_sales_lines`` is shared)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmLine, CrmOrder, CrmTax
from qbconnect.domain.sales_receipt import ReceiptContext, build_sales_receipt
from tests.domain.test_sales_receipt import _order_example, _txn
from tests.support.qbo_xsd import validate_qbo_json

UK = CompanyFacts(is_us=False, home_currency="USD")
VAT = CrmTax(id="t-vat", name="VAT", rate=Decimal(20))


def _order() -> CrmOrder:
    # three 10.33 lines at 20%: the CRM's VAT is 3 x 2.07 = 6.21 (total 37.20); QuickBooks' 30.99 x 20% = 6.20
    base = CrmOrder.from_api(_order_example())
    line = CrmLine(
        name="Widget",
        description=None,
        product_id="p",
        price_id=None,
        qty=Decimal(1),
        unit_price=Decimal("10.33"),
        taxes=(VAT,),
    )
    return replace(
        base,
        items=(line, line, line),
        amount=Decimal("37.20"),
        subtotal=Decimal("30.99"),
        discount=Decimal(0),
        tax=Decimal("6.21"),
        shipping=Decimal(0),
    )


def _ctx(**overrides: object) -> ReceiptContext:
    values: dict[str, object] = {
        "customer_id": "58",
        "company": UK,
        "item_ids": ["11", "11", "11"],
        "tax_mapping": TaxMapping({"VAT": "6"}, exempt_code="9"),
        "payment_method_id": "4",
        "deposit_account_id": "35",
        "rounding_item_id": "77",
    }
    values.update(overrides)
    return ReceiptContext(**values)  # type: ignore[arg-type]


def test_non_us_receipt_gets_a_rounding_line() -> None:
    body = build_sales_receipt(_txn(amount="37.20"), _order(), _ctx())
    assert [ln["Amount"] for ln in body["Line"]] == [Decimal("10.33")] * 3 + [Decimal("0.01")]
    rounding = body["Line"][-1]["SalesItemLineDetail"]
    assert rounding["ItemRef"] == {"value": "77"} and rounding["TaxCodeRef"] == {"value": "9"}
    assert body["TxnTaxDetail"] == {"TotalTax": Decimal("6.20")}
    assert validate_qbo_json("SalesReceipt", body) == []


def test_receipt_rounding_needs_the_rounding_item() -> None:
    with pytest.raises(ValueError, match="rounding item"):
        build_sales_receipt(_txn(amount="37.20"), _order(), _ctx(rounding_item_id=None))

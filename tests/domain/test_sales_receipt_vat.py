"""Non-US sales receipts: an order's one tax rate (HighLevel states tax per order) is booked on its lines."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmLine, CrmOrder, CrmTaxLine
from qbconnect.domain.sales_receipt import ReceiptContext, draft_sales_receipt, order_tax
from tests.domain.test_sales_receipt import _order_example, _txn
from tests.support.qbo_xsd import validate_qbo_json

UK = CompanyFacts(is_us=False, home_currency="USD")
VAT_LINE = CrmTaxLine(id="t-vat", name="VAT", rate=Decimal(20), calculation="exclusive", amount=Decimal("6.21"))


def _line(price: str) -> CrmLine:
    return CrmLine(
        name="Widget", description=None, product_id="p", price_id=None, qty=Decimal(1), unit_price=Decimal(price)
    )


def _order(**changes: Any) -> CrmOrder:
    # three 10.33 lines, 20% VAT stated per order: 6.21 (the CRM rounds per line); QuickBooks' 30.99 x 20% = 6.20
    base = CrmOrder.from_api(_order_example())
    values: dict[str, Any] = {
        "items": (_line("10.33"),) * 3,
        "amount": Decimal("37.20"),
        "subtotal": Decimal("30.99"),
        "discount": Decimal(0),
        "tax": Decimal("6.21"),
        "shipping": Decimal(0),
        "tax_lines": (VAT_LINE,),
    }
    values.update(changes)
    return replace(base, **values)


def _ctx(**overrides: Any) -> ReceiptContext:
    values: dict[str, Any] = {
        "customer_id": "58",
        "company": UK,
        "item_ids": ["11", "11", "11"],
        "fallback_item_id": "99",
        "tax_mapping": TaxMapping({"rate:20": "6", "exempt": "9"}, exempt_code="9"),
        "shipping_item_id": "50",
        "payment_method_id": "4",
        "deposit_account_id": "35",
        "rounding_item_id": "77",
    }
    values.update(overrides)
    return ReceiptContext(**values)


def _codes(body: dict[str, Any]) -> list[str]:
    return [
        ln["SalesItemLineDetail"]["TaxCodeRef"]["value"]
        for ln in body["Line"]
        if ln["DetailType"] == "SalesItemLineDetail"
    ]


def test_one_mapped_rate_books_the_lines_with_its_code_and_a_rounding_line() -> None:
    draft = draft_sales_receipt(_txn(amount="37.20"), _order(), _ctx())
    body = draft.body
    assert draft.tax_note is None
    assert body["GlobalTaxCalculation"] == "TaxExcluded"
    assert _codes(body) == ["6", "6", "6", "9"]  # the VAT code; the rounding line exempt
    assert [ln["Amount"] for ln in body["Line"]] == [Decimal("10.33")] * 3 + [Decimal("0.01")]
    assert body["Line"][-1]["SalesItemLineDetail"]["ItemRef"] == {"value": "77"}
    assert body["TxnTaxDetail"] == {"TotalTax": Decimal("6.20")}  # QuickBooks' VAT: 30.99 + 0.01 + 6.20 = 37.20
    assert validate_qbo_json("SalesReceipt", body) == []


def test_shipping_is_exempt_unless_the_crm_taxed_it() -> None:
    untaxed = _order(items=(_line("50.00"),), subtotal=Decimal(50), tax=Decimal(10), shipping=Decimal(5))
    body = draft_sales_receipt(_txn(amount="65.00"), replace(untaxed, amount=Decimal(65)), _ctx(item_ids=["11"])).body
    assert _codes(body) == ["6", "9"] and body["TxnTaxDetail"] == {"TotalTax": Decimal("10.00")}
    taxed = replace(untaxed, tax=Decimal(11), amount=Decimal(66))
    body = draft_sales_receipt(_txn(amount="66.00"), taxed, _ctx(item_ids=["11"])).body
    assert _codes(body) == ["6", "6"] and body["TxnTaxDetail"] == {"TotalTax": Decimal("11.00")}
    assert validate_qbo_json("SalesReceipt", body) == []


def test_an_inclusive_rate_books_tax_inclusive() -> None:
    inclusive = replace(VAT_LINE, calculation="inclusive", amount=Decimal(10))
    order = _order(
        items=(_line("60.00"),), subtotal=Decimal(60), tax=Decimal(10), amount=Decimal(60), tax_lines=(inclusive,)
    )
    body = draft_sales_receipt(_txn(amount="60.00"), order, _ctx(item_ids=["11"])).body
    assert body["GlobalTaxCalculation"] == "TaxInclusive" and _codes(body) == ["6"]
    assert body["Line"][0]["Amount"] == Decimal("60.00") and body["TxnTaxDetail"] == {"TotalTax": Decimal("10.00")}


def test_an_unmapped_rate_books_one_untaxed_line_and_says_which_tax_to_map() -> None:
    draft = draft_sales_receipt(_txn(amount="37.20"), _order(), _ctx(tax_mapping=TaxMapping({}, exempt_code="9")))
    assert draft.body["GlobalTaxCalculation"] == "NotApplicable"
    [line] = draft.body["Line"]
    assert line["Amount"] == Decimal("37.20") and line["SalesItemLineDetail"]["ItemRef"] == {"value": "99"}
    assert draft.tax_note is not None and '"VAT" (20%)' in draft.tax_note and "Map it" in draft.tax_note


def test_several_rates_and_us_companies_keep_one_untaxed_line() -> None:
    reduced = replace(VAT_LINE, id="t-red", name="Reduced", rate=Decimal(5), amount=Decimal(1))
    several = _order(tax_lines=(VAT_LINE, reduced))
    assert order_tax(several, UK) is None
    draft = draft_sales_receipt(_txn(amount="37.20"), several, _ctx())
    assert draft.body["GlobalTaxCalculation"] == "NotApplicable" and len(draft.body["Line"]) == 1
    assert draft.tax_note is None
    assert order_tax(_order(), CompanyFacts(is_us=True)) is None
    assert order_tax(_order(), UK) is not None

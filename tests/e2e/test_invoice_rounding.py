"""Non-US invoices end to end: QuickBooks computes VAT per rate over the whole invoice, the CRM per line;
a "Rounding" line (exempt tax code) on a "Rounding" Service item keeps the QuickBooks total on the CRM's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from qbconnect.sandbox.stack import Stack
from tests.e2e.test_invoice_sync import Books, make_books
from tests.support.stack_fixtures import stack  # noqa: F401

# three lines of 10.33 at 20%: the CRM rounds 2.066 VAT per line to 2.07 (6.21 in all, total 37.20);
# QuickBooks taxes 30.99 at 20% = 6.198 → 6.20 and would total 37.19
THREE_AT_20 = [
    {"name": f"Widget {n}", "qty": 1, "amount": "10.33", "taxes": [{"name": "VAT", "rate": 20}]} for n in "ABC"
]


def rounding_lines(invoice: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        line
        for line in invoice["Line"]
        if line.get("DetailType") == "SalesItemLineDetail"
        and line["SalesItemLineDetail"]["ItemRef"].get("name") == "Rounding"
    ]


def rounding_items(books: Books) -> list[dict[str, Any]]:
    return [i for i in books.stack.qbo.entities(books.realm_id, "Item") if i["Name"] == "Rounding"]


def test_gb_invoice_with_a_rounding_line_stays_in_step(stack: Stack) -> None:  # noqa: F811
    books = make_books(stack, "GB")
    codes = {c["Name"]: c["Id"] for c in stack.qbo.entities(books.realm_id, "TaxCode")}
    inv = books.invoice(items=THREE_AT_20)
    books.stack.crm.send_invoice(inv)
    books.settle()
    assert books.crm_invoice(inv)["total"] == Decimal("37.20")
    qinv = books.assert_in_step(inv)
    [rounding] = rounding_lines(qinv)
    assert Decimal(str(rounding["Amount"])) == Decimal("0.01")
    assert rounding["SalesItemLineDetail"]["TaxCodeRef"]["value"] == codes["Exempt"]
    assert Decimal(str(qinv["TxnTaxDetail"]["TotalTax"])) == Decimal("6.20")  # QuickBooks' own VAT
    [item] = rounding_items(books)
    assert item["Type"] == "Service"

    # an edit that QuickBooks rounds the same way drops the rounding line (same invoice, updated)
    books.stack.crm.update_invoice(inv, items=[{"name": "Repair", "qty": 1, "amount": "50.00", "taxes": books.tax()}])
    books.settle()
    after = books.assert_in_step(inv)
    assert after["Id"] == qinv["Id"] and rounding_lines(after) == []

    # a second invoice needing one reuses the Rounding item; payments settle the balance as usual
    second = books.invoice(items=THREE_AT_20)
    books.stack.crm.send_invoice(second)
    books.settle()
    assert len(rounding_lines(books.assert_in_step(second))) == 1
    assert len(rounding_items(books)) == 1
    books.stack.crm.record_invoice_payment(second, Decimal("37.20"))
    books.settle()
    assert Decimal(str(books.assert_in_step(second)["Balance"])) == 0


def test_rounding_needed_without_an_exempt_code_fails_naming_the_key(stack: Stack) -> None:  # noqa: F811
    books = make_books(stack, "GB")
    codes = {c["Name"]: c["Id"] for c in stack.qbo.entities(books.realm_id, "TaxCode")}
    books.set_settings(tax_code_map={"rate:20": codes["20.0% S"]})
    inv = books.invoice(items=THREE_AT_20)
    books.stack.crm.send_invoice(inv)
    books.settle()
    row = books.last_row(inv)
    assert row.status == "failed" and row.error_category == "permanent"
    assert '"exempt" key of the tax code map' in (row.error_message or "")
    assert books.qbo_invoices() == []

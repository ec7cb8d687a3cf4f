from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.errors import MappingError
from qbconnect.domain.invoice import (
    InvoiceContext,
    build_qbo_invoice,
    build_sparse_invoice_update,
    expected_totals,
)
from qbconnect.domain.jsonutil import dumps, loads
from qbconnect.domain.qbo_models import QboInvoice
from qbconnect.errors import ErrorCategory
from tests.support.qbo_xsd import validate_qbo_json

US = CompanyFacts(is_us=True)
UK = CompanyFacts(is_us=False, home_currency="GBP", custom_txn_numbers=True)
TAXES = {
    "GST": {"_id": "t-gst", "name": "GST", "rate": 5, "calculation": "exclusive"},
    "VAT": {"_id": "t-vat", "name": "VAT", "rate": 20, "calculation": "exclusive"},
    "ST": {"_id": "t-st", "name": "ST", "rate": 8.25, "calculation": "exclusive"},
    "PST": {"_id": "t-pst", "name": "PST", "rate": 7, "calculation": "exclusive"},
}
TAX_CODES = TaxMapping(
    codes={
        "GST": "1",
        "VAT": "2",
        "ST": "3",
        "PST": "4",
        **{f"{a}+{b}": "5" for a in TAXES for b in TAXES if a != b},
    },
    exempt_code="9",
)


# ---------- an independent CRM total calculator (the rule in /work/notes/CRM_TOTALS.md) --------------
def r2(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def crm_reference_totals(items: list[dict[str, Any]], discount: dict[str, Any] | None) -> dict[str, Decimal]:
    amounts = [r2(Decimal(str(i["qty"])) * Decimal(str(i["amount"]))) for i in items]
    subtotal = sum(amounts, Decimal("0.00"))
    shares = [Decimal("0.00")] * len(items)
    disc = Decimal("0.00")
    if discount:
        valid = discount.get("validOnProductIds") or []
        eligible = [k for k, i in enumerate(items) if not valid or i.get("productId") in valid]
        base = sum((amounts[k] for k in eligible), Decimal("0.00"))
        value = Decimal(str(discount["value"]))
        disc = r2(base * value / 100) if discount["type"] == "percentage" else min(value, base)
        if base > 0:
            cents_total = int(disc * 100)
            exact = [Decimal(cents_total) * amounts[k] / base for k in eligible]
            floors = [int(x) for x in exact]
            order = sorted(range(len(eligible)), key=lambda j: (-(exact[j] - floors[j]), j))
            for j in order[: cents_total - sum(floors)]:
                floors[j] += 1
            for j, k in enumerate(eligible):
                shares[k] = Decimal(floors[j]) / 100
    tax = Decimal("0.00")
    excl = Decimal("0.00")
    for item, amount, share in zip(items, amounts, shares, strict=True):
        rates = [Decimal(str(t["rate"])) for t in item.get("taxes", [])]
        inclusive = bool(item.get("taxInclusive"))
        net = (amount - share) / (1 + sum(rates, Decimal(0)) / 100) if inclusive else amount - share
        for rate in rates:
            line_tax = r2(net * rate / 100)
            tax += line_tax
            if not inclusive:
                excl += line_tax
    total = subtotal - disc + excl
    return {"subTotal": subtotal, "discount": disc, "tax": tax, "total": total}


def make_invoice(
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None = None,
    *,
    paid: Decimal = Decimal(0),
    currency: str = "USD",
    number: str = "INV-19",
) -> dict[str, Any]:
    totals = crm_reference_totals(items, discount)
    return {
        "_id": "crm-inv-1",
        "altId": "loc-1",
        "status": "sent",
        "liveMode": True,
        "invoiceNumber": number,
        "currency": currency,
        "contactDetails": {"id": "c1", "name": "Jane Doe", "email": "jane@example.com"},
        "issueDate": "2024-03-01",
        "dueDate": "2024-03-31",
        "discount": discount,
        "invoiceItems": items,
        "total": totals["total"],
        "amountPaid": paid,
        "amountDue": totals["total"] - paid,
        "totalSummary": {"subTotal": totals["subTotal"], "discount": totals["discount"], "tax": totals["tax"]},
    }


ROUNDING_ITEM = "77"
# The QuickBooks rates behind TAX_CODES (rate id, percent); the combined code "5" carries the rates of the
# single codes of the taxes on its line (GST+PST → GST's and PST's rates); "9" (exempt) carries none.
CODE_RATES = {"1": [("r-gst", 5)], "2": [("r-vat", 20)], "3": [("r-st", Decimal("8.25"))], "4": [("r-pst", 7)]}
TAX_RATE_IDS = {"GST": "r-gst", "VAT": "r-vat", "ST": "r-st", "PST": "r-pst"}


def ctx(n: int, company: CompanyFacts = US, **kwargs: Any) -> InvoiceContext:
    if not company.is_us:
        kwargs.setdefault("rounding_item_id", ROUNDING_ITEM)
    return InvoiceContext(
        customer_id="58",
        item_ids=[str(100 + k) for k in range(n)],
        company=company,
        tax_mapping=TAX_CODES,
        **kwargs,
    )


def _line_rates(code: str, crm_item: dict[str, Any] | None) -> list[tuple[str, Decimal]]:
    if code == "5":
        assert crm_item is not None
        return [(TAX_RATE_IDS[t["name"]], Decimal(str(t["rate"]))) for t in crm_item["taxes"]]
    return [(rate_id, Decimal(rate)) for rate_id, rate in CODE_RATES.get(code, [])]


def qbo_total(payload: dict[str, Any], crm_items: list[dict[str, Any]] | None = None) -> tuple[Decimal, Decimal]:
    """(TotalAmt, TotalTax) as QBO computes them from the lines: US companies take the stated tax; non-US
    ones compute VAT per tax rate over the summed lines (discount prorated when tax is after discount),
    rounded once per rate, ignoring a stated TotalTax. ``crm_items`` (in line order) tell the rates of the
    combined code."""
    subtotal = Decimal(0)
    discount = Decimal(0)
    taxed: list[tuple[Decimal, str]] = []
    for line in payload["Line"]:
        amount = Decimal(str(line["Amount"]))
        if line["DetailType"] == "SalesItemLineDetail":
            detail = line["SalesItemLineDetail"]
            qty, price = Decimal(str(detail["Qty"])), Decimal(str(detail["UnitPrice"]))
            assert r2(qty * price) == amount, line
            subtotal += amount
            taxed.append((amount, (detail.get("TaxCodeRef") or {}).get("value", "")))
        elif line["DetailType"] == "DiscountLineDetail":
            detail = line["DiscountLineDetail"]
            if detail["PercentBased"]:
                computed = r2(subtotal * Decimal(str(detail["DiscountPercent"])) / 100)
                assert computed == amount
                discount += computed
            else:
                discount += amount
    calc = payload.get("GlobalTaxCalculation")
    if calc is None or calc == "NotApplicable":
        tax = Decimal(str(payload.get("TxnTaxDetail", {}).get("TotalTax", 0)))
    else:
        bases: dict[str, tuple[Decimal, Decimal]] = {}
        for index, (amount, code) in enumerate(taxed):
            base = amount
            if payload.get("ApplyTaxAfterDiscount") and subtotal:
                base = base - discount * base / subtotal
            crm_item = crm_items[index] if crm_items is not None and index < len(crm_items) else None
            for rate_id, rate in _line_rates(code, crm_item):
                bases[rate_id] = (bases.get(rate_id, (Decimal(0), rate))[0] + base, rate)
        if calc == "TaxInclusive":
            tax = sum((r2(base - base / (1 + rate / 100)) for base, rate in bases.values()), Decimal(0))
        else:
            tax = sum((r2(base * rate / 100) for base, rate in bases.values()), Decimal(0))
    if calc == "TaxInclusive":
        return subtotal - discount, tax
    return subtotal - discount + tax, tax


def rounding_lines(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        ln
        for ln in payload["Line"]
        if ln["DetailType"] == "SalesItemLineDetail" and ln["SalesItemLineDetail"]["ItemRef"]["value"] == ROUNDING_ITEM
    ]


def line(name: str, qty: Any, amount: Any, *taxes: str, inclusive: bool = False, product: str = "p1") -> dict[str, Any]:
    return {
        "name": name,
        "description": f"{name} description",
        "productId": product,
        "priceId": f"price-{name}",
        "qty": qty,
        "amount": amount,
        "taxes": [TAXES[t] for t in taxes],
        "taxInclusive": inclusive,
        "currency": "USD",
    }


# ---------- unit tests ---------------------------------------------------------------------------------
def test_us_invoice_with_percentage_discount() -> None:
    data = make_invoice(
        [line("Widget", 2, "19.99", "ST"), line("Service", 1, 100)], {"type": "percentage", "value": 10}
    )
    inv = CrmInvoice.from_api(data)
    payload = build_qbo_invoice(inv, ctx(2))
    assert validate_qbo_json("Invoice", payload) == []
    sales = payload["Line"][:2]
    assert sales[0]["Amount"] == Decimal("39.98")
    assert sales[0]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "TAX"}
    assert sales[1]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "NON"}
    assert sales[0]["SalesItemLineDetail"]["ItemRef"] == {"value": "100"}
    assert sales[0]["Description"] == "Widget - Widget description"
    discount = payload["Line"][2]
    assert discount["DiscountLineDetail"] == {"PercentBased": True, "DiscountPercent": Decimal(10)}
    assert discount["Amount"] == Decimal("14.00")
    # share of the discount on the taxed line: 14.00 * 39.98 / 139.98 = 4.00; round(35.98 * 8.25%) = 2.97
    assert payload["TxnTaxDetail"] == {"TotalTax": Decimal("2.97")}
    assert payload["ApplyTaxAfterDiscount"] is True
    assert qbo_total(payload)[0] == inv.total == Decimal("128.95")
    assert payload["CustomerRef"] == {"value": "58"}
    assert (payload["TxnDate"], payload["DueDate"]) == ("2024-03-01", "2024-03-31")
    assert payload["BillEmail"] == {"Address": "jane@example.com"}
    assert "crm-inv-1" in payload["PrivateNote"] and "INV-19" in payload["PrivateNote"]
    assert "DocNumber" not in payload and "CurrencyRef" not in payload and "GlobalTaxCalculation" not in payload
    loads(dumps(payload))  # serialisable without floats


def test_fixed_and_product_limited_discounts_are_amount_lines() -> None:
    fixed = CrmInvoice.from_api(make_invoice([line("A", 1, 50), line("B", 1, 50)], {"type": "fixed", "value": 15}))
    payload = build_qbo_invoice(fixed, ctx(2))
    assert payload["Line"][-1]["DiscountLineDetail"] == {"PercentBased": False}
    assert payload["Line"][-1]["Amount"] == Decimal("15.00")
    limited = CrmInvoice.from_api(
        make_invoice(
            [line("A", 1, 50, product="p1"), line("B", 1, 50, product="p2")],
            {"type": "percentage", "value": 10, "validOnProductIds": ["p2"]},
        )
    )
    payload = build_qbo_invoice(limited, ctx(2, discount_account_id="86"))
    last = payload["Line"][-1]
    assert last["Amount"] == Decimal("5.00")
    assert last["DiscountLineDetail"] == {"PercentBased": False, "DiscountAccountRef": {"value": "86"}}
    assert last["Description"] == "10% discount on B"
    assert validate_qbo_json("Invoice", payload) == []
    assert qbo_total(payload)[0] == limited.total


def test_non_us_tax_codes_and_exempt_lines() -> None:
    inv = CrmInvoice.from_api(
        make_invoice([line("A", 1, 100, "VAT"), line("B", 1, 10), line("C", 1, 10, "GST", "PST")], currency="GBP")
    )
    payload = build_qbo_invoice(inv, ctx(3, UK))
    assert payload["GlobalTaxCalculation"] == "TaxExcluded"
    codes = [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in payload["Line"]]
    assert codes == ["2", "9", "5"]
    assert payload["TxnTaxDetail"]["TotalTax"] == Decimal("21.20")
    assert payload["DocNumber"] == "INV-19"
    assert validate_qbo_json("Invoice", payload) == []


def test_non_us_rounding_line_makes_up_quickbooks_per_rate_vat() -> None:
    # 1.35 gross at 20% holds round(1.125 x 20%) = 0.23 VAT: booked at 1.12 net; QuickBooks taxes the 20%
    # lines together: (0.00 + 1.12) x 20% = 0.22, total 1.34 — a +0.01 rounding line (exempt) gives 1.35
    items = [line("A", 1, "0.00", "VAT"), line("B", 1, "1.35", "VAT", inclusive=True)]
    inv = CrmInvoice.from_api(make_invoice(items, currency="GBP"))
    payload = build_qbo_invoice(inv, ctx(2, UK))
    [rounding] = rounding_lines(payload)
    assert payload["Line"][-1] is rounding
    assert rounding["Amount"] == Decimal("0.01")
    assert rounding["Description"].startswith("Rounding")
    assert rounding["SalesItemLineDetail"] == {
        "ItemRef": {"value": ROUNDING_ITEM},
        "Qty": Decimal(1),
        "UnitPrice": Decimal("0.01"),
        "TaxCodeRef": {"value": "9"},
    }
    assert payload["TxnTaxDetail"] == {"TotalTax": Decimal("0.22")}  # what QuickBooks computes
    assert qbo_total(payload, items) == (inv.total, Decimal("0.22"))
    assert validate_qbo_json("Invoice", payload) == []


def test_non_us_rounding_line_may_be_negative() -> None:
    # three 0.02 lines at 20%: the CRM rounds 0.004 per line to 0.00, QuickBooks 0.06 x 20% = 0.012 to 0.01
    items = [line(n, 1, "0.02", "VAT") for n in "ABC"]
    inv = CrmInvoice.from_api(make_invoice(items, currency="GBP"))
    payload = build_qbo_invoice(inv, ctx(3, UK))
    [rounding] = rounding_lines(payload)
    assert (rounding["Amount"], rounding["SalesItemLineDetail"]["UnitPrice"]) == (Decimal("-0.01"), Decimal("-0.01"))
    assert qbo_total(payload, items)[0] == inv.total == Decimal("0.06")
    assert validate_qbo_json("Invoice", payload) == []


def test_no_rounding_line_when_quickbooks_agrees_or_for_us_companies() -> None:
    items = [line("A", 1, 100, "VAT"), line("B", 2, "10.50", "VAT"), line("C", 1, 10)]
    uk = build_qbo_invoice(CrmInvoice.from_api(make_invoice(items, currency="GBP")), ctx(3, UK))
    assert rounding_lines(uk) == [] and len(uk["Line"]) == 3
    cents = [line(n, 1, "0.02", "ST") for n in "ABC"]
    us = build_qbo_invoice(CrmInvoice.from_api(make_invoice(cents)), ctx(3))
    assert rounding_lines(us) == [] and len(us["Line"]) == 3


def test_rounding_without_an_exempt_code_names_what_to_map() -> None:
    items = [line(n, 1, "0.02", "VAT") for n in "ABC"]
    inv = CrmInvoice.from_api(make_invoice(items, currency="GBP"))
    mapping = TaxMapping(codes={"VAT": "2"})
    context = InvoiceContext(customer_id="1", item_ids=["1"] * 3, company=UK, tax_mapping=mapping, rounding_item_id="7")
    with pytest.raises(MappingError, match=r'rounding line of -0\.01.*"exempt" key of the tax code map') as caught:
        build_qbo_invoice(inv, context)
    assert caught.value.category is ErrorCategory.PERMANENT


def test_non_us_product_limited_discount_is_taken_off_its_lines() -> None:
    # QuickBooks would spread a discount line over the taxed line too; the CRM takes it off B only
    items = [line("A", 1, 100, "VAT", product="p1"), line("B", 1, 50, product="p2")]
    discount = {"type": "percentage", "value": 10, "validOnProductIds": ["p2"]}
    inv = CrmInvoice.from_api(make_invoice(items, discount, currency="GBP"))
    payload = build_qbo_invoice(inv, ctx(2, UK))
    assert [ln["DetailType"] for ln in payload["Line"]] == ["SalesItemLineDetail"] * 2
    assert payload["Line"][1]["Amount"] == Decimal("45.00")
    assert payload["Line"][1]["Description"] == "B - B description (less 5.00 10% discount on B)"
    assert "ApplyTaxAfterDiscount" not in payload
    assert qbo_total(payload, items) == (inv.total, Decimal("20.00")) == (Decimal("165.00"), Decimal("20.00"))
    assert validate_qbo_json("Invoice", payload) == []


def test_discount_taken_off_the_lines_when_no_rounding_line_can_meet_the_total() -> None:
    # 24.26% of 658.74 = 159.81, prorated by QuickBooks: GST on 498.8997 = 24.94 (the CRM: 24.95); a rounding
    # line shifts the proration and tips that VAT to 24.95 whatever its size, so the total jumps past the
    # CRM's; with the discount taken off the lines the rounding line no longer moves the VAT
    items = [line("A", 1, "0.04"), line("B", 1, "658.70", "GST")]
    inv = CrmInvoice.from_api(make_invoice(items, {"type": "percentage", "value": "24.26"}, currency="GBP"))
    payload = build_qbo_invoice(inv, ctx(2, UK))
    assert all(ln["DetailType"] == "SalesItemLineDetail" for ln in payload["Line"])
    assert [ln["Amount"] for ln in payload["Line"][:2]] == [Decimal("0.03"), Decimal("498.90")]
    assert qbo_total(payload, items)[0] == inv.total
    assert validate_qbo_json("Invoice", payload) == []


def test_unmapped_tax_is_a_plain_permanent_error() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 1, 100, "VAT")], currency="GBP"))
    context = InvoiceContext(customer_id="1", item_ids=["1"], company=UK, tax_mapping=TaxMapping({"GST": "1"}))
    with pytest.raises(MappingError, match=r'CRM tax "VAT" \(20%\)') as caught:
        build_qbo_invoice(inv, context)
    assert caught.value.category is ErrorCategory.PERMANENT
    by_rate = InvoiceContext(customer_id="1", item_ids=["1"], company=UK, tax_mapping=TaxMapping({"rate:20": "7"}))
    payload = build_qbo_invoice(inv, by_rate)
    assert payload["Line"][0]["SalesItemLineDetail"]["TaxCodeRef"] == {"value": "7"}


def test_non_us_untaxed_invoice_is_not_applicable() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 2, 10)], currency="GBP"))
    payload = build_qbo_invoice(inv, InvoiceContext(customer_id="1", item_ids=["1"], company=UK))
    assert payload["GlobalTaxCalculation"] == "NotApplicable"
    assert "TaxCodeRef" not in payload["Line"][0]["SalesItemLineDetail"]
    assert "TxnTaxDetail" not in payload
    assert validate_qbo_json("Invoice", payload) == []


def test_all_inclusive_non_us_invoice_is_tax_inclusive() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 1, 120, "VAT", inclusive=True)], currency="GBP"))
    payload = build_qbo_invoice(inv, ctx(1, UK))
    assert payload["GlobalTaxCalculation"] == "TaxInclusive"
    assert payload["Line"][0]["Amount"] == Decimal("120.00")
    assert payload["TxnTaxDetail"]["TotalTax"] == Decimal("20.00")
    assert qbo_total(payload)[0] == inv.total == Decimal(120)


def test_inclusive_line_on_us_company_is_booked_net() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 3, 10, "ST", inclusive=True), line("B", 1, 5, "ST")]))
    payload = build_qbo_invoice(inv, ctx(2))
    first = payload["Line"][0]
    # 30 gross includes round(30/1.0825*8.25%) = 2.29 tax
    assert first["Amount"] == Decimal("27.71")
    assert first["SalesItemLineDetail"]["Qty"] == 3
    assert payload["TxnTaxDetail"]["TotalTax"] == Decimal("2.29") + Decimal("0.41")
    assert qbo_total(payload)[0] == inv.total
    assert validate_qbo_json("Invoice", payload) == []


def test_doc_number_rules() -> None:
    long_number = CrmInvoice.from_api(make_invoice([line("A", 1, 1)], number="X" * 22))
    with pytest.raises(MappingError, match="21 characters"):
        build_qbo_invoice(long_number, ctx(1, CompanyFacts(is_us=True, custom_txn_numbers=True)))
    assert "DocNumber" not in build_qbo_invoice(long_number, ctx(1))


def test_currency_rules() -> None:
    eur = CrmInvoice.from_api(make_invoice([line("A", 1, 1)], currency="EUR"))
    with pytest.raises(MappingError, match="EUR"):
        build_qbo_invoice(eur, ctx(1))
    payload = build_qbo_invoice(eur, ctx(1, CompanyFacts(is_us=True, multicurrency=True)))
    assert payload["CurrencyRef"] == {"value": "EUR"}
    assert validate_qbo_json("Invoice", payload) == []


def test_inconsistent_crm_total_is_refused() -> None:
    data = make_invoice([line("A", 1, 100)], {"type": "percentage", "value": 10})
    data["total"] = 100  # the CRM says 100 although 10% was taken off
    data["totalSummary"].pop("tax")
    with pytest.raises(MappingError, match=r"total 100\.00 does not match"):
        build_qbo_invoice(CrmInvoice.from_api(data), ctx(1))


def test_no_lines_is_refused() -> None:
    with pytest.raises(MappingError, match="no lines"):
        build_qbo_invoice(CrmInvoice.from_api(make_invoice([])), ctx(0))


def test_expected_totals() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 1, "100.005")], paid=Decimal(40)))
    assert expected_totals(inv) == (Decimal("100.01"), Decimal("60.01"))
    void = CrmInvoice.from_api(dict(make_invoice([line("A", 1, 5)]), status="void"))
    assert expected_totals(void) == (Decimal("0.00"), Decimal("0.00"))


def _as_qbo_response(payload: dict[str, Any]) -> dict[str, Any]:
    """What QBO hands back: floats, Ids on lines, a subtotal line, extra fields."""
    existing: dict[str, Any] = json.loads(dumps(payload))
    for number, ln in enumerate(existing["Line"], start=1):
        ln["Id"] = str(number)
        ln["LineNum"] = number
        if "SalesItemLineDetail" in ln:
            ln["SalesItemLineDetail"]["ItemRef"]["name"] = "Item"
    existing["Line"].append({"Amount": 1.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
    existing.update(Id="130", SyncToken="2", CustomerMemo={"value": "accountant's memo"}, SalesTermRef={"value": "3"})
    existing["PrivateNote"] = "Checked by Sam. " + existing["PrivateNote"]
    return existing


def test_sparse_update_none_when_unchanged() -> None:
    inv = CrmInvoice.from_api(make_invoice([line("A", 2, "9.99", "ST")], {"type": "percentage", "value": 5}))
    payload = build_qbo_invoice(inv, ctx(1))
    assert build_sparse_invoice_update(QboInvoice.from_api(_as_qbo_response(payload)), payload) is None


def test_sparse_update_sends_only_owned_changes() -> None:
    before = build_qbo_invoice(CrmInvoice.from_api(make_invoice([line("A", 2, "9.99", "ST")])), ctx(1))
    existing = _as_qbo_response(before)
    after_data = make_invoice([line("A", 2, "9.99", "ST")], {"type": "fixed", "value": 3})
    after_data["dueDate"] = "2024-04-15"
    desired = build_qbo_invoice(CrmInvoice.from_api(after_data), ctx(1))
    update = build_sparse_invoice_update(QboInvoice.from_api(existing), desired)
    assert update is not None
    assert (update["Id"], update["SyncToken"], update["sparse"]) == ("130", "2", True)
    assert update["DueDate"] == "2024-04-15"
    assert update["Line"][0]["Id"] == "1"
    assert update["Line"][1]["DetailType"] == "DiscountLineDetail"
    assert update["TxnTaxDetail"] == desired["TxnTaxDetail"]
    for kept in ("CustomerMemo", "SalesTermRef", "PrivateNote", "TxnDate", "BillEmail", "CustomerRef"):
        assert kept not in update
    assert validate_qbo_json("Invoice", update) == []


def test_sparse_update_restores_our_note_without_dropping_theirs() -> None:
    payload = build_qbo_invoice(CrmInvoice.from_api(make_invoice([line("A", 1, 5)])), ctx(1))
    existing = _as_qbo_response(payload)
    existing["PrivateNote"] = "Voided by mistake"
    update = build_sparse_invoice_update(QboInvoice.from_api(existing), payload)
    assert update is not None
    assert update["PrivateNote"].startswith("Voided by mistake\n") and payload["PrivateNote"] in update["PrivateNote"]


# ---------- property test: QBO's arithmetic on our payload equals the CRM total ------------------------
money_st = st.decimals(min_value=0, max_value=2000, places=2)
qty_st = st.sampled_from([1, 1, 2, 3, 7, Decimal("0.5"), Decimal("1.25"), Decimal("2.333")])
taxes_st = st.lists(st.sampled_from(sorted(TAXES)), max_size=2, unique=True)
item_st = st.builds(
    lambda name, qty, price, taxes, inclusive, product: line(
        name, qty, price, *taxes, inclusive=inclusive, product=product
    ),
    st.sampled_from(["Alpha", "Beta", "Gamma", "Delta"]),
    qty_st,
    money_st,
    taxes_st,
    st.booleans(),
    st.sampled_from(["p1", "p2", "p3"]),
)
discount_st = st.one_of(
    st.none(),
    st.builds(
        lambda value, products: {"type": "percentage", "value": value, "validOnProductIds": products},
        st.decimals(min_value=0, max_value=100, places=2),
        st.one_of(st.just([]), st.lists(st.sampled_from(["p1", "p2", "p3"]), min_size=1, max_size=2, unique=True)),
    ),
    st.builds(
        lambda value, products: {"type": "fixed", "value": value, "validOnProductIds": products},
        money_st,
        st.one_of(st.just([]), st.lists(st.sampled_from(["p1", "p2"]), min_size=1, max_size=1)),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(item_st, min_size=1, max_size=6), discount=discount_st, us=st.booleans())
def test_qbo_total_equals_crm_total(items: list[dict[str, Any]], discount: dict[str, Any] | None, us: bool) -> None:
    company = US if us else UK
    data = make_invoice(items, discount, currency="USD" if us else "GBP")
    reference = crm_reference_totals(items, discount)
    inv = CrmInvoice.from_api(data)
    payload = build_qbo_invoice(inv, ctx(len(items), company))
    total, tax = qbo_total(payload, items)
    assert total == reference["total"]
    stated = payload.get("TxnTaxDetail", {}).get("TotalTax")
    if us:
        assert stated == reference["tax"]
    elif payload["GlobalTaxCalculation"] != "NotApplicable":
        assert stated == tax  # the tax QuickBooks computes: the invoice reads back in step
    else:
        assert "TxnTaxDetail" not in payload and reference["tax"] == 0
    rounding = rounding_lines(payload)
    if us or payload["GlobalTaxCalculation"] != "TaxExcluded":
        assert rounding == []
    else:
        assert len(rounding) <= 1
        for extra in rounding:
            assert extra["SalesItemLineDetail"]["TaxCodeRef"] == {"value": TAX_CODES.exempt_code}
            assert 0 < abs(extra["Amount"]) <= Decimal("0.01") * len(items)
    assert expected_totals(inv)[0] == reference["total"]
    assert validate_qbo_json("Invoice", payload) == []

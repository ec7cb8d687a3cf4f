"""QBO business rules for sales forms and payments: lines, discounts, tax, totals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import faults
from .money import cents, dec, out

if TYPE_CHECKING:
    from .company import Company

LINE_TYPES = ("SalesItemLineDetail", "DiscountLineDetail", "DescriptionOnly", "SubTotalLineDetail", "GroupLineDetail")
MAX_DOC_NUMBER = 21


def check_name(value: Any, element: str) -> str:
    """Names cannot contain ':' (the sub-customer separator), tabs or newlines."""
    name = str(value).strip()
    if not name:
        raise faults.required_missing(element)
    if any(ch in name for ch in ":\t\n"):
        raise faults.business_validation(
            f"Invalid character in {element}: names cannot contain a colon (:), a tab or a newline.",
            element=element,
        )
    if len(name) > 500:
        raise faults.string_length(element, 500, len(name))
    return name


@dataclass
class TaxResult:
    total_tax: Decimal
    tax_lines: list[dict[str, Any]]


def compute_sales_form(company: Company, entity: str, body: dict[str, Any]) -> None:
    """Validate lines and set line amounts, SubTotal line, TxnTaxDetail and TotalAmt (in place)."""
    lines = body.get("Line")
    if not lines:
        raise faults.required_missing("Line")
    us = company.is_us
    global_calc = body.get("GlobalTaxCalculation")
    if not us:
        if global_calc is None:
            raise faults.required_missing("GlobalTaxCalculation")
    elif global_calc not in (None, "NotApplicable", "TaxExcluded"):
        raise faults.business_validation(
            "GlobalTaxCalculation TaxInclusive is not supported for US companies.", element="GlobalTaxCalculation"
        )
    taxed = not us and global_calc != "NotApplicable"
    out_lines: list[dict[str, Any]] = []
    item_lines: list[dict[str, Any]] = []
    discount_lines: list[dict[str, Any]] = []
    subtotal = Decimal(0)
    for line in lines:
        detail_type = line.get("DetailType")
        if not detail_type:
            raise faults.required_missing("Line.DetailType")
        if detail_type not in LINE_TYPES:
            raise faults.business_validation(
                f"Line DetailType {detail_type} is not allowed on a {entity}.", element="Line.DetailType"
            )
        if detail_type == "SubTotalLineDetail":
            continue  # recomputed
        if detail_type != "DescriptionOnly" and detail_type not in line:
            raise faults.required_missing(f"Line.{detail_type}")
        if detail_type in ("SalesItemLineDetail", "GroupLineDetail"):
            subtotal += _item_line(company, line, us=us, taxed=taxed)
            item_lines.append(line)
        elif detail_type == "DiscountLineDetail":
            discount_lines.append(line)
        out_lines.append(line)
    if not item_lines:
        raise faults.business_validation("You must fill out at least one split line.", code="6000", element="Line")
    if len(discount_lines) > 1:
        raise faults.business_validation("Only one discount line is allowed per transaction.", element="Line")
    discount = Decimal(0)
    for line in discount_lines:
        detail = line["DiscountLineDetail"]
        if detail.get("PercentBased"):
            pct = dec(detail.get("DiscountPercent"))
            if pct < 0 or pct > 100:
                raise faults.business_validation("DiscountPercent must be between 0 and 100.")
            amount = cents(subtotal * pct / 100)
        else:
            if "Amount" not in line:
                raise faults.required_missing("Line.Amount")
            amount = cents(dec(line["Amount"]))
        if amount < 0 or amount > subtotal:
            raise faults.business_validation("The discount cannot be more than the subtotal.", element="Line.Amount")
        line["Amount"] = out(amount)
        if "DiscountAccountRef" not in detail:
            account = company.find_by_name("Account", "Discounts given")
            if account is not None:
                detail["DiscountAccountRef"] = {"value": account["Id"], "name": account["Name"]}
        discount += amount
    # renumber lines and put the SubTotal line after the last item line (as QBO returns it)
    numbered: list[dict[str, Any]] = []
    for index, line in enumerate(out_lines, start=1):
        line["Id"] = str(index)
        line["LineNum"] = index
        numbered.append(line)
    last_item = max(i for i, line in enumerate(numbered) if line in item_lines)
    numbered.insert(
        last_item + 1,
        {"Amount": out(subtotal), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
    )
    body["Line"] = numbered
    tax = _tax(company, body, item_lines, subtotal, discount, taxed=taxed, inclusive=global_calc == "TaxInclusive")
    detail = dict(body.get("TxnTaxDetail") or {})
    detail["TotalTax"] = out(tax.total_tax)
    if tax.tax_lines:
        detail["TaxLine"] = tax.tax_lines
    body["TxnTaxDetail"] = detail
    included = global_calc == "TaxInclusive"
    total = subtotal - discount if included else subtotal - discount + tax.total_tax
    body["TotalAmt"] = out(cents(total))


def _item_line(company: Company, line: dict[str, Any], *, us: bool, taxed: bool) -> Decimal:
    if "Amount" not in line or line["Amount"] is None:
        raise faults.required_missing("Line.Amount")
    amount = dec(line["Amount"])
    if line["DetailType"] == "GroupLineDetail":
        return cents(amount)
    detail = line["SalesItemLineDetail"]
    qty, price = detail.get("Qty"), detail.get("UnitPrice")
    if qty is not None and price is not None:
        expected = cents(dec(qty) * dec(price))
        if cents(amount) != expected:
            raise faults.amount_mismatch(str(amount), str(expected))
    if cents(amount) != amount:
        raise faults.business_validation(f"Amount {amount} has more than 2 decimal places.", element="Line.Amount")
    if us:
        detail.setdefault("TaxCodeRef", {"value": "NON"})
    elif taxed and "TaxCodeRef" not in detail:
        raise faults.business_validation(
            "Make sure all your transactions have a VAT rate before you save.", element="TaxCodeRef"
        )
    line["Amount"] = out(amount)
    return amount


def _tax(
    company: Company,
    body: dict[str, Any],
    item_lines: list[dict[str, Any]],
    subtotal: Decimal,
    discount: Decimal,
    *,
    taxed: bool,
    inclusive: bool,
) -> TaxResult:
    sent = (body.get("TxnTaxDetail") or {}).get("TotalTax")
    if company.is_us:
        # no AST in sandboxes: tax is what the caller sends (AST honours an explicit amount), else 0
        total = cents(dec(sent)) if sent is not None else Decimal(0)
        if total < 0:
            raise faults.business_validation("TotalTax cannot be negative.", element="TxnTaxDetail.TotalTax")
        return TaxResult(total, [])
    if not taxed:
        return TaxResult(Decimal(0), [])
    after_discount = bool(body.get("ApplyTaxAfterDiscount"))
    # taxable base per tax rate
    bases: dict[str, tuple[Decimal, Decimal]] = {}
    for line in item_lines:
        detail = line.get("SalesItemLineDetail") or {}
        ref = detail.get("TaxCodeRef")
        if not ref:
            continue
        base = dec(line["Amount"])
        if after_discount and subtotal:
            base = base - discount * base / subtotal
        for rate_id, rate in company.sales_rates(str(ref["value"])):
            known = bases.get(rate_id, (Decimal(0), rate))
            bases[rate_id] = (known[0] + base, rate)
    total = Decimal(0)
    tax_lines: list[dict[str, Any]] = []
    for rate_id, (base, rate) in bases.items():
        if inclusive:
            net = base / (1 + rate / 100)
            amount = cents(base - net)
            base = net
        else:
            amount = cents(base * rate / 100)
        total += amount
        tax_lines.append(
            {
                "Amount": out(amount),
                "DetailType": "TaxLineDetail",
                "TaxLineDetail": {
                    "TaxRateRef": {"value": rate_id},
                    "PercentBased": True,
                    "TaxPercent": out(rate),
                    "NetAmountTaxable": out(cents(base)),
                },
            }
        )
    return TaxResult(total, tax_lines)


def zero_out(body: dict[str, Any]) -> None:
    """Void: amounts and quantities zeroed, 'Voided' injected into PrivateNote."""
    for line in body.get("Line", []):
        line["Amount"] = 0
        detail = line.get("SalesItemLineDetail")
        if detail is not None:
            detail["Qty"] = 0
    tax = dict(body.get("TxnTaxDetail") or {})
    tax["TotalTax"] = 0
    tax.pop("TaxLine", None)
    body["TxnTaxDetail"] = tax
    body["TotalAmt"] = 0
    body["Balance"] = 0
    note = body.get("PrivateNote")
    body["PrivateNote"] = "Voided" if not note or note == "Voided" else f"Voided - {note}"

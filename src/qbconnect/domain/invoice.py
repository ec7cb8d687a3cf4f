"""CRM invoice → QBO Invoice payload, so that QuickBooks arrives at the CRM's total to the cent.

How the total is kept exact:
- each CRM line becomes a SalesItemLine with Amount = round(qty x unit price), as the CRM rounds it;
- the CRM discount becomes one DiscountLine: percent-based when it is a percentage of every line (QBO
  then computes the same cents), otherwise an amount line (fixed, or limited to some products);
- tax, US companies: lines are marked ``TAX``/``NON`` and the payload states the CRM's tax
  (``TxnTaxDetail.TotalTax``, which Automated Sales Tax honours): the CRM total minus what the lines
  and discount come to, so QBO's TotalAmt equals the CRM total by construction; it must never be
  negative.
- tax, non-US companies: each line's CRM tax maps to a QBO tax code and ``GlobalTaxCalculation`` is set.
  QuickBooks computes VAT/GST itself and ignores a stated TotalTax: per tax rate, over the summed
  (discount-prorated) amounts of the lines, rounded once per rate — the CRM rounds per line, so the two
  can differ by a cent or so. :func:`qbo_vat` computes QuickBooks' figure (the rate of a mapped code is
  the CRM rate of the lines mapped to it) and, when it misses the CRM total by at most a cent per line,
  a "Rounding" line (Qty 1, UnitPrice = Amount = the difference, negative when QuickBooks would come
  out higher) on the rounding item, booked with the exempt tax code, makes up the difference. The
  stated TotalTax is QuickBooks' own figure, so the invoice reads back in step. Because QuickBooks
  spreads a discount line over every line, a discount limited to some products is taken off those
  lines' amounts instead (no discount line), as is any discount when the rounding line's own share of
  it would tip a rate's VAT so that no rounding amount meets the total.
- tax-inclusive lines keep their gross price when the whole invoice can be booked tax-inclusive
  (non-US); otherwise they are booked at their net amount (gross minus the tax the CRM found inside it).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmDiscount, CrmInvoice, CrmLine
from qbconnect.domain.crm_totals import InvoiceBreakdown, crm_breakdown, discount_eligible
from qbconnect.domain.errors import MappingError
from qbconnect.domain.money import HUNDRED, parse_amount, quantum, round_money
from qbconnect.domain.qbo_models import QboInvoice

DOC_NUMBER_LIMIT = 21
DESCRIPTION_LIMIT = 4000
PRIVATE_NOTE_LIMIT = 4000
UNIT_PRICE_QUANTUM = Decimal("0.0000001")  # QBO keeps unit prices to 7 decimal places
US_TAXABLE = "TAX"
US_NON_TAXABLE = "NON"
ROUNDING_ITEM_NAME = "Rounding"  # the Service item rounding lines are booked on (the caller finds or creates it)
ROUNDING_DESCRIPTION = "Rounding: QuickBooks rounds VAT per rate over the invoice, the CRM per line"

# Invoice fields this app writes (and therefore compares on update); every other field is QBO's.
OWNED_FIELDS = (
    "CustomerRef",
    "Line",
    "TxnDate",
    "DueDate",
    "DocNumber",
    "CurrencyRef",
    "BillEmail",
    "PrivateNote",
    "TxnTaxDetail",
    "GlobalTaxCalculation",
    "ApplyTaxAfterDiscount",
)


@dataclass(frozen=True)
class InvoiceContext:
    """What the caller resolved before mapping: the QBO customer, one QBO item per CRM line, company facts."""

    customer_id: str
    item_ids: Sequence[str]
    company: CompanyFacts
    tax_mapping: TaxMapping = field(default_factory=TaxMapping)
    discount_account_id: str | None = None
    rounding_item_id: str | None = None  # non-US companies: the "Rounding" item (see module docstring)


@dataclass(frozen=True)
class SalesLinesResult:
    """The QBO lines for some CRM lines plus a discount, and the tax to state (non-US: the tax QBO computes)."""

    lines: list[dict[str, Any]]
    total_tax: Decimal
    global_tax_calculation: str | None  # non-US only
    has_discount: bool
    rounding: Decimal = Decimal(0)  # the Amount of the rounding line; 0 when there is none


@dataclass(frozen=True)
class TaxedAmount:
    """A QBO line as QuickBooks taxes it: its Amount and, per tax rate it carries, (rate key, percent)."""

    amount: Decimal
    rates: tuple[tuple[Hashable, Decimal], ...]


def qbo_vat(
    lines: Sequence[TaxedAmount], subtotal: Decimal, discount: Decimal, currency: str, *, inclusive: bool = False
) -> Decimal:
    """The tax QuickBooks computes on a non-US sales form (``GlobalTaxCalculation`` TaxExcluded, or
    TaxInclusive with ``inclusive``).

    Per tax rate: the sum over the lines carrying it of their amount less their share of the discount
    (``discount x amount / subtotal``, unrounded; ``subtotal`` is the sum of every item line, untaxed ones
    too; tax after discount), times the rate (inclusive: the part of that sum the rate makes up), rounded
    once. ``discount`` is 0 without a discount line.
    """
    bases: dict[Hashable, tuple[Decimal, Decimal]] = {}
    for line in lines:
        base = line.amount
        if discount and subtotal:
            base = base - discount * base / subtotal
        for key, rate in line.rates:
            known = bases.get(key, (Decimal(0), rate))
            bases[key] = (known[0] + base, rate)
    zero = round_money(Decimal(0), currency)
    if inclusive:
        return sum((round_money(base - base / (1 + rate / HUNDRED), currency) for base, rate in bases.values()), zero)
    return sum((round_money(base * rate / HUNDRED, currency) for base, rate in bases.values()), zero)


def _rate_keys(line: CrmLine, code: str, tax_mapping: TaxMapping) -> tuple[tuple[Hashable, Decimal], ...]:
    """The QBO tax rates a line's code carries: one per CRM tax of the line, keyed so that lines sharing a
    QuickBooks rate share a key — a tax's own mapped code (a combined code such as GST+PST carries the
    rates of GST's and PST's codes), else the line's code and the tax's position in it."""
    if len(line.taxes) == 1:
        return (((code, line.taxes[0].rate), line.taxes[0].rate),)
    keys: list[tuple[Hashable, Decimal]] = []
    for position, tax in enumerate(line.taxes):
        try:
            own: str = tax_mapping.code_for([tax])
        except MappingError:
            own = f"{code}#{position}"
        keys.append(((own, tax.rate), tax.rate))
    return tuple(keys)


def private_note(kind: str, crm_id: str, number: str | None = None) -> str:
    """The marker naming the CRM record, e.g. ``Topline OS invoice #19 (CRM id 6578...)``."""
    label = f"Topline OS {kind}"
    if number:
        label += f" #{number}"
    return f"{label} (CRM id {crm_id})"[:PRIVATE_NOTE_LIMIT]


def _description(line: CrmLine) -> str | None:
    parts = [p for p in (line.name, line.description) if p]
    if not parts:
        return None
    return " - ".join(parts)[:DESCRIPTION_LIMIT]


def _qty_and_price(line: CrmLine, amount: Decimal, derived: bool) -> tuple[Decimal, Decimal]:
    """Qty and UnitPrice for a line whose Amount is ``amount`` (QBO expects Amount = Qty x UnitPrice)."""
    if not derived:
        return line.qty, line.unit_price
    if line.qty == 0:
        return Decimal(1), amount
    unit = (amount / line.qty).quantize(UNIT_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
    if (line.qty * unit).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) == amount:
        return line.qty, _trim(unit)
    return Decimal(1), amount


def _trim(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (``10.5000000`` → ``10.5``)."""
    trimmed = value.normalize()
    return trimmed.quantize(Decimal(1)) if trimmed.as_tuple().exponent > 0 else trimmed  # type: ignore[operator]


def _discount_description(discount: CrmDiscount, items: Sequence[CrmLine]) -> str:
    what = f"{discount.value.normalize():f}%" if discount.is_percentage else "Fixed"
    if discount.valid_on_product_ids:
        names = sorted({line.name for line in items if (line.product_id or "") in discount.valid_on_product_ids})
        return f"{what} discount on {', '.join(names) or 'selected products'}"[:DESCRIPTION_LIMIT]
    return f"{what} discount"


def build_sales_lines(
    items: Sequence[CrmLine],
    item_ids: Sequence[str],
    discount: CrmDiscount | None,
    target_total: Decimal,
    currency: str,
    company: CompanyFacts,
    tax_mapping: TaxMapping,
    discount_account_id: str | None = None,
    what: str = "CRM invoice",
    expected_tax: Decimal | None = None,
    rounding_item_id: str | None = None,
) -> SalesLinesResult:
    """QBO lines + stated tax for CRM lines, so the QBO total equals ``target_total`` exactly.

    The balancing tax (the total less lines and discount) must agree with ``expected_tax`` (the CRM's own
    tax figure; by default the tax its rule gives for these lines) within a cent per line, otherwise the
    lines do not explain the total and ``MappingError`` is raised. Non-US companies: the tax QuickBooks will
    compute is stated, and a rounding line on ``rounding_item_id`` (exempt tax code) is added when it
    misses the total (see :func:`_rounding`).
    """
    if not items:
        raise MappingError(f"The {what} has no lines; QuickBooks needs at least one.")
    if len(item_ids) != len(items):
        raise ValueError("one QBO item id is needed per CRM line")
    breakdown = crm_breakdown(items, discount, currency)
    target = round_money(target_total, currency)
    any_taxes = any(entry.line.taxes for entry in breakdown.lines)

    mode: str | None = None
    if not company.is_us:
        mode = "NotApplicable" if not any_taxes else "TaxExcluded"
        taxed = [entry for entry in breakdown.lines if entry.line.taxes]
        all_inclusive = bool(taxed) and all(entry.inclusive for entry in taxed)
        if all_inclusive and breakdown.subtotal - breakdown.discount == target:
            mode = "TaxInclusive"

    has_discount = discount is not None and breakdown.discount > 0
    # Non-US: QuickBooks spreads a discount line over every line in proportion to its amount when it
    # computes VAT; a discount limited to some products is taken off those lines' amounts instead.
    fold = (
        discount is not None
        and has_discount
        and mode in ("TaxExcluded", "TaxInclusive")
        and not all(discount_eligible(entry.line, discount) for entry in breakdown.lines)
    )
    lines, taxed_amounts, net_sum = _item_lines(breakdown, item_ids, items, discount, mode, fold, company, tax_mapping)
    discount_amount = breakdown.discount if has_discount and not fold else Decimal(0)
    pre_tax = net_sum - discount_amount
    rounding = Decimal(0)
    if mode == "TaxInclusive":  # the total is the lines less the discount; state the VAT QuickBooks finds in it
        total_tax = qbo_vat(taxed_amounts, net_sum, discount_amount, currency, inclusive=True)
    else:
        total_tax = target - pre_tax
        wanted = breakdown.tax if expected_tax is None else expected_tax
        tolerance = Decimal("0.01") * len(items)
        if total_tax < 0 or (mode == "NotApplicable" and total_tax != 0) or abs(total_tax - wanted) > tolerance:
            raise MappingError(
                f"The {what} total {target} does not match its lines: after discount they come to "
                f"{round_money(pre_tax, currency)} plus tax {round_money(wanted, currency)}. "
                "Nothing was written to QuickBooks."
            )
    if mode == "TaxExcluded":
        found = _rounding(taxed_amounts, net_sum, discount_amount, target, currency, len(items))
        if found is None and discount_amount:
            # The rounding line takes its share of the discount too, which can tip a rate's VAT over a
            # half cent whatever its size: take the discount off the lines instead (no proration left).
            fold, discount_amount = True, Decimal(0)
            lines, taxed_amounts, net_sum = _item_lines(
                breakdown, item_ids, items, discount, mode, fold, company, tax_mapping
            )
            found = _rounding(taxed_amounts, net_sum, discount_amount, target, currency, len(items))
        if found is None:
            vat = qbo_vat(taxed_amounts, net_sum, discount_amount, currency)
            raise MappingError(
                f"The {what} total {target} does not match its lines as QuickBooks taxes them (VAT per rate "
                f"over the whole {what.removeprefix('CRM ')}): QuickBooks would arrive at "
                f"{round_money(net_sum - discount_amount + vat, currency)}, more than a cent per line away. "
                "Nothing was written to QuickBooks."
            )
        rounding, total_tax = found
        if rounding:
            lines.append(_rounding_line(rounding, rounding_item_id, tax_mapping, what))

    has_discount_line = has_discount and not fold
    if discount is not None and has_discount_line:
        lines.append(_discount_line(discount, items, breakdown, net_sum + rounding, currency, discount_account_id))
    return SalesLinesResult(lines, round_money(total_tax, currency), mode, has_discount_line, rounding)


def _item_lines(
    breakdown: InvoiceBreakdown,
    item_ids: Sequence[str],
    items: Sequence[CrmLine],
    discount: CrmDiscount | None,
    mode: str | None,
    fold: bool,
    company: CompanyFacts,
    tax_mapping: TaxMapping,
) -> tuple[list[dict[str, Any]], list[TaxedAmount], Decimal]:
    """One SalesItemLine per CRM line, the lines as QuickBooks taxes them (non-US), and their sum.

    ``fold``: each line's share of the discount is taken off its amount (no discount line)."""
    lines: list[dict[str, Any]] = []
    taxed_amounts: list[TaxedAmount] = []
    net_sum = Decimal(0)
    for entry, item_id in zip(breakdown.lines, item_ids, strict=True):
        derived = entry.inclusive and mode != "TaxInclusive"
        share = entry.discount_share if fold else Decimal(0)
        amount = entry.amount - share - (entry.tax if derived else 0)
        qty, unit_price = _qty_and_price(entry.line, amount, derived or share != 0)
        detail: dict[str, Any] = {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": unit_price}
        if company.is_us:
            detail["TaxCodeRef"] = {"value": US_TAXABLE if entry.line.taxes else US_NON_TAXABLE}
        elif mode != "NotApplicable":
            code = tax_mapping.code_for(entry.line.taxes)
            detail["TaxCodeRef"] = {"value": code}
            rates = _rate_keys(entry.line, code, tax_mapping) if entry.line.taxes else ()
            taxed_amounts.append(TaxedAmount(amount, rates))
        line: dict[str, Any] = {"DetailType": "SalesItemLineDetail", "Amount": amount}
        description = _description(entry.line)
        if share and discount is not None:
            description = f"{description or entry.line.name} (less {share} {_discount_description(discount, items)})"
        if description:
            line["Description"] = description[:DESCRIPTION_LIMIT]
        line["SalesItemLineDetail"] = detail
        lines.append(line)
        net_sum += amount
    return lines, taxed_amounts, net_sum


def _rounding(
    taxed: Sequence[TaxedAmount],
    net_sum: Decimal,
    discount: Decimal,
    target: Decimal,
    currency: str,
    line_count: int,
) -> tuple[Decimal, Decimal] | None:
    """(rounding line Amount, the tax QuickBooks then computes) so that QuickBooks' total is ``target``;
    None when no amount within a cent per CRM line gets there.

    QuickBooks' total with a rounding line of ``r`` is ``net_sum + r - discount + qbo_vat(...)``, where the
    rounding line (exempt, so untaxed) also takes its share of the discount proration. Candidates are
    tried nearest to the plain difference first.
    """

    def vat(rounding: Decimal) -> Decimal:
        return qbo_vat(taxed, net_sum + rounding, discount, currency)

    zero = round_money(Decimal(0), currency)
    plain = vat(zero)
    miss = target - (net_sum - discount + plain)
    if miss == 0:
        return zero, plain
    unit = quantum(currency)
    steps = sorted(range(-line_count, line_count + 1), key=lambda k: (abs(k * unit - miss), k))
    for step in steps:
        rounding = round_money(step * unit, currency)
        if rounding == 0 or net_sum + rounding < discount:
            continue
        tax = vat(rounding)
        if net_sum + rounding - discount + tax == target:
            return rounding, tax
    return None


def _rounding_line(amount: Decimal, rounding_item_id: str | None, tax_mapping: TaxMapping, what: str) -> dict[str, Any]:
    """The adjustment line: Qty 1, UnitPrice = Amount = ``amount`` (may be negative), exempt tax code."""
    if not tax_mapping.exempt_code:
        raise MappingError(
            f"QuickBooks rounds VAT per rate over the whole {what.removeprefix('CRM ')}, the CRM per line, so "
            f"it needs a rounding line of {amount:+} booked without tax. Map the tax code for untaxed lines "
            '(the "exempt" key of the tax code map, e.g. QuickBooks\' Exempt or 0% code) in the settings.'
        )
    if not rounding_item_id:
        raise ValueError("the caller must resolve the rounding item for non-US companies")
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": amount,
        "Description": ROUNDING_DESCRIPTION,
        "SalesItemLineDetail": {
            "ItemRef": {"value": rounding_item_id},
            "Qty": Decimal(1),
            "UnitPrice": amount,
            "TaxCodeRef": {"value": tax_mapping.exempt_code},
        },
    }


def _discount_line(
    discount: CrmDiscount,
    items: Sequence[CrmLine],
    breakdown: InvoiceBreakdown,
    qbo_subtotal: Decimal,
    currency: str,
    discount_account_id: str | None,
) -> dict[str, Any]:
    detail: dict[str, Any] = {"PercentBased": False}
    percent_applies = discount.is_percentage and not discount.valid_on_product_ids
    if percent_applies and round_money(qbo_subtotal * discount.value / HUNDRED, currency) == breakdown.discount:
        detail = {"PercentBased": True, "DiscountPercent": discount.value}
    if discount_account_id:
        detail["DiscountAccountRef"] = {"value": discount_account_id}
    return {
        "DetailType": "DiscountLineDetail",
        "Amount": breakdown.discount,
        "Description": _discount_description(discount, items),
        "DiscountLineDetail": detail,
    }


def build_qbo_invoice(inv: CrmInvoice, ctx: InvoiceContext) -> dict[str, Any]:
    """The QBO Invoice create body for a CRM invoice (raises ``MappingError`` with a plain reason)."""
    company = ctx.company
    company.check_currency(inv.currency, "CRM invoice")
    result = build_sales_lines(
        inv.items,
        ctx.item_ids,
        inv.discount,
        inv.total,
        inv.currency,
        company,
        ctx.tax_mapping,
        ctx.discount_account_id,
        expected_tax=inv.tax_total,
        rounding_item_id=ctx.rounding_item_id,
    )
    body: dict[str, Any] = {"CustomerRef": {"value": ctx.customer_id}, "Line": result.lines}
    if inv.issue_date:
        body["TxnDate"] = inv.issue_date.isoformat()
    if inv.due_date:
        body["DueDate"] = inv.due_date.isoformat()
    if company.custom_txn_numbers and inv.number:
        if len(inv.number) > DOC_NUMBER_LIMIT:
            raise MappingError(
                f"The CRM invoice number {inv.number} is longer than the {DOC_NUMBER_LIMIT} characters "
                "QuickBooks allows for an invoice number."
            )
        body["DocNumber"] = inv.number
    if company.multicurrency:
        body["CurrencyRef"] = {"value": inv.currency}
    if inv.contact.email:
        body["BillEmail"] = {"Address": inv.contact.email.strip()}
    body["PrivateNote"] = private_note("invoice", inv.id, inv.number)
    if result.global_tax_calculation:
        body["GlobalTaxCalculation"] = result.global_tax_calculation
    if company.is_us or result.global_tax_calculation != "NotApplicable":
        body["TxnTaxDetail"] = {"TotalTax": result.total_tax}
    if result.has_discount:
        body["ApplyTaxAfterDiscount"] = True
    return body


def expected_totals(inv: CrmInvoice) -> tuple[Decimal, Decimal]:
    """(TotalAmt, Balance) the QBO invoice must show once in step; a voided invoice shows zeros."""
    if inv.status in {"void", "delete", "deleted"}:
        zero = round_money(Decimal(0), inv.currency)
        return zero, zero
    return round_money(inv.total, inv.currency), round_money(inv.amount_due, inv.currency)


# ----- updates ---------------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    return parse_amount(value, None, lenient=True)


def _ref(value: Any) -> str | None:
    if isinstance(value, Mapping):
        inner = value.get("value")
        return None if inner is None else str(inner)
    return None


def _line_key(line: Mapping[str, Any]) -> tuple[Any, ...] | None:
    kind = line.get("DetailType")
    if kind == "SalesItemLineDetail":
        detail = line.get("SalesItemLineDetail") or {}
        return (
            kind,
            _dec(line.get("Amount")),
            (line.get("Description") or "").strip(),
            _ref(detail.get("ItemRef")),
            _dec(detail.get("Qty")),
            _dec(detail.get("UnitPrice")),
            _ref(detail.get("TaxCodeRef")),
        )
    if kind == "DiscountLineDetail":
        detail = line.get("DiscountLineDetail") or {}
        percent = bool(detail.get("PercentBased", False))
        return (
            kind,
            _dec(line.get("Amount")),
            percent,
            _dec(detail.get("DiscountPercent")) if percent else None,
            _ref(detail.get("DiscountAccountRef")),
        )
    return None  # SubTotalLineDetail and other lines QBO adds are not ours


def _lines_key(lines: Any) -> list[tuple[Any, ...]]:
    if not isinstance(lines, list):
        return []
    return [key for key in (_line_key(line) for line in lines if isinstance(line, Mapping)) if key]


def _lines_match(existing: Any, desired: Any) -> bool:
    """Same lines, where a value the desired line leaves out (None) is QBO's to fill (e.g. the default
    DiscountAccountRef QBO adds to a discount line) and is not compared."""
    theirs, ours = _lines_key(existing), _lines_key(desired)
    if len(theirs) != len(ours):
        return False
    for their_key, our_key in zip(theirs, ours, strict=True):
        if len(their_key) != len(our_key):
            return False
        if any(mine is not None and mine != other for mine, other in zip(our_key, their_key, strict=True)):
            return False
    return True


def _with_existing_ids(desired: list[dict[str, Any]], existing: Any) -> list[dict[str, Any]]:
    """Reuse the Ids of the existing sales lines, position by position, so QBO edits lines in place."""
    existing_ids = [
        str(line["Id"])
        for line in (existing if isinstance(existing, list) else [])
        if isinstance(line, Mapping) and line.get("DetailType") == "SalesItemLineDetail" and line.get("Id")
    ]
    result: list[dict[str, Any]] = []
    position = 0
    for line in desired:
        copy = dict(line)
        if line.get("DetailType") == "SalesItemLineDetail" and position < len(existing_ids):
            copy = {"Id": existing_ids[position], **copy}
            position += 1
        result.append(copy)
    return result


def build_sparse_invoice_update(existing: QboInvoice, desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A sparse update turning the QBO invoice ``existing`` into ``desired`` for the fields we own.

    None when nothing we own differs. Fields we do not own are never sent, so QBO-side edits to them
    survive. A changed line set is sent whole with the tax, as QBO replaces lines as a set. The update
    carries ``existing``'s SyncToken.
    """
    changes: dict[str, Any] = {}
    lines_changed = not _lines_match(list(existing.lines), desired.get("Line"))
    if lines_changed:
        changes["Line"] = _with_existing_ids(list(desired.get("Line") or []), list(existing.lines))

    desired_tax = _dec((desired.get("TxnTaxDetail") or {}).get("TotalTax"))
    if desired_tax is not None and (lines_changed or desired_tax != existing.total_tax):
        changes["TxnTaxDetail"] = {"TotalTax": desired_tax}

    theirs = {"CustomerRef": existing.customer_id, "CurrencyRef": existing.currency}
    for key, their_ref in theirs.items():
        if key in desired and _ref(desired[key]) != their_ref:
            changes[key] = desired[key]
    their_fields = {
        "TxnDate": existing.txn_date,
        "DueDate": existing.due_date,
        "DocNumber": existing.doc_number,
        "GlobalTaxCalculation": existing.global_tax_calculation,
    }
    for key, their_value in their_fields.items():
        if key in desired and desired[key] != their_value:
            changes[key] = desired[key]
    if desired.get("ApplyTaxAfterDiscount") and not existing.apply_tax_after_discount:
        changes["ApplyTaxAfterDiscount"] = True
    desired_email = ((desired.get("BillEmail") or {}).get("Address") or "").strip().lower()
    existing_email = (existing.bill_email or "").lower()
    if desired_email and desired_email != existing_email:
        changes["BillEmail"] = desired["BillEmail"]
    note = desired.get("PrivateNote")
    existing_note = existing.private_note or ""
    if note and note not in existing_note:
        # keep whatever the accountant wrote; add our marker after it
        changes["PrivateNote"] = f"{existing_note}\n{note}"[-PRIVATE_NOTE_LIMIT:] if existing_note else note

    if not changes:
        return None
    return {"Id": existing.id, "SyncToken": existing.sync_token, "sparse": True, **changes}

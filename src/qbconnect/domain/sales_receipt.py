"""CRM payments outside invoices → QBO SalesReceipts; CRM refunds → QBO RefundReceipts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from qbconnect.domain.company import CompanyFacts, TaxMapping, describe_taxes
from qbconnect.domain.crm_models import CrmDiscount, CrmLine, CrmOrder, CrmTax, CrmTransaction
from qbconnect.domain.errors import MappingError
from qbconnect.domain.invoice import SalesLinesResult, build_sales_lines
from qbconnect.domain.money import round_money
from qbconnect.domain.sources import classify

PAYMENT_REF_LIMIT = 21
SHIPPING_ITEM_ID = "SHIPPING_ITEM_ID"  # QBO's pseudo item for shipping when no shipping item is chosen

_CARD_BRANDS = {
    "visa": "Visa",
    "mastercard": "MasterCard",
    "master_card": "MasterCard",
    "amex": "American Express",
    "american_express": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "diners_club": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
}
_METHOD_NAMES = {
    "card": "Credit Card",
    "cash": "Cash",
    "cheque": "Check",
    "check": "Check",
    "bank_transfer": "Bank Transfer",
    "us_bank_account": "Bank Transfer",
    "ach": "Bank Transfer",
    "sepa_debit": "Bank Transfer",
}


def payment_method_draft(txn: CrmTransaction) -> dict[str, str]:
    """The QBO PaymentMethod (``Name``, ``Type``) for a transaction: its card brand, else its mode."""
    if txn.card_brand:
        key = txn.card_brand.strip().lower().replace(" ", "_")
        return {"Name": _CARD_BRANDS.get(key, txn.card_brand.strip().title()), "Type": "CREDIT_CARD"}
    mode = (txn.payment_method_type or "").strip().lower()
    name = _METHOD_NAMES.get(mode, mode.replace("_", " ").title() if mode else "Other")
    return {"Name": name, "Type": "CREDIT_CARD" if mode == "card" else "NON_CREDIT_CARD"}


@dataclass(frozen=True)
class ReceiptContext:
    """Resolved by the caller: QBO customer, one item per order line, accounts and methods from settings."""

    customer_id: str
    company: CompanyFacts
    item_ids: Sequence[str] = ()  # one per order item, same order
    fallback_item_id: str | None = None  # for a charge without usable order lines (e.g. a renewal)
    tax_mapping: TaxMapping = field(default_factory=TaxMapping)
    shipping_item_id: str | None = None
    payment_method_id: str | None = None
    deposit_account_id: str | None = None  # None: QBO uses Undeposited Funds
    refund_account_id: str | None = None  # the account refunds are paid from (RefundReceipt needs one)
    discount_account_id: str | None = None
    rounding_item_id: str | None = None  # non-US: the "Rounding" item (see ``domain/invoice.py``)


def _reference(txn: CrmTransaction) -> str:
    return txn.charge_reference[:PAYMENT_REF_LIMIT]


def _note(kind: str, txn: CrmTransaction, order: CrmOrder | None) -> str:
    parts = [f"Topline OS {kind} (CRM transaction {txn.id}"]
    if txn.charge_id:
        parts.append(f"charge {txn.charge_id}")
    if order is not None and order.id:
        parts.append(f"order {order.id}")
    if txn.subscription_id:
        parts.append(f"subscription {txn.subscription_id}")
    return "; ".join(parts) + ")"


def _single_line(item_id: str | None, amount: Decimal, description: str, company: CompanyFacts) -> dict[str, Any]:
    if not item_id:
        raise MappingError("No QuickBooks item is chosen for CRM payments without order lines. Choose one.")
    detail: dict[str, Any] = {"ItemRef": {"value": item_id}, "Qty": Decimal(1), "UnitPrice": amount}
    if company.is_us:
        detail["TaxCodeRef"] = {"value": "NON"}
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": amount,
        "Description": description[:4000],
        "SalesItemLineDetail": detail,
    }


def _payment_fields(txn: CrmTransaction, ctx: ReceiptContext, body: dict[str, Any], account: str | None) -> None:
    if txn.charged_at:
        body["TxnDate"] = txn.charged_at.date().isoformat()
    if ctx.payment_method_id:
        body["PaymentMethodRef"] = {"value": ctx.payment_method_id}
    if account:
        body["DepositToAccountRef"] = {"value": account}
    body["PaymentRefNum"] = _reference(txn)
    if ctx.company.multicurrency:
        body["CurrencyRef"] = {"value": txn.currency}


def _order_lines(order: CrmOrder, ctx: ReceiptContext) -> tuple[list[CrmLine], list[str]]:
    items = list(order.items)
    ids = list(ctx.item_ids)
    if order.shipping > 0:
        items.append(
            CrmLine(
                name="Shipping",
                description=None,
                product_id=None,
                price_id=None,
                qty=Decimal(1),
                unit_price=order.shipping,
            )
        )
        ids.append(ctx.shipping_item_id or SHIPPING_ITEM_ID)
    return items, ids


@dataclass(frozen=True)
class ReceiptDraft:
    """A SalesReceipt body and, when the order's tax could not be booked on its lines, why (for the sync log)."""

    body: dict[str, Any]
    tax_note: str | None = None


def order_tax(order: CrmOrder, company: CompanyFacts) -> CrmTax | None:
    """Non-US: the order's one tax rate (HighLevel states tax per order, in ``taxSummary``), to book on its
    lines; None when the company is US, the order has no tax or several rates, or its items carry taxes."""
    if company.is_us or order.tax <= 0 or any(line.taxes for line in order.items):
        return None
    rates = {(line.rate, line.calculation.strip().lower()) for line in order.tax_lines}
    if len(rates) != 1:
        return None
    first = order.tax_lines[0]
    return CrmTax(id=first.id, name=first.name, rate=first.rate, calculation=first.calculation)


def _vat_lines(
    txn: CrmTransaction, order: CrmOrder, ctx: ReceiptContext, tax: CrmTax, amount: Decimal
) -> tuple[SalesLinesResult | None, str | None]:
    """The order's lines booked with the tax code of its one rate, or (None, why not).

    Every item carries the tax; shipping is tried untaxed (exempt code) first, then taxed, and the first
    whose total matches the charge as QuickBooks computes it wins."""
    try:
        ctx.tax_mapping.code_for([tax])
    except MappingError as error:
        return None, f"{error.message} Until then, such payments are booked as one untaxed line."
    inclusive = tax.calculation.strip().lower() == "inclusive"
    taxed_items = [replace(line, taxes=(tax,), tax_inclusive=inclusive) for line in order.items]
    items, ids = _order_lines(order, ctx)
    variants = [taxed_items + items[len(order.items) :]]
    if order.shipping > 0:
        variants.append(taxed_items + [replace(line, taxes=(tax,), tax_inclusive=inclusive) for line in items[-1:]])
    discount = CrmDiscount(type="fixed", value=order.discount) if order.discount > 0 else None
    errors: list[MappingError] = []
    for lines in variants:
        try:
            result = build_sales_lines(
                lines,
                ids,
                discount,
                amount,
                txn.currency,
                ctx.company,
                ctx.tax_mapping,
                ctx.discount_account_id,
                what="CRM payment",
                expected_tax=order.tax,
                rounding_item_id=ctx.rounding_item_id,
            )
        except MappingError as error:
            errors.append(error)
            continue
        return result, None
    reason = next((e for e in errors if "does not match its lines" not in e.message), errors[0]).message
    reason = reason.removesuffix(" Nothing was written to QuickBooks.")
    return None, (
        f"The CRM tax {describe_taxes([tax])} could not be booked on the order's lines: {reason} "
        "The payment was booked as one untaxed line."
    )


def build_sales_receipt(txn: CrmTransaction, order: CrmOrder | None, ctx: ReceiptContext) -> dict[str, Any]:
    """The QBO SalesReceipt for one CRM transaction; TotalAmt equals the amount charged (see
    :func:`draft_sales_receipt`)."""
    return draft_sales_receipt(txn, order, ctx).body


def draft_sales_receipt(txn: CrmTransaction, order: CrmOrder | None, ctx: ReceiptContext) -> ReceiptDraft:
    """The QBO SalesReceipt for one CRM transaction; TotalAmt equals the amount charged.

    Lines come from the order (items, discount, shipping, tax). Non-US companies: an order with one tax
    rate mapped in ``tax_code_map`` has its lines booked with that code, so QuickBooks computes the VAT
    (a rounding line keeps the total exact); an unmapped tax, or several rates, leave the lines untaxed.
    When the order's lines do not add up to this charge (a renewal, a partial charge, no order, a tax the
    lines cannot carry), one line for the charge is booked instead, on ``ctx.fallback_item_id``.
    """
    company = ctx.company
    company.check_currency(txn.currency, "CRM payment")
    amount = round_money(txn.amount, txn.currency)
    if amount <= 0:
        raise MappingError(f"The CRM payment {txn.id} has no amount to book.")
    kind = classify(txn.source_type, txn.source_sub_type, txn.subscription_id)
    body: dict[str, Any] = {"CustomerRef": {"value": ctx.customer_id}}

    result = None
    tax_note = None
    if order is not None and order.items and len(ctx.item_ids) == len(order.items):
        tax = order_tax(order, company)
        if tax is not None and round_money(order.amount, txn.currency) == amount:
            result, tax_note = _vat_lines(txn, order, ctx, tax, amount)
        if result is None:
            items, ids = _order_lines(order, ctx)
            discount = None
            if order.discount > 0:
                discount = CrmDiscount(type="fixed", value=order.discount)
            try:
                result = build_sales_lines(
                    items,
                    ids,
                    discount,
                    amount,
                    txn.currency,
                    company,
                    ctx.tax_mapping,
                    ctx.discount_account_id,
                    what="CRM payment",
                    expected_tax=order.tax,
                    rounding_item_id=ctx.rounding_item_id,
                )
            except MappingError as error:
                if "does not match its lines" not in error.message:
                    raise
                result = None  # the charge is not this order's total (e.g. a renewal): book it as one line
    if result is None:
        source = txn.source.name or kind.value.replace("_", " ")
        body["Line"] = [_single_line(ctx.fallback_item_id, amount, f"Payment: {source}", company)]
        if company.is_us:
            body["TxnTaxDetail"] = {"TotalTax": round_money(Decimal(0), txn.currency)}
        else:
            body["GlobalTaxCalculation"] = "NotApplicable"
    else:
        body["Line"] = result.lines
        if result.global_tax_calculation:
            body["GlobalTaxCalculation"] = result.global_tax_calculation
        if company.is_us or result.global_tax_calculation != "NotApplicable":
            body["TxnTaxDetail"] = {"TotalTax": result.total_tax}
        if result.has_discount:
            body["ApplyTaxAfterDiscount"] = True
    _payment_fields(txn, ctx, body, ctx.deposit_account_id)
    body["PrivateNote"] = _note(f"{kind.value.replace('_', ' ')} payment", txn, order)
    return ReceiptDraft(body, tax_note)


def refund_needed(crm_amount_refunded: Decimal, booked_refunds: Decimal, currency: str = "USD") -> Decimal:
    """The refund amount not yet booked in QBO (never below 0)."""
    difference = round_money(crm_amount_refunded, currency) - round_money(booked_refunds, currency)
    return difference if difference > 0 else round_money(Decimal(0), currency)


def build_refund_receipt(txn: CrmTransaction, refund_amount: Decimal, ctx: ReceiptContext) -> dict[str, Any]:
    """A QBO RefundReceipt for ``refund_amount`` newly refunded on ``txn`` (one line, no tax)."""
    company = ctx.company
    company.check_currency(txn.currency, "CRM refund")
    amount = round_money(refund_amount, txn.currency)
    if amount <= 0:
        raise ValueError("a refund amount must be positive")
    account = ctx.refund_account_id or ctx.deposit_account_id
    if not account:
        raise MappingError("Choose the QuickBooks account refunds are paid from in the settings.")
    item_id = ctx.fallback_item_id or (ctx.item_ids[0] if ctx.item_ids else None)
    body: dict[str, Any] = {
        "CustomerRef": {"value": ctx.customer_id},
        "Line": [_single_line(item_id, amount, f"Refund of CRM payment {txn.charge_reference}", company)],
    }
    if company.is_us:
        body["TxnTaxDetail"] = {"TotalTax": round_money(Decimal(0), txn.currency)}
    else:
        body["GlobalTaxCalculation"] = "NotApplicable"
    _payment_fields(txn, ctx, body, account)
    if txn.updated_at:
        body["TxnDate"] = txn.updated_at.date().isoformat()
    body["PrivateNote"] = _note("refund", txn, None)
    return body

"""Which CRM transactions become sales receipts now, and how the sync log names them (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from qbconnect.domain.company import TaxMapping
from qbconnect.domain.crm_models import CrmLine, CrmOrder, CrmTransaction
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.money import round_money
from qbconnect.domain.sources import ReceiptKind

INVOICE_SOURCE = "paid through an invoice; booked by the invoice sync"
SALES_RECEIPTS_OFF = "sales receipts are turned off in the settings"
TEST_MODE = "a test-mode payment (liveMode false); test payments are not booked (see the settings)"
NOTHING_CHARGED = "nothing was charged"

# Charges that took money: booked (a refunded charge was still taken; its refund is booked after it).
BOOKABLE_STATUSES = frozenset({"succeeded", "success", "paid", "refunded", "partially_refunded"})
# Charges that never took money and never will.
FAILED_STATUSES = frozenset({"failed", "canceled", "cancelled", "void", "voided", "expired"})

KIND_LABELS: dict[ReceiptKind, str] = {
    ReceiptKind.ORDER_FORM: "Order form",
    ReceiptKind.SUBSCRIPTION: "Subscription",
    ReceiptKind.MEMBERSHIP: "Membership",
    ReceiptKind.CALENDAR: "Calendar booking",
    ReceiptKind.PAYMENT_LINK: "Payment link",
    ReceiptKind.FORM: "Form",
    ReceiptKind.SURVEY: "Survey",
    ReceiptKind.POINT_OF_SALE: "Point of sale",
    ReceiptKind.OTHER_NON_INVOICE: "Other",
    ReceiptKind.INVOICE: "Invoice",
}


@dataclass(frozen=True)
class Skip:
    """Why a transaction is not booked. ``final``: a later look at the same transaction cannot change it."""

    reason: str
    final: bool = True


def skip_for(txn: CrmTransaction, kind: ReceiptKind, settings: LocationSettings) -> Skip | None:
    """The reason not to book ``txn`` as a sales receipt, or None to book it.

    Checked in order: invoice sources (never receipts), the master switch, the kind's switch, test mode,
    the charge's status, a zero amount.
    """
    if not kind.is_receipt:
        return Skip(INVOICE_SOURCE)
    if not settings.sync_sales_receipts:
        return Skip(SALES_RECEIPTS_OFF)
    if not settings.receipt_kind_enabled(kind):
        return Skip(f"sales receipts for {KIND_LABELS[kind].lower()} payments are turned off in the settings")
    if not txn.live_mode and settings.skip_test_mode_payments:
        return Skip(TEST_MODE)
    status = (txn.status or "").strip().lower()
    if status in FAILED_STATUSES:
        return Skip(f"the charge {status}; no money was taken")
    if status not in BOOKABLE_STATUSES:
        shown = status or "without a status"
        return Skip(f"the charge is {shown}; it is booked once it succeeds", final=False)
    if round_money(txn.amount, txn.currency) <= 0:
        return Skip(NOTHING_CHARGED)
    return None


def describe(txn: CrmTransaction, kind: ReceiptKind) -> str:
    """How the sync log names a payment: ``Order form payment ch_123 (150.10 USD)``."""
    amount = round_money(txn.amount, txn.currency)
    return f"{KIND_LABELS[kind]} payment {txn.charge_reference} ({amount} {txn.currency})"


def fallback_line(txn: CrmTransaction, kind: ReceiptKind, order: CrmOrder | None) -> CrmLine:
    """The line a charge is booked on when the order's lines do not explain it (a renewal, no order).

    A one-product order (a subscription's usual shape) keeps its product, so a renewal is booked on the
    same item as the first payment; otherwise an item named for the kind (``Subscription``…).
    """
    if order is not None and len(order.items) == 1:
        line = order.items[0]
        return CrmLine(
            name=line.name,
            description=None,
            product_id=line.product_id,
            price_id=line.price_id,
            qty=Decimal(1),
            unit_price=round_money(txn.amount, txn.currency),
        )
    return CrmLine(
        name=KIND_LABELS[kind],
        description=None,
        product_id=None,
        price_id=None,
        qty=Decimal(1),
        unit_price=round_money(txn.amount, txn.currency),
    )


def order_explains(txn: CrmTransaction, order: CrmOrder | None) -> bool:
    """True when the charge is the whole order, so the order's lines can be booked as they are."""
    if order is None or not order.items:
        return False
    return round_money(order.amount, txn.currency) == round_money(txn.amount, txn.currency)


def shipping_line() -> CrmLine:
    return CrmLine(
        name="Shipping", description=None, product_id=None, price_id=None, qty=Decimal(1), unit_price=Decimal(0)
    )


def tax_mapping(settings: LocationSettings) -> TaxMapping:
    """CRM tax → QBO TaxCode from the settings; the ``exempt`` key names the code for untaxed lines."""
    codes = dict(settings.tax_code_map)
    return TaxMapping(codes=codes, exempt_code=codes.get("exempt"))


def payment_method_key_candidates(txn: CrmTransaction) -> list[str]:
    """Keys looked up in ``payment_method_map``: the card brand, then the payment mode (lower case)."""
    keys = []
    if txn.card_brand:
        keys.append(txn.card_brand.strip().lower())
    if txn.payment_method_type:
        keys.append(txn.payment_method_type.strip().lower())
    return keys

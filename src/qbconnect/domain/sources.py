"""Which CRM payments become QBO sales receipts: ONE table from (source type, sub type) to a kind.

HighLevel's ``OrderSource`` enums (payments.json): type ∈ funnel, website, invoice, calendar, text2Pay,
document_contracts, membership, mobile_app, communities, point_of_sale, manual, form, survey,
payment_link, external; subType ∈ one_step_order_form, two_step_order_form, upsell, tap_to_pay,
card_payment, store, contact_view, email_campaign, payments_dashboard, shopify, subscription_view,
store_upsell, woocommerce, service, meeting, imported_csv, qr_code, saas_one_time, saas_subscription.

Payments whose source is an invoice (or text-to-pay, which creates an invoice) are never receipts:
the invoice sync books them as invoice payments.
"""

from __future__ import annotations

from enum import StrEnum


class ReceiptKind(StrEnum):
    ORDER_FORM = "order_form"
    SUBSCRIPTION = "subscription"
    MEMBERSHIP = "membership"
    CALENDAR = "calendar"
    PAYMENT_LINK = "payment_link"
    FORM = "form"
    SURVEY = "survey"
    POINT_OF_SALE = "point_of_sale"
    OTHER_NON_INVOICE = "other_non_invoice"
    INVOICE = "invoice"  # never a receipt

    @property
    def is_receipt(self) -> bool:
        return self is not ReceiptKind.INVOICE


ANY = "*"

# (source type, sub type) -> kind. Lookup order: exact pair, (type, ANY), (ANY, sub type), else other.
# Keys are lower-case.
SOURCE_TABLE: dict[tuple[str, str], ReceiptKind] = {
    # invoices and text-to-pay (which creates an invoice): never receipts, whatever the sub type
    ("invoice", ANY): ReceiptKind.INVOICE,
    ("text2pay", ANY): ReceiptKind.INVOICE,
    # order forms: funnels and websites (one/two-step order forms, upsells, store)
    ("funnel", ANY): ReceiptKind.ORDER_FORM,
    ("website", ANY): ReceiptKind.ORDER_FORM,
    (ANY, "one_step_order_form"): ReceiptKind.ORDER_FORM,
    (ANY, "two_step_order_form"): ReceiptKind.ORDER_FORM,
    (ANY, "upsell"): ReceiptKind.ORDER_FORM,
    (ANY, "store"): ReceiptKind.ORDER_FORM,
    (ANY, "store_upsell"): ReceiptKind.ORDER_FORM,
    # subscriptions (a transaction carrying a subscription id is caught before the table)
    (ANY, "saas_subscription"): ReceiptKind.SUBSCRIPTION,
    (ANY, "subscription_view"): ReceiptKind.SUBSCRIPTION,
    # membership checkouts
    ("membership", ANY): ReceiptKind.MEMBERSHIP,
    ("communities", ANY): ReceiptKind.MEMBERSHIP,
    # calendar bookings
    ("calendar", ANY): ReceiptKind.CALENDAR,
    (ANY, "service"): ReceiptKind.CALENDAR,
    (ANY, "meeting"): ReceiptKind.CALENDAR,
    # other non-invoice sources
    ("payment_link", ANY): ReceiptKind.PAYMENT_LINK,
    ("form", ANY): ReceiptKind.FORM,
    ("survey", ANY): ReceiptKind.SURVEY,
    ("point_of_sale", ANY): ReceiptKind.POINT_OF_SALE,
    (ANY, "tap_to_pay"): ReceiptKind.POINT_OF_SALE,
    ("mobile_app", ANY): ReceiptKind.OTHER_NON_INVOICE,
    ("manual", ANY): ReceiptKind.OTHER_NON_INVOICE,
    ("external", ANY): ReceiptKind.OTHER_NON_INVOICE,
    ("document_contracts", ANY): ReceiptKind.OTHER_NON_INVOICE,
}

_NEVER_SUBSCRIPTION = {ReceiptKind.INVOICE}


def _norm(value: str | None) -> str:
    return (value or "").strip().lower()


def classify(source_type: str | None, sub_type: str | None, subscription_id: str | None = None) -> ReceiptKind:
    """Kind of a CRM payment from its source type/sub type and subscription id.

    Invoice and text-to-pay sources are ``INVOICE`` even for recurring invoices; otherwise a payment
    with a subscription id (a first charge or any renewal) is a ``SUBSCRIPTION``.
    """
    kind_type, kind_sub = _norm(source_type), _norm(sub_type)
    by_type = SOURCE_TABLE.get((kind_type, ANY))
    if by_type in _NEVER_SUBSCRIPTION:
        return ReceiptKind.INVOICE
    if (subscription_id or "").strip():
        return ReceiptKind.SUBSCRIPTION
    exact = SOURCE_TABLE.get((kind_type, kind_sub))
    if exact is not None:
        return exact
    by_sub = SOURCE_TABLE.get((ANY, kind_sub)) if kind_sub else None
    if by_sub is ReceiptKind.SUBSCRIPTION:
        return by_sub
    if by_type is not None:
        return by_type
    if by_sub is not None:
        return by_sub
    return ReceiptKind.OTHER_NON_INVOICE

from __future__ import annotations

import pytest

from qbconnect.domain.sources import ReceiptKind, classify


@pytest.mark.parametrize(
    ("source_type", "sub_type", "subscription_id", "kind"),
    [
        ("funnel", "one_step_order_form", None, ReceiptKind.ORDER_FORM),
        ("funnel", "two_step_order_form", None, ReceiptKind.ORDER_FORM),
        ("website", "store", None, ReceiptKind.ORDER_FORM),
        ("website", "store_upsell", None, ReceiptKind.ORDER_FORM),
        ("funnel", "upsell", None, ReceiptKind.ORDER_FORM),
        ("funnel", "two_step_order_form", "sub_123", ReceiptKind.SUBSCRIPTION),
        ("funnel", "saas_subscription", None, ReceiptKind.SUBSCRIPTION),
        ("membership", None, None, ReceiptKind.MEMBERSHIP),
        ("communities", None, None, ReceiptKind.MEMBERSHIP),
        ("calendar", "service", None, ReceiptKind.CALENDAR),
        (None, "meeting", None, ReceiptKind.CALENDAR),
        ("payment_link", "qr_code", None, ReceiptKind.PAYMENT_LINK),
        ("form", None, None, ReceiptKind.FORM),
        ("survey", None, None, ReceiptKind.SURVEY),
        ("point_of_sale", "tap_to_pay", None, ReceiptKind.POINT_OF_SALE),
        ("mobile_app", "card_payment", None, ReceiptKind.OTHER_NON_INVOICE),
        ("manual", "payments_dashboard", None, ReceiptKind.OTHER_NON_INVOICE),
        ("external", "shopify", None, ReceiptKind.OTHER_NON_INVOICE),
        ("document_contracts", None, None, ReceiptKind.OTHER_NON_INVOICE),
        ("something_new", None, None, ReceiptKind.OTHER_NON_INVOICE),
        ("invoice", None, None, ReceiptKind.INVOICE),
        ("invoice", "subscription_view", "sub_1", ReceiptKind.INVOICE),
        ("text2Pay", None, None, ReceiptKind.INVOICE),
        ("TEXT2PAY", "card_payment", "sub_1", ReceiptKind.INVOICE),
    ],
)
def test_classify(
    source_type: str | None, sub_type: str | None, subscription_id: str | None, kind: ReceiptKind
) -> None:
    assert classify(source_type, sub_type, subscription_id) is kind


def test_invoice_is_never_a_receipt() -> None:
    assert not ReceiptKind.INVOICE.is_receipt
    assert all(kind.is_receipt for kind in ReceiptKind if kind is not ReceiptKind.INVOICE)

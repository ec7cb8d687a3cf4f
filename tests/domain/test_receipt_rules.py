"""Which CRM payments are booked as sales receipts, and what the link row says is still to do."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from qbconnect.db.link_model import Link
from qbconnect.domain.crm_models import CrmOrder, CrmTransaction
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.receipt_rules import (
    INVOICE_SOURCE,
    SALES_RECEIPTS_OFF,
    TEST_MODE,
    describe,
    fallback_line,
    order_explains,
    payment_method_key_candidates,
    skip_for,
    tax_mapping,
)
from qbconnect.domain.sources import ANY, SOURCE_TABLE, ReceiptKind, classify
from qbconnect.sync.links import receipts as links
from qbconnect.sync.receipts.booking import _refund_targets

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sales-receipts.md"


def _txn(**overrides: Any) -> CrmTransaction:
    data: dict[str, Any] = {
        "_id": "txn-1",
        "amount": 150.1,
        "amountRefunded": 0,
        "currency": "USD",
        "status": "succeeded",
        "liveMode": True,
        "entityType": "order",
        "entityId": "order-1",
        "entitySourceType": "funnel",
        "entitySourceSubType": "one_step_order_form",
        "chargeId": "ch_3OqLongStripeChargeIdentifier",
        "paymentMethod": {"card": {"brand": "visa", "last4": "4242"}},
        "createdAt": "2024-04-04T16:24:31.297Z",
    }
    data.update(overrides)
    return CrmTransaction.from_api(data)


def _order(items: list[dict[str, Any]], amount: float) -> CrmOrder:
    return CrmOrder.from_api({"_id": "order-1", "amount": amount, "items": items})


def _kind(txn: CrmTransaction) -> ReceiptKind:
    return classify(txn.source_type, txn.source_sub_type, txn.subscription_id)


# ---- skip_for -------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["invoice", "text2Pay"])
def test_invoice_sources_are_never_booked(source: str) -> None:
    txn = _txn(entitySourceType=source, entitySourceSubType=None, subscriptionId="sub_1")
    skip = skip_for(txn, _kind(txn), LocationSettings())
    assert skip is not None and skip.reason == INVOICE_SOURCE and skip.final


def test_a_live_successful_checkout_is_booked() -> None:
    txn = _txn()
    assert skip_for(txn, _kind(txn), LocationSettings()) is None


def test_sales_receipts_switched_off() -> None:
    txn = _txn()
    skip = skip_for(txn, _kind(txn), LocationSettings(sync_sales_receipts=False))
    assert skip is not None and skip.reason == SALES_RECEIPTS_OFF


def test_a_disabled_kind_is_skipped_and_the_others_are_not() -> None:
    settings = LocationSettings(receipt_kinds_disabled=[ReceiptKind.CALENDAR])
    calendar = _txn(entitySourceType="calendar", entitySourceSubType="service")
    skip = skip_for(calendar, _kind(calendar), settings)
    assert skip is not None and "calendar booking payments are turned off" in skip.reason
    assert skip_for(_txn(), ReceiptKind.ORDER_FORM, settings) is None


def test_test_mode_follows_the_setting() -> None:
    txn = _txn(liveMode=False)
    skip = skip_for(txn, _kind(txn), LocationSettings())
    assert skip is not None and skip.reason == TEST_MODE and skip.final
    assert skip_for(txn, _kind(txn), LocationSettings(skip_test_mode_payments=False)) is None


@pytest.mark.parametrize("status", ["failed", "canceled", "void"])
def test_failed_charges_are_skipped_for_good(status: str) -> None:
    txn = _txn(status=status)
    skip = skip_for(txn, _kind(txn), LocationSettings())
    assert skip is not None and skip.final and status in skip.reason


@pytest.mark.parametrize("status", ["pending", "processing", None])
def test_pending_charges_are_looked_at_again(status: str | None) -> None:
    txn = _txn(status=status)
    skip = skip_for(txn, _kind(txn), LocationSettings())
    assert skip is not None and not skip.final


@pytest.mark.parametrize("status", ["succeeded", "refunded", "partially_refunded"])
def test_charges_that_took_money_are_booked_even_when_refunded(status: str) -> None:
    txn = _txn(status=status, amountRefunded=150.1 if status == "refunded" else 10)
    assert skip_for(txn, _kind(txn), LocationSettings()) is None


def test_nothing_charged_is_skipped() -> None:
    txn = _txn(amount=0)
    skip = skip_for(txn, _kind(txn), LocationSettings())
    assert skip is not None and skip.reason == "nothing was charged"


# ---- naming, lines, settings ------------------------------------------------------------------------


def test_describe_names_kind_reference_and_amount() -> None:
    txn = _txn(entitySourceType="membership", entitySourceSubType=None)
    assert describe(txn, _kind(txn)) == "Membership payment ch_3OqLongStripeChargeIdentifier (150.10 USD)"


def test_fallback_line_keeps_the_product_of_a_one_item_order() -> None:
    order = _order([{"name": "Coaching", "qty": 1, "product": {"_id": "p1"}, "price": {"amount": 49}}], 49)
    txn = _txn(amount=52.5, subscriptionId="sub_1")
    line = fallback_line(txn, ReceiptKind.SUBSCRIPTION, order)
    assert (line.name, line.product_id, line.unit_price) == ("Coaching", "p1", Decimal("52.50"))


def test_fallback_line_is_named_for_the_kind_otherwise() -> None:
    two = _order([{"name": "A", "price": {"amount": 1}}, {"name": "B", "price": {"amount": 2}}], 3)
    assert fallback_line(_txn(amount=5), ReceiptKind.ORDER_FORM, two).name == "Order form"
    line = fallback_line(_txn(), ReceiptKind.SUBSCRIPTION, None)
    assert line.name == "Subscription" and line.product_id is None


def test_order_explains_only_a_whole_order_charge() -> None:
    order = _order([{"name": "A", "price": {"amount": 150.1}}], 150.1)
    assert order_explains(_txn(), order)
    assert not order_explains(_txn(amount=75), order)
    assert not order_explains(_txn(), None)
    assert not order_explains(_txn(), _order([], 150.1))


def test_tax_mapping_and_payment_method_keys_come_from_the_settings() -> None:
    mapping = tax_mapping(LocationSettings(tax_code_map={"VAT": "3", "exempt": "9"}))
    assert mapping.codes["VAT"] == "3" and mapping.exempt_code == "9"
    assert payment_method_key_candidates(_txn()) == ["visa", "card"]
    assert payment_method_key_candidates(_txn(paymentMethod=None)) == []


# ---- the link row ------------------------------------------------------------------------------------


def _link(qbo_id: str | None = None, **data: Any) -> links.ReceiptLink:
    return links.ReceiptLink.of(Link(location_id="loc", kind=links.KIND, crm_id="txn-1", qbo_id=qbo_id, data=data))


def test_look_reason_for_every_link_state() -> None:
    txn = _txn(amountRefunded=20)
    assert links.look_reason(None, txn, new=True) == "new payment"
    assert links.look_reason(None, txn, new=False) is None
    booked = links.ReceiptState.of(_link("7", state="booked", refunded="0"))
    assert links.look_reason(booked, txn, new=False) == "refund to book"
    in_step = links.ReceiptState.of(_link("7", state="booked", refunded="20.00"))
    assert links.look_reason(in_step, txn, new=True) is None
    final = links.ReceiptState.of(_link(state="skipped", final=True, txn_status="succeeded"))
    assert links.look_reason(final, _txn(status="refunded"), new=True) is None
    waiting = links.ReceiptState.of(_link(state="skipped", final=False, txn_status="pending"))
    assert links.look_reason(waiting, _txn(status="pending"), new=True) is None
    assert links.look_reason(waiting, _txn(status="succeeded"), new=False) == "payment status now succeeded"
    booking = links.ReceiptState.of(_link(state="booking"))
    assert links.look_reason(booking, txn, new=True) == "payment not booked yet"
    assert links.look_reason(booking, txn, new=False) is None


def test_request_ids_are_deterministic_and_one_per_refund() -> None:
    assert links.receipt_request_id("loc", "t1") == links.receipt_request_id("loc", "t1")
    assert links.receipt_request_id("loc", "t1") != links.receipt_request_id("loc", "t2")
    assert links.receipt_request_id("loc", "t1") != links.receipt_request_id("other", "t1")
    first = links.refund_request_id("loc", "t1", Decimal("30.00"))
    assert first == links.refund_request_id("loc", "t1", Decimal("30.00"))
    assert first != links.refund_request_id("loc", "t1", Decimal("50.00"))
    assert len(first) <= 50


def test_refund_targets_replay_an_interrupted_refund_first() -> None:
    link = _link("7", refunded="10.00", refund_pending={"cumulative": "30.00", "request_id": "x"})
    assert _refund_targets(link, _txn(amountRefunded=45)) == [Decimal("30.00"), Decimal("45.00")]
    assert _refund_targets(link, _txn(amountRefunded=30)) == [Decimal("30.00")]
    done = _link("7", refunded="45.00")
    assert _refund_targets(done, _txn(amountRefunded=45)) == []
    assert _refund_targets(_link("7"), _txn(amountRefunded=12.5)) == [Decimal("12.50")]


# ---- the docs ------------------------------------------------------------------------------------------


def test_docs_list_every_row_of_the_classification_table() -> None:
    text = DOCS.read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|", text, flags=re.MULTILINE))
    expected = {(t, s, kind.value) for (t, s), kind in SOURCE_TABLE.items()}
    assert rows == expected, "docs/sales-receipts.md's table must match domain.sources.SOURCE_TABLE"
    assert ANY == "*"

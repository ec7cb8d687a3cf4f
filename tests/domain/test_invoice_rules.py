"""The invoice sync's decisions: which invoices sync, exactness, link state, reconciliation comparisons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from qbconnect.domain.crm_models import CrmContactDetails, CrmInvoice
from qbconnect.domain.invoice import build_sparse_invoice_update
from qbconnect.domain.invoice_rules import (
    SKIP_BEFORE_CONNECTION,
    InvoiceLinkState,
    LinkedPayment,
    check_exact,
    contact_name,
    content_hash,
    expected,
    first_sighting_decision,
    is_newer,
    known_invoice,
    label,
    request_parts,
    skip_message,
)
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.qbo_models import QboInvoice, QboPayment
from qbconnect.errors import ErrorCategory, SyncError
from qbconnect.sync.invoices.handler import tax_mapping

CONNECTED = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def crm_invoice(**kw: Any) -> CrmInvoice:
    data: dict[str, Any] = {
        "_id": "inv-1",
        "status": "sent",
        "invoiceNumber": "19",
        "currency": "USD",
        "contactDetails": {"id": "c-1", "name": "Ann Lee", "email": "ann@example.com"},
        "invoiceItems": [{"name": "Repair", "qty": 1, "amount": 100}],
        "total": 100,
        "amountPaid": 0,
        "amountDue": 100,
        "createdAt": "2026-03-01T12:00:00.123Z",
        "updatedAt": "2026-03-01T12:00:00.123Z",
    }
    data.update(kw)
    return CrmInvoice.from_api(data)


def at(delta: timedelta) -> str:
    return (CONNECTED + delta).isoformat().replace("+00:00", "Z")


def test_created_after_connecting_is_synced_even_in_the_same_millisecond() -> None:
    assert first_sighting_decision(crm_invoice(), CONNECTED) is None  # .123Z vs .123456
    late = crm_invoice(createdAt=at(timedelta(days=1)), updatedAt=at(timedelta(days=1)), status="paid")
    assert first_sighting_decision(late, CONNECTED) is None


def test_draft_prepared_before_and_sent_after_connecting_is_synced() -> None:
    inv = crm_invoice(createdAt=at(-timedelta(days=3)), updatedAt=at(timedelta(minutes=1)))
    assert first_sighting_decision(inv, CONNECTED) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"updatedAt": at(-timedelta(days=1))},  # sent (and untouched) before connecting
        {"status": "partially_paid", "amountPaid": 10, "updatedAt": at(timedelta(hours=1))},  # paid after
        {"status": "paid", "amountPaid": 100, "updatedAt": at(timedelta(hours=1))},
        {"status": "void", "updatedAt": at(timedelta(hours=1))},
    ],
)
def test_existing_invoices_are_skipped(changes: dict[str, Any]) -> None:
    inv = crm_invoice(createdAt=at(-timedelta(days=3)), **changes)
    assert first_sighting_decision(inv, CONNECTED) == SKIP_BEFORE_CONNECTION
    assert "before QuickBooks was connected" in skip_message(SKIP_BEFORE_CONNECTION, label(inv, inv.id))


def test_voided_after_connecting_is_booked_then_voided() -> None:
    inv = crm_invoice(status="void", createdAt=at(timedelta(minutes=1)))
    assert first_sighting_decision(inv, CONNECTED) is None
    assert expected(inv) == (Decimal("0.00"), Decimal("0.00"))
    assert expected(None) == (Decimal("0.00"), Decimal("0.00"))


def test_exactness_failure_names_both_figures() -> None:
    exact = QboInvoice.from_api({"Id": "7", "TotalAmt": 100, "Balance": Decimal("60.00")})
    check_exact(exact, Decimal("100.00"), Decimal("60.00"), "X")
    off = QboInvoice.from_api({"Id": "7", "TotalAmt": 100, "Balance": 70})
    with pytest.raises(SyncError) as caught:
        check_exact(off, Decimal("100.00"), Decimal("50.00"), "Invoice #19")
    assert caught.value.category is ErrorCategory.PERMANENT
    assert caught.value.message == (
        "Invoice #19 does not match QuickBooks invoice 7: QuickBooks balance 70.00 but CRM amount due 50.00."
    )


def test_content_hash_follows_body_paid_and_status() -> None:
    body = {"Line": [{"Amount": Decimal("100.00")}]}
    base = content_hash(body, crm_invoice())
    assert base == content_hash(dict(body), crm_invoice())
    assert base != content_hash(body, crm_invoice(amountPaid=10, amountDue=90, status="partially_paid"))
    assert base != content_hash({"Line": [{"Amount": Decimal("100.01")}]}, crm_invoice())


def test_link_state_round_trip_keeps_exact_amounts() -> None:
    snapshot = {"Id": "5", "SyncToken": "2", "TotalAmt": Decimal("129.40"), "Balance": Decimal("79.40")}
    state = InvoiceLinkState(
        realm_id="r1",
        snapshot=snapshot,
        payments=[LinkedPayment(id="9", amount=Decimal("50.00"), paid_to_date="50.00", sync_token="0")],
        pending_payment={"request_id": "x", "body": "{}", "paid_to_date": "50.00"},
        crm_updated_at="2026-03-01T12:00:00+00:00",
    )
    data = state.dump()
    import json

    json.dumps(data)  # storable in a JSON column
    again = InvoiceLinkState.load(data)
    assert again.snapshot == snapshot and again.payments == state.payments
    assert again.pending_payment == state.pending_payment and again.realm_id == "r1"
    assert data["payments"] == [{"id": "9", "amount": "50.00", "paid_to_date": "50.00", "sync_token": "0"}]
    assert known_invoice(again) == QboInvoice.from_api(snapshot) and QboInvoice.from_api(snapshot).paid == 50
    assert InvoiceLinkState.load(None).snapshot is None


def test_is_newer() -> None:
    stamp = datetime(2026, 3, 1, tzinfo=UTC)
    assert is_newer(stamp, None)
    assert is_newer(stamp, (stamp - timedelta(seconds=1)).isoformat())
    assert not is_newer(stamp, stamp.isoformat())
    assert not is_newer(None, None)


def test_tax_mapping_takes_the_exempt_key_for_untaxed_lines() -> None:
    mapping = tax_mapping(LocationSettings(tax_code_map={"rate:20": "4", "exempt": "6"}))
    assert mapping.exempt_code == "6" and dict(mapping.codes) == {"rate:20": "4"}


def test_sparse_update_ignores_values_quickbooks_fills_in() -> None:
    """QBO adds its default DiscountAccountRef to a discount line we sent without one: not a change."""
    desired: dict[str, Any] = {
        "CustomerRef": {"value": "1"},
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal("100.00"),
                "Description": "Repair",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "5"},
                    "Qty": 1,
                    "UnitPrice": 100,
                    "TaxCodeRef": {"value": "NON"},
                },
            },
            {
                "DetailType": "DiscountLineDetail",
                "Amount": Decimal("10.00"),
                "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
            },
        ],
    }
    existing = {
        "Id": "3",
        "SyncToken": "1",
        "CustomerRef": {"value": "1"},
        "Line": [
            {"Id": "1", **desired["Line"][0]},
            {"DetailType": "SubTotalLineDetail", "Amount": 100},
            {
                "DetailType": "DiscountLineDetail",
                "Amount": 10,
                "DiscountLineDetail": {
                    "PercentBased": True,
                    "DiscountPercent": 10,
                    "DiscountAccountRef": {"value": "3"},
                },
            },
        ],
    }
    assert build_sparse_invoice_update(QboInvoice.from_api(existing), desired) is None
    desired["Line"][1]["DiscountLineDetail"]["DiscountAccountRef"] = {"value": "8"}
    update = build_sparse_invoice_update(QboInvoice.from_api(existing), desired)
    assert update is not None and "Line" in update


def _answer(**values: Any) -> dict[str, Any]:
    base = {"Id": "5", "SyncToken": "3", "TotalAmt": Decimal("129.40"), "Balance": Decimal("129.40")}
    return {**base, **values}


def _payment(payment_id: str, amount: str, invoice_id: str = "5") -> QboPayment:
    return QboPayment.from_api(
        {
            "Id": payment_id,
            "SyncToken": "0",
            "TotalAmt": Decimal(amount),
            "Line": [{"Amount": Decimal(amount), "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
        }
    )


def test_known_invoice_is_the_last_answer_moved_by_our_payments_and_voids() -> None:
    state = InvoiceLinkState()
    assert known_invoice(state) is None  # nothing kept: the caller reads once
    state.remember(_answer())
    state.payment_applied(_payment("9", "50.00"), "5")
    state.payment_applied(_payment("10", "29.40"), "5")
    known = known_invoice(state)
    assert known is not None and (known.balance, known.paid, known.sync_token) == (
        Decimal("50.00"),
        Decimal("79.40"),
        "5",
    )
    state.payment_voided(LinkedPayment(id="10", amount=Decimal("29.40"), paid_to_date="79.40"))
    known = known_invoice(state)
    assert known is not None and (known.balance, known.sync_token) == (Decimal("79.40"), "6")
    again = InvoiceLinkState.load(state.dump())  # stored and loaded: the same invoice
    assert known_invoice(again) == known
    state.remember(_answer(SyncToken="9", Balance=Decimal("0")))  # a new answer replaces the reckoning
    assert (state.applied_since, state.touches_since) == (0, 0)


def test_a_payment_the_answer_already_lists_or_for_another_invoice_moves_nothing() -> None:
    state = InvoiceLinkState()
    state.remember(_answer(Balance=Decimal("79.40"), LinkedTxn=[{"TxnId": "9", "TxnType": "Payment"}]))
    state.payment_applied(_payment("9", "50.00"), "5")  # replayed after a read that already shows it
    state.payment_applied(_payment("11", "10.00", invoice_id="6"), "5")
    known = known_invoice(state)
    assert known is not None and (known.balance, known.sync_token) == (Decimal("79.40"), "3")


def test_refused_requests_change_every_new_requestid_part() -> None:
    state = InvoiceLinkState()
    assert request_parts(state) == ()  # requestids of links without a refusal stay as they were
    state.refused = 2
    assert request_parts(state) == (2,) and InvoiceLinkState.load(state.dump()).refused == 2


def test_contact_name_for_the_sync_log() -> None:
    assert contact_name(CrmContactDetails(id="c1", name=" Kira Garcia ")) == "Kira Garcia"
    assert contact_name(CrmContactDetails(id="c1", first_name="Kira", last_name="Garcia")) == "Kira Garcia"
    assert contact_name(CrmContactDetails(id="c1", company_name="Acme")) == "Acme"
    assert contact_name(CrmContactDetails(id="c1", email="k@example.com")) == "k@example.com"
    assert contact_name(CrmContactDetails(id="c1")) is None

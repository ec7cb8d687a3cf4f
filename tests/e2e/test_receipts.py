"""Sales receipts end to end: CRM checkouts → webhooks/polling → QuickBooks SalesReceipts and RefundReceipts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.db.models import Activity, Location
from qbconnect.domain.location_settings import load
from qbconnect.qbo.client import QboClient
from qbconnect.sandbox.stack import Stack
from qbconnect.services import log_actions
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine import jobs, routing
from qbconnect.sync.receipts.discovery import STATE_KEY, enqueue_due_polls
from tests.support.qbo_xsd import validate_qbo_json
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@dataclass
class Writes:
    """Every body the service sent to QuickBooks' create endpoint, by entity."""

    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, entity: str) -> list[dict[str, Any]]:
        return [body for name, body in self.bodies if name == entity]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Writes]:
    record = Writes()
    original = QboClient.create

    def create(self: QboClient, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        record.bodies.append((entity, body))
        return original(self, entity, body, request_id=request_id)

    monkeypatch.setattr(QboClient, "create", create)
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)
    yield record
    for entity in ("SalesReceipt", "RefundReceipt"):
        for body in record.of(entity):
            assert validate_qbo_json(entity, body) == [], f"{entity} payload is not valid against Intuit's XSD"


def _contact(c: Connected, email: str = "ann@example.com") -> str:
    contacts = [x for x in c.stack.crm.contacts(c.location_id) if x.get("email") == email]
    if contacts:
        return str(contacts[0]["id"])
    created = c.stack.crm.create_contact(c.location_id, firstName="Ann", lastName="Lee", email=email)
    return str(created["id"])


def _order(c: Connected, source_type: str, sub_type: str | None = None, **options: Any) -> dict[str, Any]:
    options.setdefault("items", [{"name": "Course", "amount": 100}])
    return c.stack.crm.create_order(
        c.location_id,
        contact_id=_contact(c, options.pop("email", "ann@example.com")),
        source_type=source_type,
        source_sub_type=sub_type,
        **options,
    )


def _txn_of(c: Connected, order: dict[str, Any]) -> dict[str, Any]:
    found = [t for t in c.stack.crm.transactions.values() if t["entityId"] == order["_id"]]
    assert found, "the CRM sandbox made no transaction"
    return dict(sorted(found, key=lambda t: str(t["createdAt"]))[0])


def _sync(c: Connected, *, times: int = 1) -> None:
    c.stack.crm.flush_webhooks(times=times)
    c.stack.drain()


def _poll(c: Connected) -> None:
    with c.stack.runtime.sessions.begin() as session:
        jobs.enqueue(session, c.location_id, routing.TRANSACTION_POLL, "all", "test: poll now")
    c.stack.drain()


def _receipts(c: Connected) -> list[dict[str, Any]]:
    return c.stack.qbo.entities(c.realm_id, "SalesReceipt")


def _refunds(c: Connected) -> list[dict[str, Any]]:
    return c.stack.qbo.entities(c.realm_id, "RefundReceipt")


def _receipt_for(c: Connected, txn: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in _receipts(c) if txn["_id"] in str(r.get("PrivateNote", ""))]


def _activities(c: Connected, kind: str = routing.TRANSACTION) -> list[Activity]:
    with c.stack.runtime.sessions() as session:
        return list(session.execute(select(Activity).where(Activity.kind == kind).order_by(Activity.id)).scalars())


def _settings(c: Connected, **values: Any) -> None:
    with c.stack.runtime.sessions.begin() as session:
        location = session.get(Location, c.location_id)
        assert location is not None
        location.settings = {**(location.settings or {}), **values}
        load(location.settings)  # valid


SOURCES = [
    ("funnel", "one_step_order_form", "order form"),
    ("funnel", "two_step_order_form", "order form"),
    ("funnel", "upsell", "order form"),
    ("website", "store", "order form"),
    ("calendar", "service", "calendar payment"),
    ("membership", None, "membership payment"),
    ("payment_link", None, "payment link payment"),
    ("form", None, "form payment"),
    ("survey", None, "survey payment"),
    ("point_of_sale", "tap_to_pay", "point of sale payment"),
]


def test_every_source_kind_becomes_one_receipt(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    orders = [
        (_order(c, source, sub, items=[{"name": f"Item {n}", "amount": 10 + n}]), note)
        for n, (source, sub, note) in enumerate(SOURCES)
    ]
    _sync(c)
    customers = c.stack.qbo.entities(c.realm_id, "Customer")
    ann = [x for x in customers if (x.get("PrimaryEmailAddr") or {}).get("Address") == "ann@example.com"]
    assert len(ann) == 1, "one QuickBooks customer for the payer, found by email or created once"
    for n, (order, note) in enumerate(orders):
        txn = _txn_of(c, order)
        receipts = _receipt_for(c, txn)
        assert len(receipts) == 1, f"{SOURCES[n]}: expected one receipt"
        receipt = receipts[0]
        assert Decimal(str(receipt["TotalAmt"])) == Decimal(10 + n), SOURCES[n]
        assert receipt["CustomerRef"]["value"] == ann[0]["Id"]
        assert receipt["PaymentRefNum"] == txn["chargeId"][:21]
        assert receipt["PaymentMethodRef"]["name"] == "Visa"
        assert receipt["DepositToAccountRef"]["name"] == "Undeposited Funds"
        assert receipt["TxnDate"] == str(txn["fulfilledAt"])[:10]
        assert note in receipt["PrivateNote"].lower(), receipt["PrivateNote"]
        assert receipt["Line"][0]["Description"].startswith(f"Item {n}")
    assert len(_receipts(c)) == len(SOURCES)
    assert len(writes.of("SalesReceipt")) == len(SOURCES)
    done = [a for a in _activities(c) if a.status == "done"]
    assert len(done) == len(SOURCES)
    assert all("sales receipt" in (a.summary or "") and a.qbo_id for a in done)


def test_order_lines_discount_tax_and_shipping(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    order = _order(
        c,
        "website",
        "store",
        items=[{"name": "Shirt", "amount": 25, "qty": 2}, {"name": "Cap", "amount": 15}],
        discount=Decimal("5.00"),
        tax=Decimal("4.50"),
        shipping=Decimal("7.25"),
    )
    _sync(c)
    (receipt,) = _receipt_for(c, _txn_of(c, order))
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("71.75")  # 65 - 5 + 4.50 + 7.25
    kinds = [line["DetailType"] for line in receipt["Line"]]
    assert kinds.count("SalesItemLineDetail") == 3 and "DiscountLineDetail" in kinds
    assert Decimal(str(receipt["TxnTaxDetail"]["TotalTax"])) == Decimal("4.50")
    names = {i["Id"]: i["Name"] for i in c.stack.qbo.entities(c.realm_id, "Item")}
    lines = [ln for ln in receipt["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [names[ln["SalesItemLineDetail"]["ItemRef"]["value"]] for ln in lines] == ["Shirt", "Cap", "Shipping"]


def test_invoice_sources_are_never_receipts(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    crm = c.stack.crm
    _order(c, "text2Pay")
    _order(c, "invoice")
    invoice = crm.create_invoice(
        c.location_id, contact_id=_contact(c), items=[{"name": "Repair", "qty": 1, "amount": 120}]
    )
    crm.send_invoice(invoice["_id"])
    crm.record_invoice_payment(invoice["_id"], Decimal(120))
    _sync(c)
    _poll(c)
    assert _receipts(c) == [] and writes.of("SalesReceipt") == []
    skipped = [a for a in _activities(c) if a.status == "skipped"]
    assert len(skipped) == 3
    assert all("paid through an invoice; booked by the invoice sync" in (a.summary or "") for a in skipped)
    _poll(c)
    assert len(_activities(c)) == 3, "a skipped payment is not asked about again"


def test_subscription_first_payment_and_renewal_found_only_by_polling(
    connected: Connected,  # noqa: F811
    writes: Writes,
) -> None:
    c = connected
    order = _order(c, "funnel", "one_step_order_form", items=[{"name": "Coaching", "amount": 49}], subscription=True)
    _sync(c)
    first = _txn_of(c, order)
    assert len(_receipt_for(c, first)) == 1
    assert "subscription payment" in _receipt_for(c, first)[0]["PrivateNote"]

    (sub_id,) = [s["_id"] for s in c.stack.crm.subscriptions.values() if s["entityId"] == order["_id"]]
    c.stack.crm.advance_clock(31 * 86400)
    renewal = c.stack.crm.renew_subscription(sub_id)
    assert c.stack.crm.pending_webhooks() == 0  # HighLevel sends nothing for a renewal
    _sync(c)
    assert _receipt_for(c, renewal) == []
    _poll(c)
    (booked,) = _receipt_for(c, renewal)
    assert Decimal(str(booked["TotalAmt"])) == Decimal(49)
    assert booked["PaymentRefNum"] == renewal["chargeId"][:21]
    assert booked["TxnDate"] == str(renewal["fulfilledAt"])[:10]
    assert len(_receipts(c)) == 2
    _poll(c)
    assert len(_receipts(c)) == 2


def test_full_and_partial_refunds(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    crm = c.stack.crm
    partial = _txn_of(c, _order(c, "funnel", "two_step_order_form", items=[{"name": "Kit", "amount": 80}]))
    full = _txn_of(c, _order(c, "calendar", "meeting", items=[{"name": "Session", "amount": 60}]))
    _sync(c)
    assert len(_receipts(c)) == 2

    crm.refund_transaction(partial["_id"], Decimal("30.00"))  # no webhook: found by polling
    crm.refund_transaction(full["_id"], Decimal("60.00"))  # OrderStatusUpdate (payment status refunded)
    assert crm.pending_webhooks() == 1
    _sync(c)
    refunds = _refunds(c)
    assert [Decimal(str(r["TotalAmt"])) for r in refunds] == [Decimal(60)]
    _poll(c)
    refunds = _refunds(c)
    assert sorted(Decimal(str(r["TotalAmt"])) for r in refunds) == [Decimal(30), Decimal(60)]

    crm.refund_transaction(partial["_id"], Decimal("20.00"))  # a second partial refund: 20 more
    _poll(c)
    _poll(c)
    amounts = sorted(Decimal(str(r["TotalAmt"])) for r in _refunds(c))
    assert amounts == [Decimal(20), Decimal(30), Decimal(60)]
    for refund in _refunds(c):
        assert refund["DepositToAccountRef"]["name"] == "Undeposited Funds"
        assert refund["PaymentMethodRef"]["name"] == "Visa"
    with c.stack.runtime.sessions() as session:
        link = session.execute(
            select(Link).where(Link.kind == "sales_receipt", Link.crm_id == partial["_id"])
        ).scalar_one()
    assert link.data["refunded"] == "50.00" and len(link.data["refunds"]) == 2


def test_a_payment_refunded_before_it_was_synced_gets_both_receipts(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    txn = _txn_of(c, _order(c, "membership", items=[{"name": "Gold", "amount": 45}]))
    c.stack.crm.refund_transaction(txn["_id"], Decimal("45.00"))
    _sync(c)
    assert len(_receipt_for(c, txn)) == 1
    (refund,) = _refunds(c)
    assert Decimal(str(refund["TotalAmt"])) == Decimal(45)
    assert refund["PaymentRefNum"] == txn["chargeId"][:21]
    (row,) = [a for a in _activities(c) if a.entity_id == txn["_id"]]
    assert row.status == "done" and "refund of 45.00" in (row.summary or "")


def test_test_mode_and_disabled_kinds_are_skipped_and_logged(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    _settings(c, receipt_kinds_disabled=["calendar"])
    test_mode = _txn_of(c, _order(c, "funnel", "one_step_order_form", live_mode=False))
    calendar = _txn_of(c, _order(c, "calendar", "service"))
    live = _txn_of(c, _order(c, "membership"))
    _sync(c)
    assert len(_receipts(c)) == 1 and len(_receipt_for(c, live)) == 1
    by_txn = {a.entity_id: a for a in _activities(c)}
    assert by_txn[test_mode["_id"]].status == "skipped"
    assert "test-mode payment" in (by_txn[test_mode["_id"]].summary or "")
    assert by_txn[calendar["_id"]].status == "skipped"
    assert "calendar booking payments are turned off" in (by_txn[calendar["_id"]].summary or "")

    _settings(c, skip_test_mode_payments=False, receipt_kinds_disabled=[])
    with c.stack.runtime.sessions.begin() as session:
        jobs.enqueue(session, c.location_id, routing.TRANSACTION, test_mode["_id"], "test: retry")
    c.stack.drain()
    assert len(_receipt_for(c, test_mode)) == 1


def test_redelivery_and_polling_book_one_receipt(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    txn = _txn_of(c, _order(c, "website", "store"))
    events = c.stack.crm.pending_webhook_events()
    _sync(c, times=3)
    for event in events:  # HighLevel resending the same events later (same webhookId)
        c.stack.crm.emit(event["type"], {k: v for k, v in event.items() if k not in ("webhookId", "timestamp")})
    _sync(c, times=3)
    _poll(c)
    _poll(c)
    assert len(_receipt_for(c, txn)) == 1
    assert len(writes.of("SalesReceipt")) == 1


@pytest.mark.parametrize("lost", [1, 4], ids=["client-retry", "job-retry"])
def test_a_lost_quickbooks_answer_books_one_receipt(connected: Connected, writes: Writes, lost: int) -> None:  # noqa: F811
    """QuickBooks applies the create but the answer is lost: retries (by the client, or after the client
    gives up, by the job) replay the same requestid, so there is one receipt."""
    c = connected
    c.stack.qbo.inject_fault("lost_response", count=lost, entity="SalesReceipt", method="POST")
    txn = _txn_of(c, _order(c, "funnel", "upsell"))
    _sync(c)
    (receipt,) = _receipt_for(c, txn)
    posts = [r for r in c.stack.qbo.request_log if r.entity == "SalesReceipt" and r.method == "POST"]
    assert len(posts) == lost + 1 and len({r.request_id for r in posts}) == 1
    assert len(writes.of("SalesReceipt")) == (1 if lost == 1 else 2)
    with c.stack.runtime.sessions() as session:
        link = session.execute(select(Link).where(Link.kind == "sales_receipt", Link.crm_id == txn["_id"])).scalar_one()
    assert link.qbo_id == receipt["Id"]
    (row,) = [a for a in _activities(c) if a.entity_id == txn["_id"]]
    assert row.status == "done" and row.attempts == (1 if lost == 1 else 2)


def test_lost_webhooks_are_caught_by_the_scheduled_poll(connected: Connected, writes: Writes) -> None:  # noqa: F811
    c = connected
    txn = _txn_of(c, _order(c, "survey"))
    c.stack.crm.flush_webhooks(drop=True)
    with c.stack.runtime.sessions.begin() as session:
        assert enqueue_due_polls(session) == [c.location_id]
    with c.stack.runtime.sessions.begin() as session:
        assert enqueue_due_polls(session) == [], "the location's own interval has not passed"
    c.stack.drain()
    assert len(_receipt_for(c, txn)) == 1
    with c.stack.runtime.sessions() as session:
        location = session.get(Location, c.location_id)
        assert location is not None and location.state[STATE_KEY]["cursor"]


def test_a_uk_company_books_receipts_without_us_tax_codes(stack: Stack, writes: Writes) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Acme UK", country="GB")
    realm_id = stack.connect_quickbooks(location_id, name="Acme UK Ltd", country="GB", home_currency="USD")
    stack.drain()
    c = Connected(stack=stack, location_id=location_id, realm_id=realm_id)
    plain = _txn_of(c, _order(c, "website", "store", items=[{"name": "Mug", "amount": 12, "qty": 2}]))
    taxed = _txn_of(c, _order(c, "funnel", "upsell", items=[{"name": "Guide", "amount": 20}], tax=Decimal("4.00")))
    _sync(c)
    (first,) = _receipt_for(c, plain)
    assert first["GlobalTaxCalculation"] == "NotApplicable" and Decimal(str(first["TotalAmt"])) == Decimal(24)
    (second,) = _receipt_for(c, taxed)
    assert Decimal(str(second["TotalAmt"])) == Decimal(24), "the whole charge, to the cent"


def _vat_order(c: Connected, items: list[dict[str, Any]], vat: Decimal) -> dict[str, Any]:
    """A GB checkout with 20% VAT stated per order (HighLevel's ``taxSummary``), as its transaction."""
    order = _order(c, "website", "store", items=items, tax=vat)
    stored = c.stack.crm.orders[order["_id"]]
    stored["taxSummary"][0].update({"name": "VAT", "rate": Decimal(20)})
    return _txn_of(c, order)


def test_a_uk_order_with_one_mapped_vat_rate_books_its_lines_with_the_vat_code(stack: Stack, writes: Writes) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Acme UK", country="GB")
    realm_id = stack.connect_quickbooks(location_id, name="Acme UK Ltd", country="GB", home_currency="USD")
    stack.drain()
    c = Connected(stack=stack, location_id=location_id, realm_id=realm_id)
    codes = {x["Name"]: x["Id"] for x in stack.qbo.entities(realm_id, "TaxCode")}
    _settings(c, tax_code_map={"rate:20": codes["20.0% S"], "exempt": codes["Exempt"]})
    plain = _vat_order(c, [{"name": "Guide", "amount": 50}], Decimal("10.00"))
    # three 10.33 lines: the CRM's VAT is 3 x 2.07 = 6.21; QuickBooks' 30.99 x 20% = 6.20, so a rounding line
    rounded = _vat_order(c, [{"name": f"Widget {n}", "amount": "10.33"} for n in "ABC"], Decimal("6.21"))
    _sync(c)

    (receipt,) = _receipt_for(c, plain)
    assert receipt["GlobalTaxCalculation"] == "TaxExcluded"
    items = [ln for ln in receipt["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in items] == [codes["20.0% S"]]
    assert Decimal(str(receipt["TxnTaxDetail"]["TotalTax"])) == Decimal("10.00")
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("60.00") == Decimal(str(plain["amount"]))

    (receipt,) = _receipt_for(c, rounded)
    items = [ln for ln in receipt["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [ln["SalesItemLineDetail"]["TaxCodeRef"]["value"] for ln in items] == [codes["20.0% S"]] * 3 + [
        codes["Exempt"]
    ]
    assert Decimal(str(items[-1]["Amount"])) == Decimal("0.01")
    assert Decimal(str(receipt["TxnTaxDetail"]["TotalTax"])) == Decimal("6.20")
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("37.20"), "the whole charge, to the cent"
    assert all(row.status != "failed" for row in _activities(c))


def test_a_uk_order_with_an_unmapped_vat_rate_is_booked_untaxed_with_a_note(stack: Stack, writes: Writes) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Acme UK", country="GB")
    realm_id = stack.connect_quickbooks(location_id, name="Acme UK Ltd", country="GB", home_currency="USD")
    stack.drain()
    c = Connected(stack=stack, location_id=location_id, realm_id=realm_id)
    txn = _vat_order(c, [{"name": "Guide", "amount": 50}], Decimal("10.00"))
    _sync(c)
    (receipt,) = _receipt_for(c, txn)
    assert receipt["GlobalTaxCalculation"] == "NotApplicable" and Decimal(str(receipt["TotalAmt"])) == Decimal(60)
    [row] = [a for a in _activities(c) if a.status != "skipped"]
    assert '"VAT" (20%)' in (row.summary or "") and "untaxed" in (row.summary or "")


# ---- fix, then Retry (issue 14): a refused request is planned again under a new requestid ----------------


def _retry_failed(c: Connected, txn: dict[str, Any]) -> None:
    """Press Retry on the payment's failed sync-log row (the path of `qbconnect retry` and the API)."""
    (row,) = [a for a in _activities(c) if a.entity_id == txn["_id"] and a.status == "failed"]
    with c.stack.runtime.sessions.begin() as session:
        log_actions.retry_one(session, row.id)
    c.stack.drain()


def _visa(c: Connected) -> str:
    return str(next(m for m in c.stack.qbo.entities(c.realm_id, "PaymentMethod") if m["Name"] == "Visa")["Id"])


def _posts(c: Connected, entity: str) -> list[tuple[int, str | None]]:
    return [(r.status, r.request_id) for r in c.stack.qbo.request_log if r.method == "POST" and r.entity == entity]


def test_wrong_payment_method_mapping_fixed_then_retry_books_the_receipt_once(
    connected: Connected,  # noqa: F811
    writes: Writes,
) -> None:
    c = connected
    _settings(c, payment_method_map={"visa": "999"})
    txn = _txn_of(c, _order(c, "funnel", "one_step_order_form", items=[{"name": "Course", "amount": "885.00"}]))
    _sync(c)
    assert _receipts(c) == [] and [a.status for a in _activities(c) if a.entity_id == txn["_id"]] == ["failed"]

    _settings(c, payment_method_map={"visa": _visa(c)})
    _retry_failed(c, txn)

    (receipt,) = _receipt_for(c, txn)
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("885.00") and receipt["PaymentMethodRef"]["value"] == _visa(c)
    (refused, refused_rid), (booked, booked_rid) = _posts(c, "SalesReceipt")
    assert (refused, booked) == (400, 200) and refused_rid != booked_rid
    _poll(c)
    assert len(_receipts(c)) == 1


def test_wrong_payment_method_mapping_fixed_then_retry_books_the_refund_once(
    connected: Connected,  # noqa: F811
    writes: Writes,
) -> None:
    c = connected
    txn = _txn_of(c, _order(c, "funnel", "two_step_order_form", items=[{"name": "Kit", "amount": "187.99"}]))
    _sync(c)
    assert len(_receipt_for(c, txn)) == 1
    _settings(c, payment_method_map={"visa": "999"})  # typed by mistake after the sale was booked
    c.stack.crm.refund_transaction(txn["_id"], Decimal("87.99"))
    _poll(c)
    assert _refunds(c) == []

    _settings(c, payment_method_map={"visa": _visa(c)})
    _retry_failed(c, txn)

    (refund,) = _refunds(c)
    assert Decimal(str(refund["TotalAmt"])) == Decimal("87.99") and refund["PaymentMethodRef"]["value"] == _visa(c)
    (refused, refused_rid), (booked, booked_rid) = _posts(c, "RefundReceipt")
    assert (refused, booked) == (400, 200) and refused_rid != booked_rid
    _poll(c)
    assert len(_refunds(c)) == 1 and len(_receipts(c)) == 1
    with c.stack.runtime.sessions() as session:
        link = session.execute(select(Link).where(Link.kind == "sales_receipt", Link.crm_id == txn["_id"])).scalar_one()
    assert link.data["refunded"] == "87.99" and "refund_pending" not in link.data

"""Invoice statuses, orders/transactions/subscriptions with source types, renewals, refunds, messages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.sandbox import crm_fixtures
from tests.sandbox.crm_fixtures import LOCATION, V_CONVERSATIONS, Crm

contact_id = crm_fixtures.contact_id
crm = crm_fixtures.crm

ITEMS = [{"name": "Repair", "qty": 2, "amount": 50, "taxes": [{"_id": "t1", "name": "Tax", "rate": 10}]}]


def _types(crm: Crm) -> list[str]:
    return [w["type"] for w in crm.sandbox.emitted_webhooks]


def test_invoice_lifecycle_statuses_and_webhooks(crm: Crm, contact_id: str) -> None:
    invoice = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=ITEMS)
    assert invoice["status"] == "draft" and invoice["total"] == Decimal("110.00")
    assert crm.sandbox.send_invoice(invoice["_id"])["status"] == "sent"
    updated = crm.sandbox.update_invoice(invoice["_id"], discount={"type": "fixed", "value": 10})
    assert updated["total"] == Decimal("99.00")
    part = crm.sandbox.record_invoice_payment(invoice["_id"], Decimal("40"))
    assert part["status"] == "partially_paid" and part["amountDue"] == Decimal("59.00")
    with pytest.raises(ValueError):
        crm.sandbox.record_invoice_payment(invoice["_id"], Decimal("60"))
    paid = crm.sandbox.record_invoice_payment(invoice["_id"], Decimal("59"))
    assert paid["status"] == "paid" and paid["amountDue"] == 0
    assert _types(crm)[-5:] == ["InvoiceCreate", "InvoiceSent", "InvoiceUpdate", "InvoicePartiallyPaid", "InvoicePaid"]
    txns = crm.get("/payments/transactions", altId=LOCATION, altType="location", entitySourceType="invoice").json()
    assert txns["totalCount"] == 2
    assert {t["entityId"] for t in txns["data"]} == {invoice["_id"]}


def test_void_and_delete(crm: Crm, contact_id: str) -> None:
    first = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=ITEMS)
    assert crm.sandbox.void_invoice(first["_id"])["status"] == "void"
    second = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=ITEMS)
    crm.sandbox.delete_invoice(second["_id"])
    assert _types(crm)[-2:] == ["InvoiceCreate", "InvoiceDelete"] and "InvoiceVoid" in _types(crm)
    assert crm.get(f"/invoices/{second['_id']}", altId=LOCATION, altType="location").status_code == 400


def test_invoice_list_filters(crm: Crm, contact_id: str) -> None:
    a = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=ITEMS, issue_date="2024-01-05")
    b = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=ITEMS, issue_date="2024-02-05")
    crm.sandbox.send_invoice(b["_id"])
    params = {"altId": LOCATION, "altType": "location", "limit": 10, "offset": 0}
    assert [i["_id"] for i in crm.get("/invoices/", **params, status="sent").json()["invoices"]] == [b["_id"]]
    window = crm.get("/invoices/", **params, startAt="2024-01-01", endAt="2024-01-31").json()
    assert [i["_id"] for i in window["invoices"]] == [a["_id"]]
    ascending = crm.get("/invoices/", **params, sortField="issueDate", sortOrder="ascend").json()
    assert [i["_id"] for i in ascending["invoices"]] == [a["_id"], b["_id"]]
    assert crm.get("/invoices/", altId=LOCATION, altType="location").status_code == 422  # limit/offset required


def test_order_source_types_and_subscription(crm: Crm, contact_id: str) -> None:
    order = crm.sandbox.create_order(
        LOCATION,
        contact_id=contact_id,
        source_type="calendar",
        source_sub_type="service",
        items=[{"name": "Visit", "amount": "80"}],
        tax=Decimal("6.40"),
        subscription=True,
    )
    assert order["status"] == "completed" and order["amount"] == Decimal("86.40")
    assert _types(crm)[-2:] == ["OrderCreate", "OrderStatusUpdate"]
    got = crm.get(f"/payments/orders/{order['_id']}", altId=LOCATION).json()
    assert got["source"]["type"] == "calendar" and got["source"]["subType"] == "service"
    txn = crm.get("/payments/transactions", altId=LOCATION, altType="location", entityId=order["_id"]).json()["data"][0]
    assert (txn["entitySourceType"], txn["entitySourceSubType"], txn["status"]) == ("calendar", "service", "succeeded")
    subs = crm.get("/payments/subscriptions", altId=LOCATION, altType="location").json()["data"]
    assert subs[0]["subscriptionId"] == txn["subscriptionId"] and subs[0]["entitySourceType"] == "calendar"
    with pytest.raises(ValueError):
        crm.sandbox.create_order(LOCATION, contact_id=contact_id, source_type="shop", source_sub_type=None, items=[])


def test_renewal_adds_a_transaction_without_webhook(crm: Crm, contact_id: str) -> None:
    crm.sandbox.create_order(
        LOCATION,
        contact_id=contact_id,
        source_type="funnel",
        source_sub_type="one_step_order_form",
        items=[{"name": "Plan", "amount": 30}],
        subscription=True,
    )
    sub_id = next(iter(crm.sandbox.subscriptions))
    provider_id = crm.sandbox.subscriptions[sub_id]["subscriptionId"]
    before = len(crm.sandbox.emitted_webhooks)
    renewal = crm.sandbox.renew_subscription(sub_id)
    assert len(crm.sandbox.emitted_webhooks) == before
    listed = crm.get("/payments/transactions", altId=LOCATION, altType="location", subscriptionId=provider_id).json()
    assert listed["totalCount"] == 2 and renewal["_id"] in {t["_id"] for t in listed["data"]}


def test_refunds_partial_then_full(crm: Crm, contact_id: str) -> None:
    order = crm.sandbox.create_order(
        LOCATION,
        contact_id=contact_id,
        source_type="website",
        source_sub_type="store",
        items=[{"name": "Tee", "amount": 20}],
    )
    txn_id = next(t["_id"] for t in crm.sandbox.transactions.values() if t["entityId"] == order["_id"])
    before = len(crm.sandbox.emitted_webhooks)
    partial = crm.sandbox.refund_transaction(txn_id, Decimal("5"))
    assert partial["amountRefunded"] == Decimal("5.00") and len(crm.sandbox.emitted_webhooks) == before
    full = crm.sandbox.refund_transaction(txn_id, Decimal("15"))
    assert full["status"] == "refunded"
    assert crm.sandbox.orders[order["_id"]]["paymentStatus"] == "refunded"
    assert _types(crm)[-1] == "OrderStatusUpdate"
    refunded = crm.get("/payments/orders", altId=LOCATION, paymentStatus="refunded").json()
    assert refunded["totalCount"] == 1
    with pytest.raises(ValueError):
        crm.sandbox.refund_transaction(txn_id, Decimal("1"))


def test_messages_respect_dnd(crm: Crm, contact_id: str) -> None:
    body = {"type": "SMS", "contactId": contact_id, "message": "Please review us"}
    sent = crm.client.post("/conversations/messages", json=body, headers=crm.headers(V_CONVERSATIONS))
    assert sent.status_code == 200 and sent.json()["messageId"]
    crm.sandbox.set_dnd(contact_id, "SMS")
    refused = crm.client.post("/conversations/messages", json=body, headers=crm.headers(V_CONVERSATIONS))
    assert refused.status_code == 400 and "DND" in refused.json()["message"]
    email = {"type": "Email", "contactId": contact_id, "html": "<p>Hi</p>", "subject": "Review"}
    assert (
        crm.client.post("/conversations/messages", json=email, headers=crm.headers(V_CONVERSATIONS)).status_code == 200
    )
    assert [m["messageType"] for m in crm.sandbox.messages(LOCATION)] == ["TYPE_SMS", "TYPE_EMAIL"]
    exported = crm.get("/conversations/messages/export", V_CONVERSATIONS, locationId=LOCATION).json()
    assert exported["total"] == 2
    assert (
        crm.client.post(
            "/conversations/messages",
            json={"type": "Fax", "contactId": contact_id},
            headers=crm.headers(V_CONVERSATIONS),
        ).status_code
        == 422
    )

"""The /_sandbox JSON control API drives the emulator from outside."""

from __future__ import annotations

from fastapi.testclient import TestClient

from qbconnect.sandbox.crm import CrmSandbox, create_app


def test_control_api_round_trip() -> None:
    sandbox = CrmSandbox()
    client = TestClient(create_app(sandbox))
    loc = client.post("/_sandbox/locations", json={"name": "Shop"}).json()["id"]
    contact = client.post(f"/_sandbox/locations/{loc}/contacts", json={"email": "c@example.com"}).json()
    invoice = client.post(
        f"/_sandbox/locations/{loc}/invoices",
        json={"contact_id": contact["id"], "items": [{"name": "A", "qty": 1, "amount": 12.5}]},
    ).json()
    assert invoice["total"] == 12.5 and invoice["status"] == "draft"
    assert client.post(f"/_sandbox/invoices/{invoice['_id']}/send").json()["status"] == "sent"
    paid = client.post(f"/_sandbox/invoices/{invoice['_id']}/payments", json={"amount": "12.50"}).json()
    assert paid["status"] == "paid"
    order = client.post(
        f"/_sandbox/locations/{loc}/orders",
        json={
            "contact_id": contact["id"],
            "source_type": "membership",
            "items": [{"name": "M", "amount": 9}],
            "subscription": True,
        },
    ).json()
    assert order["sourceType"] == "membership"
    sub_id = next(iter(sandbox.subscriptions))
    assert client.post(f"/_sandbox/subscriptions/{sub_id}/renew").json()["status"] == "succeeded"
    assert client.post(f"/_sandbox/invoices/{invoice['_id']}/payments", json={"amount": 1}).status_code == 400
    assert client.post("/_sandbox/invoices/nope/send").status_code == 404
    pending = client.get("/_sandbox/webhooks").json()["pending"]
    assert pending == sandbox.pending_webhooks() > 0
    assert client.post("/_sandbox/webhooks/flush", params={"drop": True}).json()["handled"] == pending
    assert client.get("/_sandbox/keys").json()["webhook_public_key"] == sandbox.webhook_public_key
    client.get("/contacts/x")
    assert client.get("/_sandbox/requests").json()[-1]["status"] == 401

"""Contract: the emulator's answers validate against HighLevel's official OpenAPI specs, the official webhook
examples validate against the official webhook schemas, and emitted webhooks carry the examples' keys."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from tests.sandbox import crm_fixtures
from tests.sandbox.crm_fixtures import LOCATION, V_CONVERSATIONS, Crm
from tests.support.hl_openapi import validate_response
from tests.support.reference import reference_dir

contact_id = crm_fixtures.contact_id
crm = crm_fixtures.crm

# Added by the emulator to every event: the envelope (webhookId, timestamp) and, on invoice events, the
# ``type``/``locationId`` pair that every other event family carries.
ENVELOPE = {"webhookId", "timestamp", "type", "locationId"}


def _ok(spec: str, method: str, path: str, status: int, response: Any) -> None:
    assert response.status_code == status, response.text
    problems = validate_response(spec, method, path, status, response.json())
    assert problems == [], problems


def _populate(crm: Crm, contact_id: str) -> dict[str, Any]:
    invoice = crm.sandbox.create_invoice(
        LOCATION,
        contact_id=contact_id,
        discount={"type": "percentage", "value": 5},
        items=[
            {
                "name": "Fix",
                "qty": 1,
                "amount": "99.99",
                "productId": "p1",
                "taxes": [{"_id": "t1", "name": "VAT", "rate": 20}],
            }
        ],
    )
    crm.sandbox.send_invoice(invoice["_id"])
    crm.sandbox.record_invoice_payment(invoice["_id"], Decimal("10"))
    order = crm.sandbox.create_order(
        LOCATION,
        contact_id=contact_id,
        source_type="funnel",
        source_sub_type="two_step_order_form",
        items=[{"name": "Plan", "amount": 49}],
        subscription=True,
    )
    return {"invoice": invoice, "order": order}


def test_contacts_responses_match_spec(crm: Crm, contact_id: str) -> None:
    h = crm.headers()
    _ok("contacts", "get", "/contacts/{contactId}", 200, crm.get(f"/contacts/{contact_id}"))
    created = crm.client.post("/contacts/", json={"locationId": LOCATION, "email": "n@example.com"}, headers=h)
    _ok("contacts", "post", "/contacts/", 201, created)
    _ok(
        "contacts",
        "put",
        "/contacts/{contactId}",
        200,
        crm.client.put(f"/contacts/{contact_id}", json={"city": "Rome"}, headers=h),
    )
    _ok(
        "contacts",
        "post",
        "/contacts/upsert",
        200,
        crm.client.post("/contacts/upsert", json={"locationId": LOCATION, "email": "ada@example.com"}, headers=h),
    )
    _ok(
        "contacts",
        "post",
        "/contacts/{contactId}/tags",
        201,
        crm.client.post(f"/contacts/{contact_id}/tags", json={"tags": ["x"]}, headers=h),
    )
    _ok(
        "contacts",
        "delete",
        "/contacts/{contactId}/tags",
        200,
        crm.client.request("DELETE", f"/contacts/{contact_id}/tags", json={"tags": ["x"]}, headers=h),
    )


def test_error_bodies_match_common_schemas(crm: Crm, contact_id: str) -> None:
    _ok(
        "contacts",
        "post",
        "/contacts/",
        422,
        crm.client.post("/contacts/", json={"locationId": 5}, headers=crm.headers()),
    )
    _ok("contacts", "get", "/contacts/{contactId}", 400, crm.get("/contacts/missing"))
    _ok(
        "contacts",
        "get",
        "/contacts/{contactId}",
        401,
        crm.client.get(f"/contacts/{contact_id}", headers={"Version": "2021-07-28"}),
    )
    token_error = crm.client.post(
        "/oauth/token",
        data={
            "client_id": "crm-client",
            "client_secret": "crm-secret",
            "grant_type": "refresh_token",
            "refresh_token": "nope",
        },
    )
    _ok("oauth", "post", "/oauth/token", 400, token_error)


def test_billing_responses_match_spec(crm: Crm, contact_id: str) -> None:
    made = _populate(crm, contact_id)
    invoice_id, order_id = made["invoice"]["_id"], made["order"]["_id"]
    loc = {"altId": LOCATION, "altType": "location"}
    _ok("invoices", "get", "/invoices/", 200, crm.get("/invoices/", **loc, limit=10, offset=0))
    _ok("invoices", "get", "/invoices/{invoiceId}", 200, crm.get(f"/invoices/{invoice_id}", **loc))
    _ok("payments", "get", "/payments/orders", 200, crm.get("/payments/orders", altId=LOCATION))
    _ok("payments", "get", "/payments/orders/{orderId}", 200, crm.get(f"/payments/orders/{order_id}", altId=LOCATION))
    txns = crm.get("/payments/transactions", **loc)
    _ok("payments", "get", "/payments/transactions", 200, txns)
    for txn in txns.json()["data"]:
        _ok(
            "payments",
            "get",
            "/payments/transactions/{transactionId}",
            200,
            crm.get(f"/payments/transactions/{txn['_id']}", **loc),
        )
    subs = crm.get("/payments/subscriptions", **loc)
    _ok("payments", "get", "/payments/subscriptions", 200, subs)
    sub_id = subs.json()["data"][0]["_id"]
    _ok(
        "payments",
        "get",
        "/payments/subscriptions/{subscriptionId}",
        200,
        crm.get(f"/payments/subscriptions/{sub_id}", **loc),
    )


def test_oauth_and_conversations_match_spec(crm: Crm, contact_id: str) -> None:
    refreshed = crm.client.post(
        "/oauth/token",
        data={
            "client_id": "crm-client",
            "client_secret": "crm-secret",
            "grant_type": "refresh_token",
            "refresh_token": crm.token["refresh_token"],
        },
    )
    _ok("oauth", "post", "/oauth/token", 200, refreshed)
    crm.token = refreshed.json()
    sent = crm.client.post(
        "/conversations/messages",
        json={"type": "SMS", "contactId": contact_id, "message": "hi"},
        headers=crm.headers(V_CONVERSATIONS),
    )
    _ok("conversations", "post", "/conversations/messages", 200, sent)
    _ok(
        "conversations",
        "get",
        "/conversations/messages/export",
        200,
        crm.get("/conversations/messages/export", V_CONVERSATIONS, locationId=LOCATION),
    )


def _examples() -> dict[str, dict[str, Any]]:
    folder = reference_dir("highlevel", "webhooks", "examples")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def test_official_examples_validate_against_official_schemas() -> None:
    schemas = reference_dir("highlevel", "webhooks", "schemas")
    checked = 0
    for name, example in _examples().items():
        schema_file = schemas / f"{name}.schema.json"
        if not schema_file.exists():
            continue
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(example)]
        assert errors == [], (name, errors)
        checked += 1
    assert checked >= 14


def test_emitted_webhooks_have_the_example_keys_and_validate(crm: Crm, contact_id: str) -> None:
    made = _populate(crm, contact_id)
    crm.sandbox.update_invoice(made["invoice"]["_id"], due_date="2030-01-01")
    crm.sandbox.record_invoice_payment(made["invoice"]["_id"], crm.sandbox.invoice(made["invoice"]["_id"])["amountDue"])
    other = crm.sandbox.create_invoice(LOCATION, contact_id=contact_id, items=[{"name": "X", "qty": 1, "amount": 1}])
    crm.sandbox.void_invoice(other["_id"])
    crm.sandbox.delete_invoice(other["_id"])
    crm.sandbox.set_dnd(contact_id, "Email")
    crm.client.post(f"/contacts/{contact_id}/tags", json={"tags": ["t"]}, headers=crm.headers())
    crm.client.put(f"/contacts/{contact_id}", json={"city": "Oslo"}, headers=crm.headers())
    examples = _examples()
    schemas = reference_dir("highlevel", "webhooks", "schemas")
    seen = set()
    for event in crm.sandbox.emitted_webhooks:
        name = event["type"]
        seen.add(name)
        expected = set(examples[name])
        assert expected <= set(event), (name, expected - set(event))
        assert set(event) - expected <= ENVELOPE, (name, set(event) - expected)
        schema = json.loads((schemas / f"{name}.schema.json").read_text(encoding="utf-8"))
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(event)]
        assert errors == [], (name, errors)
    assert seen >= {
        "ContactCreate",
        "ContactUpdate",
        "ContactTagUpdate",
        "ContactDndUpdate",
        "InvoiceCreate",
        "InvoiceSent",
        "InvoiceUpdate",
        "InvoicePartiallyPaid",
        "InvoicePaid",
        "InvoiceVoid",
        "InvoiceDelete",
        "OrderCreate",
        "OrderStatusUpdate",
    }


@pytest.mark.parametrize("family", ["contacts", "invoices", "payments", "conversations"])
def test_spec_declares_the_version_we_enforce(family: str) -> None:
    from qbconnect.sandbox.crm import API_VERSIONS

    spec = json.loads((reference_dir("highlevel", "openapi", "v2", "apps") / f"{family}.json").read_text())
    versions = {
        p["schema"]["enum"][0]
        for ops in spec["paths"].values()
        for op in ops.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
        if p.get("name") == "Version"
    }
    assert versions == {API_VERSIONS[family]}

"""Webhooks: legacy and CloudEvents payloads, intuit-signature, batching, retries, background delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading

import httpx
import respx

from qbconnect.sandbox.qbo import QboSandbox

from .qbo_fixtures import connect

URL = "https://app.example/webhooks/qbo"


def _verify(body: bytes, signature: str, token: str = "sandbox-verifier") -> bool:
    expected = base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, signature)


def test_cloudevents_batch_signed_with_verifier_token() -> None:
    sandbox = QboSandbox(webhook_url=URL)
    qbo = connect(sandbox, sandbox.add_company())
    customer = qbo.customer("Hook")
    qbo.ok("Customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Notes": "x"})
    sandbox.ui_create(qbo.realm, "Customer", {"DisplayName": "From UI"})
    qbo.post("customer", {"DisplayName": "Hook"})  # a failed write queues nothing
    assert sandbox.pending_webhooks() == 3
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(200))
        assert sandbox.flush_webhooks() == 3
        request = route.calls.last.request
    assert route.call_count == 1 and _verify(request.content, request.headers["intuit-signature"])
    events = json.loads(request.content)
    assert [e["type"] for e in events] == [
        "qbo.customer.created.v1",
        "qbo.customer.updated.v1",
        "qbo.customer.created.v1",
    ]
    assert all(e["specversion"] == "1.0" and e["intuitaccountid"] == qbo.realm for e in events)
    assert events[0]["intuitentityid"] == customer["Id"] and events[0]["datacontenttype"] == "application/json"
    assert sandbox.pending_webhooks() == 0


def test_legacy_format_merge_void_and_delete() -> None:
    sandbox = QboSandbox(webhook_url=URL, webhook_format="legacy")
    qbo = connect(sandbox, sandbox.add_company())
    a, b = qbo.customer("A"), qbo.customer("B")
    invoice = qbo.invoice(a["Id"], (1, 5))
    qbo.ok("Invoice", {"Id": invoice["Id"], "SyncToken": "0"}, operation="void")
    sandbox.ui_merge_customers(qbo.realm, a["Id"], b["Id"])
    with respx.mock() as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(200))
        sandbox.flush_webhooks()
        payload = json.loads(route.calls.last.request.content)
    notification = payload["eventNotifications"][0]
    assert notification["realmId"] == qbo.realm
    ops = [(e["name"], e["operation"]) for e in notification["dataChangeEvent"]["entities"]]
    assert ("Invoice", "Void") in ops and ("Customer", "Merge") in ops
    merge = next(e for e in notification["dataChangeEvent"]["entities"] if e["operation"] == "Merge")
    assert merge["id"] == b["Id"] and merge["deletedId"] == a["Id"]


def test_failed_delivery_keeps_events_and_drop_discards() -> None:
    sandbox = QboSandbox(webhook_url=URL)
    qbo = connect(sandbox, sandbox.add_company())
    qbo.customer("Retry me")
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(503))
        assert sandbox.flush_webhooks() == 0
    assert sandbox.pending_webhooks() == 1
    assert sandbox.flush_webhooks(drop=True) == 1 and sandbox.pending_webhooks() == 0


def test_background_delivery_thread() -> None:
    sandbox = QboSandbox(webhook_url=URL)
    qbo = connect(sandbox, sandbox.add_company())
    delivered = threading.Event()
    with respx.mock() as mock:
        mock.post(URL).mock(side_effect=lambda request: (delivered.set(), httpx.Response(200))[1])
        sandbox.start_webhook_delivery(interval=0.01)
        try:
            qbo.customer("Background")
            assert delivered.wait(5)
        finally:
            sandbox.stop_webhook_delivery()
    assert sandbox.pending_webhooks() == 0

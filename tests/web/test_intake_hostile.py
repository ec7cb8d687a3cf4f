"""Signed but hostile input: stale or future deliveries, a stale AppUninstall, values storage cannot hold,
malformed bodies, oversized bodies. Never a 500, never a stored row from a refused event."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import InboxEvent, Location, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sandbox.server import serve_in_thread
from qbconnect.web.app import create_app
from qbconnect.web.limits import MAX_BODY_BYTES
from tests.support.signing import CrmSigner, intuit_headers
from tests.support.webhooks import VERIFIER, connect, counts, crm_invoice, qbo_entity, qbo_legacy, refusals


@pytest.fixture(scope="module")
def signer() -> CrmSigner:
    """One key pair for the module: an RSA-2048 key takes 0.1-0.5 s to generate."""
    return CrmSigner.generate()


@pytest.fixture
def client(runtime: Runtime, signer: CrmSigner) -> Iterator[TestClient]:
    runtime.settings.crm_webhook_public_key = signer.public_key_b64
    runtime.settings.crm_webhook_rsa_public_key = signer.rsa_public_pem
    runtime.settings.qbo_webhook_verifier_token = SecretStr(VERIFIER)
    connect(runtime, "loc-1", "9130")
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def _crm(client: TestClient, signer: CrmSigner, body: bytes) -> tuple[int, dict[str, object]]:
    response = client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body))
    return response.status_code, response.json()


def _qbo(client: TestClient, body: bytes) -> tuple[int, dict[str, object]]:
    response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
    return response.status_code, response.json()


# ----- freshness ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(days=-30), "stale"),
        (timedelta(days=365), "future"),
        (timedelta(minutes=10), "future"),
        (timedelta(hours=-2), "stale"),
    ],
)
def test_deliveries_outside_the_replay_window_are_refused_and_only_counted(
    client: TestClient, runtime: Runtime, signer: CrmSigner, offset: timedelta, reason: str
) -> None:
    status, body = _crm(client, signer, crm_invoice("loc-1", f"old-{reason}", at=utcnow() + offset))
    assert status == 400 and reason in str(body["error"])
    assert counts(runtime) == (0, 0)
    assert refusals(runtime) == {("crm", reason): 1}


def test_highlevel_retry_of_a_429_with_its_original_timestamp_is_still_accepted(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    # HighLevel re-sends the same signed body up to 6 times after a 429, each 10 minutes plus jitter after
    # the last: the sixth retry comes about 1 h 10 min after the first delivery (its "Automated Webhook
    # Retries" guide). Allow a few minutes of jitter and clock skew on top.
    status, body = _crm(client, signer, crm_invoice("loc-1", "retried", at=utcnow() - timedelta(minutes=62)))
    assert (status, body["status"]) == (200, "queued")
    sixth = _crm(client, signer, crm_invoice("loc-1", "sixth-retry", at=utcnow() - timedelta(minutes=75)))
    assert sixth == (200, {"status": "queued"})
    assert _crm(client, signer, crm_invoice("loc-1", "late", at=utcnow() - timedelta(minutes=4)))[0] == 200
    assert counts(runtime) == (3, 1)


def test_replay_window_is_a_setting(client: TestClient, runtime: Runtime, signer: CrmSigner) -> None:
    runtime.settings.crm_webhook_replay_window_seconds = 60
    runtime.settings.crm_webhook_retry_grace_seconds = 0
    assert _crm(client, signer, crm_invoice("loc-1", "w-1", at=utcnow() - timedelta(minutes=3)))[0] == 400
    assert _crm(client, signer, crm_invoice("loc-1", "w-2", at=utcnow() + timedelta(minutes=3)))[0] == 400
    assert _crm(client, signer, crm_invoice("loc-1", "w-3", at=utcnow() - timedelta(seconds=20)))[0] == 200


def _uninstall(location_id: str, webhook_id: str, at: object) -> bytes:
    payload = {"type": "UNINSTALL", "appId": "app-1", "locationId": location_id, "companyId": "co-1"}
    payload |= {"webhookId": webhook_id, "timestamp": at}
    return json.dumps(payload).encode()


def test_uninstall_dated_before_the_latest_install_is_ignored(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    with runtime.sessions.begin() as session:
        location = session.get(Location, "loc-1")
        assert location is not None
        location.crm_access_token = "encrypted-access"
        location.installed_at = utcnow()  # re-installed just now
    stale = _uninstall("loc-1", "un-1", (utcnow() - timedelta(seconds=90)).isoformat())
    assert _crm(client, signer, stale) == (200, {"status": "stale_uninstall"})
    with runtime.sessions() as session:
        location = session.get(Location, "loc-1")
        assert location is not None
        assert (location.crm_status, location.crm_access_token) == ("installed", "encrypted-access")
    fresh = _uninstall("loc-1", "un-2", (utcnow() + timedelta(seconds=2)).isoformat())
    assert _crm(client, signer, fresh) == (200, {"status": "uninstalled"})
    with runtime.sessions() as session:
        location = session.get(Location, "loc-1")
        assert location is not None and location.crm_status == "uninstalled"


def test_uninstall_from_last_year_is_refused(client: TestClient, runtime: Runtime, signer: CrmSigner) -> None:
    assert _crm(client, signer, _uninstall("loc-1", "un-3", "2025-03-01T10:00:00Z"))[0] == 400
    with runtime.sessions() as session:
        location = session.get(Location, "loc-1")
        assert location is not None and location.crm_status == "installed"


# ----- values storage cannot hold --------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize(
    "poison",
    ["9" * 200, "58\x00", "\ud800"],
    ids=["longer-than-column", "nul", "lone-surrogate"],
)
def test_poison_event_in_an_intuit_batch_is_refused_alone_and_its_sibling_is_stored(
    client: TestClient, runtime: Runtime, poison: str
) -> None:
    body = json.dumps(
        {
            "eventNotifications": [
                {"realmId": "9130", "dataChangeEvent": {"entities": [qbo_entity(poison), qbo_entity("58")]}}
            ]
        }
    ).encode()
    status, answer = _qbo(client, body)
    assert status == 200 and answer["events"] == ["refused", "queued"]
    with runtime.sessions() as session:
        stored = [(e.entity_kind, e.entity_id) for e in session.execute(select(InboxEvent)).scalars()]
        queued = [(j.kind, j.entity_id) for j in session.execute(select(SyncJob)).scalars()]
    assert stored == [("Customer", "58")] and queued == [("customer", "58")]
    assert refusals(runtime) == {("qbo", "unstorable"): 1}
    # Redelivered, the batch is answered the same way: the poison is not mistaken for storage down.
    assert _qbo(client, body) == (
        200,
        {"status": "ok", "events": ["refused", "duplicate"], "refused": answer["refused"]},
    )


@pytest.mark.postgres
def test_intuit_batch_of_only_poison_is_a_422(client: TestClient, runtime: Runtime) -> None:
    status, answer = _qbo(client, qbo_legacy("9" * 40, qbo_entity("1")))
    assert status == 422 and "realm_id is longer than 32" in str(answer["reasons"])
    assert counts(runtime) == (0, 0)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "fields",
    [
        {"locationId": "L" * 65},
        {"webhookId": "W" * 129},
        {"webhookId": "\ud800"},
        {"_id": "inv\x00"},
        {"type": "Invoice" + "X" * 60},
    ],
    ids=["location-id-too-long", "webhook-id-too-long", "lone-surrogate", "nul", "type-too-long"],
)
def test_crm_event_storage_cannot_hold_is_a_422(
    client: TestClient, runtime: Runtime, signer: CrmSigner, fields: dict[str, str]
) -> None:
    status, answer = _crm(client, signer, crm_invoice("loc-1", "poison", **fields))
    assert status == 422 and "cannot be stored" in str(answer["error"])
    assert counts(runtime) == (0, 0)
    assert refusals(runtime) == {("crm", "unstorable"): 1}


# ----- malformed bodies ------------------------------------------------------------------------------------

MALFORMED_CRM = {
    "deep-nesting": b'{"a":' * 200_000 + b"1" + b"}" * 200_000,
    "deep-array": b"[" * 500_000,
    "utf-16": crm_invoice("loc-1", "u16").decode().encode("utf-16"),
    "utf-16-le-no-bom": crm_invoice("loc-1", "u16le").decode().encode("utf-16-le"),
    "invalid-utf-8": b'{"type": "InvoiceSent", "locationId": "\xff\xfe"}',
    "huge-integer-id": b'{"type": "InvoiceSent", "webhookId": ' + b"9" * 5000 + b"}",
    "huge-float-timestamp": b'{"type": "InvoiceSent", "webhookId": "x", "timestamp": 1e400}',
    "absurd-timestamp": json.dumps({"type": "InvoiceSent", "timestamp": "9999-12-31T23:59:59-23:59"}).encode(),
    "timestamp-wrong-type": json.dumps({"type": "InvoiceSent", "timestamp": {"at": 1}}).encode(),
    "not-an-object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("name", list(MALFORMED_CRM))
def test_malformed_signed_crm_bodies_are_a_400_with_a_reason(
    client: TestClient, runtime: Runtime, signer: CrmSigner, name: str
) -> None:
    status, answer = _crm(client, signer, MALFORMED_CRM[name])
    assert status == 400 and answer["error"]
    assert counts(runtime) == (0, 0)


def test_wrong_types_in_a_crm_body_are_not_a_500(client: TestClient, runtime: Runtime, signer: CrmSigner) -> None:
    body = crm_invoice("loc-1", "types", locationId=["loc-1"], _id={"x": 1}, altId=7, status=None)
    status, answer = _crm(client, signer, body)
    assert (status, answer["status"]) == (200, "unknown_location")


MALFORMED_QBO = {
    "absurd-time": json.dumps(
        [
            {
                "specversion": "1.0",
                "id": "ce-9",
                "type": "qbo.customer.updated.v1",
                "time": "9999-12-31T23:59:59-23:59",
                "intuitentityid": "1",
                "intuitaccountid": "9130",
            }
        ]
    ).encode(),
    "deep-nesting": b"[" * 500_000,
    "utf-16": qbo_legacy("9130", qbo_entity("1")).decode().encode("utf-16"),
    "huge-number": b'{"eventNotifications": [{"realmId": ' + b"1" * 5000 + b"}]}",
    "wrong-types": json.dumps({"eventNotifications": [{"realmId": 9.5, "dataChangeEvent": []}]}).encode(),
    "last-updated-wrong-type": qbo_legacy(
        "9130", {"id": "1", "operation": "Update", "name": "Customer", "lastUpdated": 5}
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED_QBO))
def test_malformed_signed_intuit_bodies_are_a_400_with_a_reason(
    client: TestClient, runtime: Runtime, name: str
) -> None:
    status, answer = _qbo(client, MALFORMED_QBO[name])
    assert status == 400 and answer["error"]
    assert counts(runtime) == (0, 0)


# ----- size before reading ----------------------------------------------------------------------------------


def test_chunked_body_over_the_limit_is_cut_with_413(client: TestClient, runtime: Runtime) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/webhooks/crm", "/webhooks/qbo", "/login"):
        assert client.post(path, content=chunks(), headers=form).status_code == 413, path
    assert counts(runtime) == (0, 0)


def test_content_length_over_the_limit_is_refused_before_the_body_is_sent(runtime: Runtime) -> None:
    """The headers alone announce 1 GB: the answer comes without waiting for a byte of the body."""
    server = serve_in_thread(create_app(runtime))
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        for path in ("/webhooks/crm", "/webhooks/qbo"):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {10**9}\r\n\r\n".encode()
                )
                reply = sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 413"), reply[:80]
    finally:
        server.stop()

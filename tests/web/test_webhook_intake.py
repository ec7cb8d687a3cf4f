"""Webhook intake with the platforms' official example payloads: valid, forged, unsigned, redelivered,
unknown location, storage down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from qbconnect.clock import utcnow
from qbconnect.db.models import InboxEvent, Location, QboConnection, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.web.app import create_app
from tests.support.reference import reference_dir
from tests.support.signing import CrmSigner, intuit_headers

VERIFIER = "intuit-verifier-token"


@pytest.fixture(scope="module")
def signer() -> CrmSigner:
    """One key pair for the module: an RSA-2048 key takes 0.1-0.5 s to generate."""
    return CrmSigner.generate()


@pytest.fixture
def client(runtime: Runtime, signer: CrmSigner) -> Iterator[TestClient]:
    runtime.settings.crm_webhook_public_key = signer.public_key_b64
    runtime.settings.crm_webhook_rsa_public_key = signer.rsa_public_pem
    runtime.settings.qbo_webhook_verifier_token = SecretStr(VERIFIER)
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def _connect(runtime: Runtime, location_id: str, realm_id: str) -> None:
    with runtime.sessions.begin() as session:
        session.add(Location(id=location_id, name="Test", crm_status="installed"))
        session.flush()
        session.add(
            QboConnection(location_id=location_id, realm_id=realm_id, active_realm_id=realm_id, status="connected")
        )


def _example(name: str) -> dict[str, object]:
    return dict(json.loads((reference_dir("highlevel", "webhooks", "examples") / name).read_text()))


def _counts(runtime: Runtime) -> tuple[int, int]:
    with runtime.sessions() as session:
        inbox = session.scalar(select(func.count()).select_from(InboxEvent)) or 0
        jobs = session.scalar(select(func.count()).select_from(SyncJob)) or 0
    return int(inbox), int(jobs)


def _crm_body(name: str, location_id: str, webhook_id: str) -> bytes:
    payload = _example(name)
    payload["altId"] = location_id
    payload["webhookId"] = webhook_id
    payload["timestamp"] = utcnow().isoformat()
    return json.dumps(payload).encode()


@pytest.mark.parametrize("scheme", ["ed25519", "legacy_rsa"])
def test_signed_invoice_webhook_is_stored_once_and_enqueued(
    client: TestClient, runtime: Runtime, signer: CrmSigner, scheme: str
) -> None:
    _connect(runtime, "loc-1", "9130")
    body = _crm_body("InvoiceSent.json", "loc-1", "wh-1")
    headers = signer.ghl_headers(body) if scheme == "ed25519" else signer.legacy_headers(body)
    first = client.post("/webhooks/crm", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "queued"
    again = client.post("/webhooks/crm", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert _counts(runtime) == (1, 1)
    with runtime.sessions() as session:
        job = session.execute(select(SyncJob)).scalar_one()
    assert (job.location_id, job.kind, job.entity_id) == ("loc-1", "invoice", "6578278e879ad2646715ba9c")


def test_intake_of_a_queued_event_is_one_read_and_four_writes(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    """The hot path's storage cost: the location's status, the inbox row, the job upsert, its sync-log row and
    the job's link to it; a redelivery is the read and one insert that stores nothing."""
    _connect(runtime, "loc-count", "9131")
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        verb = statement.split(None, 1)[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):  # transaction control left out
            statements.append(verb)

    body = _crm_body("InvoiceSent.json", "loc-count", "wh-count")
    headers = signer.ghl_headers(body)
    event.listen(Engine, "before_cursor_execute", count)  # the web app's own engine included
    try:
        assert client.post("/webhooks/crm", content=body, headers=headers).json()["status"] == "queued"
        first = list(statements)
        statements.clear()
        assert client.post("/webhooks/crm", content=body, headers=headers).json()["status"] == "duplicate"
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert first == ["SELECT", "INSERT", "INSERT", "INSERT", "UPDATE"]
    assert statements == ["SELECT", "INSERT"]


def test_forged_and_unsigned_crm_webhooks_are_refused_and_not_stored(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    _connect(runtime, "loc-1", "9130")
    body = _crm_body("InvoicePaid.json", "loc-1", "wh-2")
    headers = signer.ghl_headers(body)
    tampered = body.replace(b'"paid"', b'"void"')
    assert client.post("/webhooks/crm", content=tampered, headers=headers).status_code == 401
    assert client.post("/webhooks/crm", content=body, headers={"content-type": "application/json"}).status_code == 401
    other = CrmSigner.generate()
    assert client.post("/webhooks/crm", content=body, headers=other.ghl_headers(body)).status_code == 401
    assert _counts(runtime) == (0, 0)


def test_crm_webhook_refused_when_no_key_is_configured(runtime: Runtime, signer: CrmSigner) -> None:
    runtime.settings.crm_webhook_public_key = None
    runtime.settings.crm_webhook_rsa_public_key = None  # the default is HighLevel's key, not ours
    body = _crm_body("InvoicePaid.json", "loc-1", "wh-3")
    with TestClient(create_app(runtime)) as test_client:
        assert test_client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body)).status_code == 401
    assert _counts(runtime) == (0, 0)


def test_unknown_location_is_acknowledged_but_nothing_is_queued(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    body = _crm_body("InvoiceSent.json", "nobody", "wh-4")
    response = client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "unknown_location"
    assert _counts(runtime) == (1, 0)


def test_order_webhook_examples_route_to_order_jobs(client: TestClient, runtime: Runtime, signer: CrmSigner) -> None:
    for name, webhook_id in (("OrderCreate.json", "wh-5"), ("OrderStatusUpdate.json", "wh-6")):
        payload = _example(name)
        _connect_once(runtime, str(payload["locationId"]))
        payload["webhookId"] = webhook_id
        body = json.dumps(payload).encode()
        assert client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body)).json()["status"] == "queued"
    with runtime.sessions() as session:
        kinds = {(j.kind, j.entity_id) for j in session.execute(select(SyncJob)).scalars()}
    assert kinds == {("order", str(_example("OrderCreate.json")["_id"]))}


def _connect_once(runtime: Runtime, location_id: str) -> None:
    with runtime.sessions() as session:
        if session.get(Location, location_id) is not None:
            return
    _connect(runtime, location_id, f"realm-{location_id}")


def test_crm_storage_down_answers_429(client: TestClient, runtime: Runtime, signer: CrmSigner, monkeypatch) -> None:
    body = _crm_body("InvoiceSent.json", "loc-1", "wh-7")

    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("qbconnect.sync.engine.intake.intake_crm_many", broken)
    assert client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body)).status_code == 429


def _qbo_examples() -> list[Path]:
    return sorted(reference_dir("qbo", "examples", "webhooks").glob("*.json"))


def test_every_intuit_example_is_accepted_in_both_formats(client: TestClient, runtime: Runtime) -> None:
    for path in _qbo_examples():
        body = path.read_bytes()
        response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
        assert response.status_code == 200, path.name
        assert all(outcome == "unknown_location" for outcome in response.json()["events"]), path.name
        again = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
        assert set(again.json()["events"]) == {"duplicate"}, path.name


def _legacy(realm_id: str, *entities: tuple[str, str, str, datetime]) -> dict[str, object]:
    return {
        "eventNotifications": [
            {
                "realmId": realm_id,
                "dataChangeEvent": {
                    "entities": [
                        {"id": entity_id, "operation": operation, "name": name, "lastUpdated": when.isoformat()}
                        for entity_id, operation, name, when in entities
                    ]
                },
            }
        ]
    }


def _merge(realm_id: str, event_id: str, when: datetime) -> list[dict[str, object]]:
    return [
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "intuit.test",
            "type": "qbo.customer.merged.v1",
            "datacontenttype": "application/json",
            "time": when.isoformat(),
            "intuitentityid": "60",
            "intuitaccountid": realm_id,
            "data": {"deletedid": "27"},
        }
    ]


def _post_qbo(client: TestClient, payload: object) -> list[str]:
    body = json.dumps(payload).encode()
    response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
    assert response.status_code == 200
    return list(response.json()["events"])


def test_intuit_events_ring_one_debounced_change_query_for_the_realms_location(
    client: TestClient, runtime: Runtime
) -> None:
    runtime.settings.qbo_cdc_debounce_seconds = 45
    _connect(runtime, "loc-q", "310687")
    now = utcnow()
    posts = [
        _legacy(
            "310687",
            ("58", "Update", "Customer", now),
            ("77", "Create", "Payment", now),
            ("12", "Create", "Account", now),
        ),
        _merge("310687", "ce-1", now),
        _legacy("310687", *((str(n), "Create", "Customer", now) for n in range(100, 110))),
    ]
    assert [_post_qbo(client, post) for post in posts] == [
        ["queued", "queued", "ignored"],
        ["queued"],
        ["queued"] * 10,
    ]
    with runtime.sessions() as session:
        found = list(session.execute(select(SyncJob)).scalars())
    assert sorted((j.kind, j.entity_id) for j in found) == [("customer", "27"), ("qbo_cdc", "all")]
    (cdc,) = [j for j in found if j.kind == "qbo_cdc"]
    assert cdc.location_id == "loc-q" and cdc.state == "pending"
    assert round((cdc.run_after - cdc.created_at).total_seconds()) == 45  # the window the burst shares
    assert _counts(runtime) == (14, 2)  # every event stored, two jobs


def test_intuit_events_older_than_the_change_query_sees_are_read_by_id(client: TestClient, runtime: Runtime) -> None:
    _connect(runtime, "loc-q", "310687")
    old = utcnow() - timedelta(days=31)
    assert _post_qbo(client, _legacy("310687", ("58", "Update", "Customer", old), ("77", "Create", "Payment", old)))
    assert _post_qbo(client, _merge("310687", "ce-old", old)) == ["queued"]
    with runtime.sessions() as session:
        found = {(j.kind, j.entity_id) for j in session.execute(select(SyncJob)).scalars()}
    assert found == {("customer", "58"), ("qbo_payment", "77"), ("customer", "60"), ("customer", "27")}


def test_forged_or_unsigned_intuit_webhooks_are_refused(client: TestClient, runtime: Runtime) -> None:
    body = _qbo_examples()[0].read_bytes()
    assert client.post("/webhooks/qbo", content=body).status_code == 401
    assert client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, "wrong-token")).status_code == 401
    assert _counts(runtime) == (0, 0)


def test_qbo_storage_down_answers_503(client: TestClient, monkeypatch) -> None:
    body = _qbo_examples()[0].read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("could not connect"))

    monkeypatch.setattr("qbconnect.sync.engine.intake.intake_qbo", broken)
    assert client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER)).status_code == 503


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}

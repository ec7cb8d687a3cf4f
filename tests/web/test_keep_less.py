"""Keep less: the inbox keeps a body only when something reads it; a storage failure logs no SQL parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text

from qbconnect.clock import utcnow
from qbconnect.db.models import InboxEvent, Location, QboConnection
from qbconnect.logs import configure_logging
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.merges import merge_survivor
from qbconnect.web.app import create_app
from tests.support.reference import reference_dir
from tests.support.signing import CrmSigner, intuit_headers

VERIFIER = "intuit-verifier-token"
PERSONAL = "jane.private@example.com"


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


def _crm_body(name: str, location_id: str, webhook_id: str) -> bytes:
    payload = dict(json.loads((reference_dir("highlevel", "webhooks", "examples") / name).read_text()))
    payload.update(locationId=location_id, altId=location_id, webhookId=webhook_id, timestamp=utcnow().isoformat())
    if name.startswith("Contact"):
        payload.pop("email", None)
        payload = {"email": PERSONAL, **payload}  # first: error messages shorten long values in the middle
    return json.dumps(payload).encode()


def _rows(runtime: Runtime) -> dict[str, InboxEvent]:
    with runtime.sessions() as session:
        return {row.event_id: row for row in session.execute(select(InboxEvent)).scalars()}


def test_bodies_of_ignored_and_unknown_location_events_are_not_kept(
    client: TestClient, runtime: Runtime, signer: CrmSigner
) -> None:
    _connect(runtime, "loc-1", "9130")
    posts = {
        "wh-contact": _crm_body("ContactCreate.json", "loc-1", "wh-contact"),  # no job for contacts: ignored
        "wh-stranger": _crm_body("ContactUpdate.json", "nobody", "wh-stranger"),  # unknown location
        "wh-invoice": _crm_body("InvoiceSent.json", "loc-1", "wh-invoice"),  # queued: kept
    }
    answers = {}
    for webhook_id, body in posts.items():
        response = client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body))
        assert response.status_code == 200
        answers[webhook_id] = response.json()["status"]
    assert answers == {"wh-contact": "ignored", "wh-stranger": "unknown_location", "wh-invoice": "queued"}
    rows = _rows(runtime)
    assert rows["wh-contact"].body == "" and rows["wh-contact"].event_type == "ContactCreate"
    assert rows["wh-stranger"].body == ""
    assert json.loads(rows["wh-invoice"].body)["webhookId"] == "wh-invoice"
    with runtime.sessions() as session:
        assert session.scalar(select(InboxEvent.id).where(InboxEvent.body.contains(PERSONAL))) is None


def test_merge_bodies_stay_for_the_survivor_lookup_while_ignored_siblings_go(
    client: TestClient, runtime: Runtime
) -> None:
    _connect(runtime, "loc-q", "310687")
    batch = {
        "eventNotifications": [
            {
                "realmId": "310687",
                "dataChangeEvent": {
                    "entities": [
                        {"id": "60", "operation": "Merge", "name": "Customer", "deletedId": "27",
                         "lastUpdated": "2026-11-01T10:00:00Z"},
                        {"id": "12", "operation": "Create", "name": "Account", "lastUpdated": "2026-11-01T10:00:02Z"},
                    ]
                },
            }
        ]
    }  # fmt: skip
    body = json.dumps(batch).encode()
    response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
    assert response.status_code == 200 and response.json()["events"] == ["queued", "ignored"]
    with runtime.sessions() as session:
        by_type = {row.event_type: row.body for row in session.execute(select(InboxEvent)).scalars()}
        assert merge_survivor(session, "loc-q", "310687", "27") == "60"
    assert by_type["Account.Create"] == "" and by_type["Customer.Merge"] != ""


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_storage_failure_is_logged_without_sql_parameters(
    client: TestClient, runtime: Runtime, signer: CrmSigner, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json=True)
    _connect(runtime, "loc-1", "9130")
    with runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE inbox_events"))
    body = _crm_body("ContactCreate.json", "loc-1", "wh-broken")
    capsys.readouterr()
    response = client.post("/webhooks/crm", content=body, headers=signer.ghl_headers(body))
    assert response.status_code in (429, 503)
    logged = capsys.readouterr().err
    assert "webhook.crm.storage_unavailable" in logged and "wh-broken" in logged  # the failure is logged …
    assert PERSONAL not in logged and "[parameters:" not in logged  # … but none of the values

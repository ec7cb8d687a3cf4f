"""The JSON control API under /_sandbox/ drives the emulator from another process."""

from __future__ import annotations

from fastapi.testclient import TestClient

from qbconnect.sandbox.qbo import QboSandbox, create_app

from .qbo_fixtures import connect


def test_control_api_companies_faults_ui_and_requests() -> None:
    sandbox = QboSandbox()
    control = TestClient(create_app(sandbox))
    created = control.post("/_sandbox/companies", json={"realm_id": "4242", "customers": 3})
    assert created.status_code == 201 and created.json() == {"realm_id": "4242"}
    assert control.post("/_sandbox/companies", json={"realm_id": "4242"}).status_code == 409
    assert len(control.get("/_sandbox/companies/4242/Customer").json()) == 3
    ui = control.post("/_sandbox/companies/4242/Customer", json={"DisplayName": "From Control"})
    assert ui.status_code == 200 and ui.json()["DisplayName"] == "From Control"
    assert control.post("/_sandbox/companies/4242/Customer", json={"DisplayName": "From Control"}).status_code == 400
    qbo = connect(sandbox, "4242")
    assert control.post("/_sandbox/faults", json={"kind": "503", "entity": "Item"}).status_code == 201
    assert control.post("/_sandbox/faults", json={"kind": "nope"}).status_code == 400
    assert qbo.read("item", "1").status_code == 503
    assert control.get("/_sandbox/webhooks").json()["pending"] == 1
    assert control.post("/_sandbox/webhooks/flush", params={"drop": True}).json() == {"sent": 1}
    assert control.patch("/_sandbox/settings", json={"throttle_per_minute": 1}).status_code == 200
    assert qbo.read("item", "1").status_code == 429
    records = control.get("/_sandbox/requests").json()
    assert records[-1]["status"] == 429 and records[-1]["realm_id"] == "4242"
    assert control.post("/_sandbox/tokens/expire").status_code == 200
    control.patch("/_sandbox/settings", json={"throttle_per_minute": 500})
    assert qbo.read("item", "1").status_code == 401

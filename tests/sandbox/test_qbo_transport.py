"""Transport behaviour: requestid replay, fault injection, throttling, content negotiation, request log."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from qbconnect.sandbox.qbo import QboSandbox

from .qbo_fixtures import Qbo, connect, qbo_fixture  # noqa: F401

NS = "{http://schema.intuit.com/finance/v3}"


def test_requestid_replays_the_original_response(qbo: Qbo) -> None:
    first = qbo.post("customer", {"DisplayName": "Once"}, requestid="req-1")
    again = qbo.post("customer", {"DisplayName": "Once"}, requestid="req-1")
    assert again.status_code == 200 and again.json()["Customer"] == first.json()["Customer"]
    assert len([c for c in qbo.sandbox.entities(qbo.realm, "Customer") if c["DisplayName"] == "Once"]) == 1
    assert qbo.fault(qbo.post("customer", {"DisplayName": "Once"}, requestid="req-2"))["code"] == "6240"
    assert qbo.fault(qbo.post("customer", {"DisplayName": "Y"}, requestid="r" * 51))["code"] == "2050"
    assert qbo.sandbox.request_log[-4].operation.endswith(":replay") or any(
        r.operation.endswith(":replay") for r in qbo.sandbox.request_log
    )


def test_requestid_is_per_realm() -> None:
    sandbox = QboSandbox()
    a = connect(sandbox, sandbox.add_company())
    b = connect(sandbox, sandbox.add_company())
    a.post("customer", {"DisplayName": "Same"}, requestid="shared")
    assert b.post("customer", {"DisplayName": "Other"}, requestid="shared").json()["Customer"]["DisplayName"] == "Other"


def test_lost_response_applies_the_write_and_only_replay_avoids_a_duplicate(qbo: Qbo) -> None:
    customer = qbo.customer()
    body = {
        "CustomerRef": {"value": customer["Id"]},
        "Line": [
            {"Amount": 10, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
        ],
    }
    qbo.sandbox.inject_fault("lost_response", entity="Invoice", method="POST")
    lost = qbo.post("invoice", body, requestid="inv-1")
    assert lost.status_code == 500
    assert len(qbo.sandbox.entities(qbo.realm, "Invoice")) == 1  # the write happened
    replay = qbo.post("invoice", body, requestid="inv-1")
    assert replay.status_code == 200
    assert len(qbo.sandbox.entities(qbo.realm, "Invoice")) == 1
    qbo.sandbox.inject_fault("lost_response", entity="Invoice")
    assert qbo.post("invoice", body).status_code == 500
    assert qbo.post("invoice", body).status_code == 200
    assert len(qbo.sandbox.entities(qbo.realm, "Invoice")) == 3  # without requestid: a duplicate


def test_injected_faults_are_consumed_in_order_and_filtered(qbo: Qbo) -> None:
    sandbox = qbo.sandbox
    sandbox.inject_fault("429", count=2, entity="Customer")
    sandbox.inject_fault("503", method="GET")
    sandbox.inject_fault("timeout", latency=0.01)
    assert qbo.read("item", "1").status_code == 503  # Customer-only rule skipped
    assert qbo.post("customer", {"DisplayName": "A"}).status_code == 429
    assert qbo.post("customer", {"DisplayName": "A"}).status_code == 429
    timeout = qbo.post("customer", {"DisplayName": "A"})
    assert timeout.status_code == 504 and timeout.json()["Fault"]["type"] == "SystemFault"
    assert qbo.post("customer", {"DisplayName": "A"}).status_code == 200
    sandbox.inject_fault("500")
    assert qbo.fault(qbo.query("select * from Item"))["code"] == "10000"
    sandbox.inject_fault("401")
    assert qbo.fault(qbo.query("select * from Item"))["code"] == "3200"
    sandbox.inject_fault("latency", latency=0.01)
    assert qbo.query("select * from Item").status_code == 200
    other = sandbox.add_company()
    sandbox.inject_fault("500", realm_id=other)
    assert qbo.query("select * from Item").status_code == 200


def test_throttle_returns_xml_429_even_for_json() -> None:
    sandbox = QboSandbox(throttle_per_minute=3)
    qbo = connect(sandbox, sandbox.add_company())
    for _ in range(3):
        assert qbo.read("item", "1").status_code == 200
    response = qbo.read("item", "1")
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    error = root.find(f"{NS}Fault/{NS}Error")
    assert error is not None and error.get("code") == "3001"
    assert "ThrottleExceeded" in (error.findtext(f"{NS}Message") or "")
    other = connect(sandbox, sandbox.add_company())
    assert other.read("item", "1").status_code == 200  # budgets are per realm


def test_xml_unless_json_is_asked_and_intuit_tid_everywhere(qbo: Qbo) -> None:
    xml = qbo.client.get(qbo.url("item/1"), headers=qbo.headers(json=False))
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(xml.text)
    assert root.tag == f"{NS}IntuitResponse" and root.find(f"{NS}Item/{NS}Name") is not None
    assert xml.headers["intuit_tid"]
    as_json = qbo.client.get(qbo.url("item/1"), headers={**qbo.headers(json=False), "Accept": "application/json"})
    assert as_json.json()["Item"]["Id"] == "1" and as_json.headers["intuit_tid"]
    fault = qbo.client.get(qbo.url("item/999"), headers=qbo.headers(json=False))
    assert fault.status_code == 400 and ET.fromstring(fault.text).find(f"{NS}Fault/{NS}Error").get("code") == "610"  # type: ignore[union-attr]
    assert qbo.client.post("/oauth2/v1/tokens/bearer", data={}).headers["intuit_tid"]


def test_request_log_records_every_api_call(qbo: Qbo) -> None:
    qbo.sandbox.request_log.clear()
    qbo.customer("Logged")
    qbo.query("select * from Customer")
    records = [(r.method, r.entity, r.operation, r.status) for r in qbo.sandbox.request_log]
    assert records == [("POST", "Customer", "create", 200), ("GET", "Customer", "query", 200)]
    assert qbo.sandbox.request_log[0].realm_id == qbo.realm


def test_json_only_bodies_and_minorversion(qbo: Qbo) -> None:
    response = qbo.client.post(
        qbo.url("customer"), content=b"<Customer/>", headers={**qbo.headers(), "Content-Type": "application/xml"}
    )
    assert qbo.fault(response)["code"] == "2010"
    assert qbo.client.get(qbo.url("item/1"), params={"minorversion": "75"}, headers=qbo.headers()).status_code == 200

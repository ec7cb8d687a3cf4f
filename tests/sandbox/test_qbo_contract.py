"""Contract tests against Intuit's reference material (skipped when ../shared/reference is absent).

Every sample request body in examples/docs-api-reference is accepted once its references point at
objects that exist in the sandbox company, and every response (XML and JSON) validates against the XSD.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qbconnect.sandbox.qbo import QboSandbox
from qbconnect.sandbox.qbo.schema_gen import build
from tests.support.reference import reference_dir

from .qbo_fixtures import Qbo, connect

ENTITY_BY_PAGE = {
    "invoice": "Invoice",
    "salesreceipt": "SalesReceipt",
    "payment": "Payment",
    "item": "Item",
    "creditmemo": "CreditMemo",
    "refundreceipt": "RefundReceipt",
    "paymentmethod": "PaymentMethod",
    "preferences": "Preferences",
}


def _validate_xml(text: str) -> list[str]:
    from tests.support.qbo_xsd import validate_qbo_xml

    return validate_qbo_xml(text)


def _validate_json(entity: str, payload: dict[str, Any]) -> list[str]:
    from tests.support.qbo_xsd import validate_qbo_json

    return validate_qbo_json(entity, payload)


def _samples() -> list[Path]:
    from tests.support.reference import REFERENCE_DIR

    folder = REFERENCE_DIR / "qbo" / "examples" / "docs-api-reference"
    return sorted(p for p in folder.glob("*.json") if "request-body" in p.name)


class World:
    """A sandbox company with the objects the samples refer to."""

    def __init__(self) -> None:
        self.sandbox = QboSandbox()
        self.qbo: Qbo = connect(self.sandbox, self.sandbox.add_company())
        self.customer = self.qbo.customer("Amy's Bird Sanctuary")["Id"]
        self.item = "1"

    def remap(self, value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key in ("CustomerRef", "ProjectRef") and isinstance(item, dict):
                    out[key] = {**item, "value": self.customer}
                elif key == "ItemRef":
                    out[key] = {**item, "value": self.item}
                elif key in ("IncomeAccountRef", "DepositToAccountRef", "ExpenseAccountRef", "AssetAccountRef"):
                    out[key] = {**item, "value": self._account(key)}
                elif key == "PaymentMethodRef":
                    out[key] = {**item, "value": "2"}
                else:
                    out[key] = self.remap(item)
            return out
        if isinstance(value, list):
            return [self.remap(v) for v in value]
        return value

    def _account(self, key: str) -> str:
        names = {
            "IncomeAccountRef": "Services",
            "DepositToAccountRef": "Checking",
            "ExpenseAccountRef": "Cost of Goods Sold",
            "AssetAccountRef": "Inventory Asset",
        }
        return next(a["Id"] for a in self.sandbox.entities(self.qbo.realm, "Account") if a["Name"] == names[key])

    def invoice(self) -> dict[str, Any]:
        return self.qbo.invoice(self.customer, (1, 100))

    def target(self, entity: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """An existing object for update/delete/void samples (Id and SyncToken replaced)."""
        if "Id" not in body:
            return None
        if entity == "Preferences":
            return self.sandbox.get(self.qbo.realm, entity, "1")
        if entity == "Item":
            kind = body.get("Type", "Service")
            fresh = {"Name": f"Seed {len(self.sandbox.entities(self.qbo.realm, 'Item'))}", "Type": kind}
            if kind == "Inventory":
                fresh.update(
                    {
                        "IncomeAccountRef": {"value": self._account("IncomeAccountRef")},
                        "AssetAccountRef": {"value": self._account("AssetAccountRef")},
                        "ExpenseAccountRef": {"value": self._account("ExpenseAccountRef")},
                        "TrackQtyOnHand": True,
                        "QtyOnHand": 1,
                        "InvStartDate": "2024-01-01",
                    }
                )
            return self.qbo.ok("Item", fresh)
        if entity == "PaymentMethod":
            return self.qbo.ok("PaymentMethod", {"Name": f"PM {name[:20]}"})
        if entity == "Payment":
            invoice = self.invoice()
            return self.qbo.ok(
                "Payment",
                {
                    "CustomerRef": {"value": self.customer},
                    "TotalAmt": 1,
                    "Line": [{"Amount": 1, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
                },
            )
        line = {"Amount": 10, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
        base: dict[str, Any] = {"CustomerRef": {"value": self.customer}, "Line": [line]}
        if entity == "RefundReceipt":
            base["DepositToAccountRef"] = {"value": self._account("DepositToAccountRef")}
        return self.qbo.ok(entity, base)


def _operation(name: str) -> dict[str, str]:
    if "void" in name:
        return {"operation": "void"} if name.startswith("invoice") else {"operation": "update", "include": "void"}
    if "delete" in name:
        return {"operation": "delete"}
    return {}


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def _check_response(
    world: World, response: Any, entity: str, request_path: str, body: Any, params: dict[str, str]
) -> None:
    assert response.status_code == 200, response.text
    payload = response.json()
    if entity in payload and payload[entity].get("status") != "Deleted":
        assert _validate_json(entity, payload[entity]) == [], payload
    xml = world.qbo.client.post(
        world.qbo.url(request_path),
        json=body,
        headers=world.qbo.headers(json=False),
        params={**params, "requestid": response.request.url.params.get("requestid", "")},
    )
    assert xml.headers["content-type"].startswith("application/xml")
    assert _validate_xml(xml.text) == [], xml.text


def test_reference_samples_present() -> None:
    reference_dir("qbo", "examples", "docs-api-reference")
    assert len(_samples()) >= 20


@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_sample_request_body_is_accepted(world: World, path: Path) -> None:
    page = path.name.split("__")[0]
    sample = json.loads(path.read_text())
    qbo = world.qbo
    if page == "batch":
        body = world.remap(sample)
        receipt = world.target("SalesReceipt", "batch", {"Id": "x"})
        assert receipt is not None
        for item in body["BatchItemRequest"]:
            if "SalesReceipt" in item:
                item["SalesReceipt"].update(Id=receipt["Id"], SyncToken=receipt["SyncToken"])
            if "Invoice" in item:
                invoice = world.invoice()
                item["Invoice"].update(Id=invoice["Id"], SyncToken=invoice["SyncToken"])
        response = qbo.client.post(
            qbo.url("batch"), json=body, headers=qbo.headers(), params={"requestid": path.name[:36]}
        )
        assert response.status_code == 200, response.text
        results = response.json()["BatchItemResponse"]
        assert all("Fault" not in r for r in results), results
        xml = qbo.client.post(
            qbo.url("batch"), json=body, headers=qbo.headers(json=False), params={"requestid": path.name[:36]}
        )
        assert _validate_xml(xml.text) == [], xml.text
        return
    entity = ENTITY_BY_PAGE[page]
    body = world.remap(sample)
    existing = world.target(entity, path.name, body)
    if existing is not None:
        body["Id"] = existing["Id"]
        body["SyncToken"] = existing["SyncToken"]
        if entity == "Payment" and "Line" in body:
            invoice = world.invoice()
            for line in body["Line"]:
                for link in line["LinkedTxn"]:
                    link["TxnId"] = invoice["Id"]
    elif entity == "Payment":
        invoice = world.invoice()
        for line in body.get("Line", []):
            for link in line["LinkedTxn"]:
                link["TxnId"] = invoice["Id"]
    if entity == "Item" and existing is None:
        body["Name"] = f"{body['Name']} {path.name[:8]}"
    if entity == "PaymentMethod" and existing is None:
        body["Name"] = f"{body['Name']} {path.name[-12:-5]}"
    if entity == "Item" and existing is not None:
        body["Name"] = existing["Name"]
        body.pop("FullyQualifiedName", None)
    params = {"requestid": path.name[:50], **_operation(path.name)}
    request_path = entity.lower()
    response = qbo.client.post(qbo.url(request_path), json=body, headers=qbo.headers(), params=params)
    _check_response(world, response, entity, request_path, body, params)


def test_read_query_and_cdc_responses_validate_as_xml(world: World) -> None:
    qbo = world.qbo
    world.invoice()
    for path, params in (
        ("companyinfo/" + qbo.realm, {}),
        ("preferences", {}),
        ("query", {"query": "select * from Invoice"}),
        ("query", {"query": "select * from Customer"}),
        ("query", {"query": "select * from Account"}),
        ("query", {"query": "select * from TaxCode"}),
        ("query", {"query": "select count(*) from Item"}),
        ("cdc", {"entities": "Customer,Invoice,Payment", "changedSince": "2020-01-01"}),
    ):
        if path == "cdc":
            from datetime import UTC, datetime, timedelta

            params = {**params, "changedSince": (datetime.now(UTC) - timedelta(days=1)).isoformat()}
        response = qbo.client.get(qbo.url(path), params=params, headers=qbo.headers(json=False))
        assert response.status_code == 200, response.text
        assert _validate_xml(response.text) == [], (path, response.text[:2000])


def test_non_us_company_responses_validate() -> None:
    sandbox = QboSandbox()
    uk = connect(sandbox, sandbox.add_company(country="GB", home_currency="GBP"))
    customer = uk.customer()
    code = uk.query("select * from TaxCode where Name = '20.0% S'").json()["QueryResponse"]["TaxCode"][0]["Id"]
    body = {
        "CustomerRef": {"value": customer["Id"]},
        "GlobalTaxCalculation": "TaxExcluded",
        "Line": [
            {
                "Amount": 10,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "TaxCodeRef": {"value": code}},
            }
        ],
    }
    response = uk.client.post(uk.url("invoice"), json=body, headers=uk.headers(json=False))
    assert response.status_code == 200 and _validate_xml(response.text) == [], response.text
    for entity in ("TaxCode", "TaxRate"):
        xml = uk.client.get(
            uk.url("query"), params={"query": f"select * from {entity}"}, headers=uk.headers(json=False)
        )
        assert _validate_xml(xml.text) == [], xml.text


def test_faults_validate_as_xml() -> None:
    sandbox = QboSandbox()
    qbo = connect(sandbox, sandbox.add_company())
    response = qbo.client.post(qbo.url("customer"), json={"Bogus": 1}, headers=qbo.headers(json=False))
    assert response.status_code == 400 and _validate_xml(response.text) == []


def test_schema_table_matches_the_xsd() -> None:
    from qbconnect.sandbox.qbo import schema_table

    complex_types, simple_types, elements = build(reference_dir("qbo", "xsd"))
    assert complex_types == schema_table.COMPLEX
    assert simple_types == schema_table.SIMPLE
    assert elements == schema_table.ELEMENTS

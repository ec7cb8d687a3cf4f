"""The XSD validation utility accepts Intuit's own request samples and rejects broken payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.qbo_xsd import qbo_json_to_xml, validate_qbo_json, validate_qbo_xml
from tests.support.reference import REFERENCE_DIR, reference_dir

_ENTITY_BY_PREFIX = {
    "batch": "IntuitBatchRequest",
    "creditmemo": "CreditMemo",
    "invoice": "Invoice",
    "item": "Item",
    "payment": "Payment",
    "paymentmethod": "PaymentMethod",
    "preferences": "Preferences",
    "refundreceipt": "RefundReceipt",
    "salesreceipt": "SalesReceipt",
}
# Full-update samples whose CustomField items carry no value: invalid per the XSD (qbo/NOTES.md §6).
_KNOWN_INVALID = {
    "creditmemo__09__full-update-a-credit-memo-request-body.json",
    "invoice__10__full-update-an-invoice-sample-request-body.json",
    "refundreceipt__11__full-update-a-refundreceipt-request-body.json",
}


def _request_samples() -> list[Path]:
    folder = REFERENCE_DIR / "qbo" / "examples" / "docs-api-reference"
    return sorted(folder.glob("*request-body*.json")) if folder.exists() else []


def _minimal_invoice(**overrides: Any) -> dict[str, Any]:
    invoice: dict[str, Any] = {
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": 100.0,
                "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}},
            }
        ],
        "CustomerRef": {"value": "1"},
    }
    invoice.update(overrides)
    return invoice


def test_samples_found() -> None:
    reference_dir("qbo", "examples", "docs-api-reference")
    assert len(_request_samples()) >= 25


@pytest.mark.parametrize("sample", _request_samples(), ids=lambda path: path.name)
def test_docs_request_bodies_validate(sample: Path) -> None:
    entity = _ENTITY_BY_PREFIX[sample.name.split("__", 1)[0]]
    errors = validate_qbo_json(entity, json.loads(sample.read_text()))
    if sample.name in _KNOWN_INVALID:
        assert errors and all("CustomField" in error for error in errors)
    else:
        assert errors == []


def test_minimal_invoice_with_discount_validates() -> None:
    payload = _minimal_invoice()
    payload["Line"].append(
        {
            "DetailType": "DiscountLineDetail",
            "Amount": 10,
            "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10},
        }
    )
    assert validate_qbo_json("Invoice", payload) == []


def test_customer_validates() -> None:
    customer = {
        "DisplayName": "Jane Doe",
        "GivenName": "Jane",
        "FamilyName": "Doe",
        "PrimaryEmailAddr": {"Address": "jane@example.com"},
        "PrimaryPhone": {"FreeFormNumber": "+1 555 0100"},
        "BillAddr": {"Line1": "1 Main St", "City": "Austin", "Country": "US", "PostalCode": "78701"},
    }
    assert validate_qbo_json("Customer", customer) == []


def test_non_decimal_amount_fails() -> None:
    payload = _minimal_invoice()
    payload["Line"][0]["Amount"] = "abc"
    errors = validate_qbo_json("Invoice", payload)
    assert any("abc" in error and "decimal" in error for error in errors)


def test_unknown_key_fails() -> None:
    errors = validate_qbo_json("Invoice", _minimal_invoice(Bogus="x"))
    assert any("Bogus" in error for error in errors)


def test_attributes_and_simple_content_are_mapped() -> None:
    xml = qbo_json_to_xml("Invoice", _minimal_invoice(sparse=True, Id="5", SyncToken="0"))
    assert 'sparse="true"' in xml
    assert ">1</" in xml  # ReferenceType "value" became element text
    assert validate_qbo_xml(xml) == []


def test_child_order_follows_schema() -> None:
    # JSON order is irrelevant; the serialiser orders children by the XSD sequence.
    payload = {"CustomerRef": {"value": "1"}, "Line": _minimal_invoice()["Line"], "TxnDate": "2024-01-31"}
    assert validate_qbo_json("Invoice", payload) == []


def test_bad_xml_type_reported() -> None:
    xml = '<Invoice xmlns="http://schema.intuit.com/finance/v3"><TxnDate>not-a-date</TxnDate></Invoice>'
    assert validate_qbo_xml(xml) != []


def test_unknown_entity_rejected() -> None:
    reference_dir("qbo", "xsd")
    with pytest.raises(ValueError, match="Nope"):
        validate_qbo_json("Nope", {})

"""Intuit webhooks: HMAC signature and parsing of legacy and CloudEvents payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from qbconnect.qbo.webhooks import QboEvent, parse_events, verify_signature
from tests.support.reference import reference_dir

VERIFIER = "verifier-token-123"


def sign(body: bytes, token: str = VERIFIER) -> str:
    return base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()


def legacy_id(realm: str, entity: str, entity_id: str, operation: str, last_updated: str) -> str:
    return hashlib.sha256(f"{realm}|{entity}|{entity_id}|{operation}|{last_updated}".encode()).hexdigest()


def example(name: str) -> bytes:
    return reference_dir("qbo", "examples", "webhooks", name).read_bytes()


# ---- signature ----------------------------------------------------------------------------------


def test_valid_signature() -> None:
    body = example("legacy-eventNotifications.json")
    assert verify_signature(body, sign(body), VERIFIER)
    assert verify_signature(body, f" {sign(body)}\n", VERIFIER)


@pytest.mark.parametrize(
    "header",
    [
        sign(b'{"eventNotifications":[]}'),  # signature of another body
        sign(b"x", token="another-token"),
        "bm90IGEgc2lnbmF0dXJl",  # valid base64, wrong value
        "not base64 at all ✓",
    ],
)
def test_forged_signature(header: str) -> None:
    body = example("legacy-eventNotifications.json")
    assert not verify_signature(body, header, VERIFIER)


def test_tampered_body() -> None:
    body = example("cloudevents-account-created.json")
    header = sign(body)
    assert not verify_signature(body.replace(b"1234", b"1235"), header, VERIFIER)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature(header: str | None) -> None:
    assert not verify_signature(b"{}", header, VERIFIER)


def test_missing_verifier_token_refuses_everything() -> None:
    assert not verify_signature(b"{}", sign(b"{}", token=""), "")


# ---- parsing the reference examples -------------------------------------------------------------

EXPECTED: dict[str, list[QboEvent]] = {
    "legacy-eventNotifications.json": [
        QboEvent(
            event_id=legacy_id("310687", "Account", "1234", "Create", "2025-09-08T20:52:31.657Z"),
            realm_id="310687",
            entity="Account",
            entity_id="1234",
            operation="Create",
            occurred_at=datetime(2025, 9, 8, 20, 52, 31, 657000, tzinfo=UTC),
            deleted_id=None,
        )
    ],
    "cloudevents-account-created.json": [
        QboEvent(
            event_id="88cd52aa-33b6-4351-9aa4-47572edbd068",
            realm_id="310687",
            entity="Account",
            entity_id="1234",
            operation="Create",
            occurred_at=datetime(2025, 9, 10, 21, 31, 25, 179851, tzinfo=UTC),
            deleted_id=None,
        )
    ],
    "cloudevents-customer-merged.json": [
        QboEvent(
            event_id="********-****-****-****-************-Customer-123",
            realm_id="93414556*********",
            entity="Customer",
            entity_id="123",
            operation="Merge",
            occurred_at=datetime(2025, 12, 4, 15, 25, 5, tzinfo=UTC),
            deleted_id="27",
        )
    ],
    "cloudevents-employee-created-alternative-ids.json": [
        QboEvent(
            event_id="*-*********-***************-PayrollEmployee-000000011",
            realm_id="9341455*********",
            entity="Employee",
            entity_id="000000011",
            operation="Create",
            occurred_at=datetime(2026, 2, 24, 15, 28, 19, 910000, tzinfo=UTC),
            deleted_id=None,
        )
    ],
    "cloudevents-salesreceipt-updated-no-data.json": [
        QboEvent(
            event_id="*********-****-****-****-************-SalesReceipt-150",
            realm_id="9341455*********",
            entity="SalesReceipt",
            entity_id="150",
            operation="Update",
            occurred_at=datetime(2026, 3, 17, 16, 19, 17, tzinfo=UTC),
            deleted_id=None,
        )
    ],
}


def test_every_webhook_example_has_an_expectation() -> None:
    names = sorted(p.name for p in reference_dir("qbo", "examples", "webhooks").iterdir())
    assert names == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_webhook_example_parses(name: str) -> None:
    assert parse_events(example(name)) == EXPECTED[name]


def test_legacy_merge_with_deleted_id_and_several_realms() -> None:
    body = json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": "111",
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Customer",
                                "id": "40",
                                "operation": "Merge",
                                "lastUpdated": "2026-01-05T10:00:00.000Z",
                                "deletedId": "39",
                            },
                            {
                                "name": "Invoice",
                                "id": "7",
                                "operation": "Void",
                                "lastUpdated": "2026-01-05T10:00:01-08:00",
                            },
                        ]
                    },
                },
                {
                    "realmId": "222",
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Payment",
                                "id": "9",
                                "operation": "Emailed",
                                "lastUpdated": "2026-01-05T11:00:00Z",
                            }
                        ]
                    },
                },
            ]
        }
    ).encode()
    merge, void, emailed = parse_events(body)
    assert merge.operation == "Merge"
    assert merge.deleted_id == "39"
    assert merge.entity_id == "40"
    assert merge.event_id == legacy_id("111", "Customer", "40", "Merge", "2026-01-05T10:00:00.000Z")
    assert void.operation == "Void"
    assert void.deleted_id is None
    assert void.occurred_at == datetime(2026, 1, 5, 18, 0, 1, tzinfo=UTC)
    assert (emailed.realm_id, emailed.entity, emailed.operation) == ("222", "Payment", "Emailed")


def test_legacy_event_id_is_stable_and_changes_with_last_updated() -> None:
    def body(last_updated: str) -> bytes:
        entity = {"name": "Invoice", "id": "5", "operation": "Update", "lastUpdated": last_updated}
        return json.dumps(
            {"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": [entity]}}]}
        ).encode()

    first = parse_events(body("2026-01-01T00:00:00Z"))[0].event_id
    assert parse_events(body("2026-01-01T00:00:00Z"))[0].event_id == first
    assert parse_events(body("2026-01-01T00:00:01Z"))[0].event_id != first


@pytest.mark.parametrize(
    ("event_type", "entity", "operation"),
    [
        ("qbo.invoice.voided.v1", "Invoice", "Void"),
        ("qbo.payment.deleted.v1", "Payment", "Delete"),
        ("qbo.creditmemo.emailed.v1", "CreditMemo", "Emailed"),
        ("qbo.refundreceipt.created.v1", "RefundReceipt", "Create"),
        ("qbo.paymentmethod.updated.v1", "PaymentMethod", "Update"),
        ("qbo.item.merged.v1", "Item", "Merge"),
    ],
)
def test_cloudevent_types(event_type: str, entity: str, operation: str) -> None:
    event = {"specversion": "1.0", "id": "e1", "type": event_type, "intuitentityid": "3", "intuitaccountid": "9"}
    (parsed,) = parse_events(json.dumps([event]).encode())
    assert (parsed.entity, parsed.operation, parsed.occurred_at) == (entity, operation, None)


def test_empty_cloudevents_array() -> None:
    assert parse_events(b"[]") == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b'{"something": "else"}',
        b'"a string"',
        b'{"eventNotifications": {}}',
        b'{"eventNotifications": [{"realmId": "1"}]}',
        b'{"eventNotifications": [{"dataChangeEvent": {"entities": []}}]}',
        b'{"eventNotifications": [{"realmId": "1", "dataChangeEvent": '
        b'{"entities": [{"name": "Invoice", "operation": "Create"}]}}]}',
        b'[{"id": "1", "type": "qbo.invoice.created.v1", "intuitentityid": "3"}]',
        b'[{"id": "1", "type": "invoice.created", "intuitentityid": "3", "intuitaccountid": "9"}]',
        b'[{"type": "qbo.invoice.created.v1", "intuitentityid": "3", "intuitaccountid": "9"}]',
        b'[{"id": "1", "type": "qbo.invoice.created.v1", "intuitentityid": "3", "intuitaccountid": "9", '
        b'"time": "yesterday"}]',
        b'[{"id": "1", "type": "qbo.invoice.created.v1", "intuitentityid": "3", "intuitaccountid": "9", "data": []}]',
        b"[1]",
    ],
)
def test_malformed_bodies_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_events(body)

"""Intuit webhooks: signature check on the raw body and parsing of both payload formats.

Signature: header ``intuit-signature`` = base64(HMAC-SHA256(key=verifier token, message=raw body)).
Formats: legacy ``{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [...]}}]}`` and
CloudEvents (a JSON array of events with ``type`` ``qbo.<entity>.<verb>.v1``, ``intuitaccountid`` =
realm id, ``intuitentityid``, optional ``data.deletedid``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qbconnect.json_body import decode_json

SIGNATURE_HEADER = "intuit-signature"

# Intuit's entity names, keyed by the lower-case form CloudEvents use in ``type``.
_ENTITY_NAMES = {
    name.lower(): name
    for name in (
        "Account",
        "Attachable",
        "Bill",
        "BillPayment",
        "Budget",
        "Class",
        "CompanyCurrency",
        "CompanyInfo",
        "CreditCardPayment",
        "CreditMemo",
        "Currency",
        "Customer",
        "CustomerType",
        "Department",
        "Deposit",
        "Employee",
        "Estimate",
        "Invoice",
        "Item",
        "JournalCode",
        "JournalEntry",
        "Payment",
        "PaymentMethod",
        "Preferences",
        "Purchase",
        "PurchaseOrder",
        "RefundReceipt",
        "SalesReceipt",
        "TaxAgency",
        "TaxCode",
        "TaxRate",
        "Term",
        "TimeActivity",
        "Transfer",
        "Vendor",
        "VendorCredit",
    )
}

_OPERATIONS = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}

_CLOUDEVENT_TYPE = re.compile(r"^qbo\.(?P<entity>[A-Za-z]+)\.(?P<verb>[A-Za-z]+)\.v\d+$")


@dataclass(frozen=True)
class QboEvent:
    """One changed entity reported by Intuit (a hint: read the entity to learn its state)."""

    event_id: str
    realm_id: str
    entity: str
    entity_id: str
    operation: str
    occurred_at: datetime | None
    deleted_id: str | None


def verify_signature(body: bytes, signature_header: str | None, verifier_token: str) -> bool:
    """True only when ``intuit-signature`` matches the HMAC of the raw body (constant-time compare)."""
    if not signature_header or not verifier_token:
        return False
    digest = hmac.new(verifier_token.encode("utf-8"), body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    return hmac.compare_digest(expected, signature_header.strip().encode("utf-8"))


def parse_events(body: bytes) -> list[QboEvent]:
    """Parse a webhook body in either format; ``ValueError`` when it is not a valid notification."""
    try:
        payload = decode_json(body)
    except ValueError as exc:
        raise ValueError(f"webhook {exc}") from exc
    if isinstance(payload, list):
        return [_cloud_event(item) for item in payload]
    if isinstance(payload, dict) and "eventNotifications" in payload:
        return _legacy(payload["eventNotifications"])
    if isinstance(payload, dict) and "specversion" in payload:
        return [_cloud_event(payload)]
    raise ValueError("webhook body is neither eventNotifications nor a CloudEvents array")


def _cloud_event(item: Any) -> QboEvent:
    if not isinstance(item, dict):
        raise ValueError("CloudEvent is not an object")
    event_type = _required_str(item, "type")
    match = _CLOUDEVENT_TYPE.match(event_type)
    if match is None:
        raise ValueError(f"unexpected CloudEvent type {event_type!r}")
    verb = match["verb"].lower()
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValueError("CloudEvent data is not an object")
    deleted = (data or {}).get("deletedid")
    return QboEvent(
        event_id=_required_str(item, "id"),
        realm_id=_required_str(item, "intuitaccountid"),
        entity=_entity_name(match["entity"]),
        entity_id=_required_str(item, "intuitentityid"),
        operation=_OPERATIONS.get(verb, verb.capitalize()),
        occurred_at=_time(item.get("time")),
        deleted_id=str(deleted) if deleted not in (None, "") else None,
    )


def _legacy(notifications: Any) -> list[QboEvent]:
    if not isinstance(notifications, list):
        raise ValueError("eventNotifications is not a list")
    events: list[QboEvent] = []
    for notification in notifications:
        if not isinstance(notification, dict):
            raise ValueError("event notification is not an object")
        realm_id = _required_str(notification, "realmId")
        change = notification.get("dataChangeEvent")
        if not isinstance(change, dict) or not isinstance(change.get("entities"), list):
            raise ValueError("event notification has no dataChangeEvent.entities list")
        for entity in change["entities"]:
            if not isinstance(entity, dict):
                raise ValueError("changed entity is not an object")
            name = _entity_name(_required_str(entity, "name"))
            entity_id = _required_str(entity, "id")
            operation = _required_str(entity, "operation")
            last_updated = entity.get("lastUpdated")
            deleted = entity.get("deletedId")
            key = "|".join((realm_id, name, entity_id, operation, str(last_updated or "")))
            events.append(
                QboEvent(
                    event_id=hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(),  # storage checks the ids
                    realm_id=realm_id,
                    entity=name,
                    entity_id=entity_id,
                    operation=operation,
                    occurred_at=_time(last_updated),
                    deleted_id=str(deleted) if deleted not in (None, "") else None,
                )
            )
    return events


def _entity_name(raw: str) -> str:
    return _ENTITY_NAMES.get(raw.lower(), raw[:1].upper() + raw[1:])


def _required_str(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"webhook event has no {key!r}")
    return value


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"webhook time {value!r} is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"webhook time {value[:40]!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-23:59 is past the year 9999 in UTC
        raise ValueError(f"webhook time {value[:40]!r} is out of range") from exc

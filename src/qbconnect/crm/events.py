"""HighLevel webhook bodies → :class:`CrmEvent` (what happened, to which object, where, when).

Shapes (``webhooks/md/*.md`` and ``docs/WebhookAuthentication.md``):
- most events carry ``type`` ("OrderCreate", "ContactUpdate", "INSTALL", "UNINSTALL"…), ``locationId``,
  ``webhookId`` and ``timestamp``, then the object's own fields;
- the documented invoice bodies are the bare invoice: no ``type``, no ``locationId``; the location is
  ``altId`` when ``altType == "location"`` and the event type follows from ``status``
  (``"delete"`` appears only in InvoiceDelete);
- product and price bodies are the bare object too (``locationId``, no ``type``).
Webhooks are hints: the sync re-reads the object through the API before acting on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from qbconnect.json_body import decode_json

INVOICE_TYPE_BY_STATUS = {
    "sent": "InvoiceSent",
    "paid": "InvoicePaid",
    "partially_paid": "InvoicePartiallyPaid",
    "void": "InvoiceVoid",
    "delete": "InvoiceDelete",
}
APP_TYPES = frozenset({"INSTALL", "UNINSTALL", "AppInstall", "AppUninstall"})
DEFAULT_REPLAY_WINDOW = timedelta(minutes=5)


class EventParseError(ValueError):
    """The body is not a HighLevel webhook (not a JSON object)."""


@dataclass(frozen=True)
class CrmEvent:
    event_id: str  # webhookId, or the sha256 of the raw body when HighLevel sent none
    type: str
    location_id: str | None
    entity_kind: str  # "invoice" | "order" | "contact" | "app" | "product" | "other"
    entity_id: str | None
    occurred_at: datetime | None  # the delivery timestamp, else the object's last change
    body: dict[str, Any]
    timestamp: datetime | None = None  # the signed delivery ``timestamp`` (for the replay window)


def parse_event(body: bytes, *, type_hint: str | None = None) -> CrmEvent:
    """Parse a (verified) webhook body. ``type_hint`` names the event when the body does not.

    A ``timestamp`` that is present but not a time is an error (the replay window needs it)."""
    try:
        data = decode_json(body)
    except ValueError as exc:
        raise EventParseError(f"webhook {exc}") from exc
    if not isinstance(data, dict):
        raise EventParseError("webhook body is not a JSON object")
    raw_timestamp = data.get("timestamp")

    event_type = _event_type(data, type_hint)
    kind = entity_kind(event_type)
    if kind == "other" and _looks_like_invoice(data):
        kind = "invoice"
    webhook_id = data.get("webhookId")
    event_id = (
        str(webhook_id) if isinstance(webhook_id, str | int) and str(webhook_id) else hashlib.sha256(body).hexdigest()
    )
    timestamp = parse_timestamp(raw_timestamp)
    if timestamp is None and raw_timestamp not in (None, ""):
        raise EventParseError("webhook timestamp is not a date and time")
    occurred_at = timestamp
    if occurred_at is None:
        for key in ("updatedAt", "dateUpdated", "createdAt", "dateAdded"):
            occurred_at = parse_timestamp(data.get(key))
            if occurred_at is not None:
                break
    return CrmEvent(
        event_id=event_id,
        type=event_type,
        location_id=_location_id(data),
        entity_kind=kind,
        entity_id=_entity_id(data, kind),
        occurred_at=occurred_at,
        body=data,
        timestamp=timestamp,
    )


def entity_kind(event_type: str) -> str:
    if event_type in APP_TYPES:
        return "app"
    for prefix, kind in (
        ("Invoice", "invoice"),
        ("Order", "order"),
        ("Contact", "contact"),
        ("Product", "product"),
        ("Price", "product"),
    ):
        if event_type.startswith(prefix):
            return kind
    return "other"


def within_replay_window(
    event: CrmEvent,
    *,
    now: datetime,
    max_age: timedelta = DEFAULT_REPLAY_WINDOW,
    max_ahead: timedelta | None = None,
    allow_missing: bool = False,
) -> bool:
    """True when the delivery ``timestamp`` is no older than ``max_age`` and no further in the future
    than ``max_ahead`` (default: ``max_age``).

    HighLevel's guidance: reject deliveries whose timestamp is outside ~5 minutes, and duplicates by
    ``webhookId``. A body without ``timestamp`` passes only with ``allow_missing``.
    """
    if event.timestamp is None:
        return allow_missing
    ahead = max_age if max_ahead is None else max_ahead
    return -ahead <= now - event.timestamp <= max_age


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 ("2025-01-28T14:35:00Z") or epoch seconds/milliseconds → aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if value > 10**11 else value
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        text = value.strip()
        if text.isdigit() and len(text) <= 20:
            return parse_timestamp(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: e.g. 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
            return None
    return None


def _event_type(data: dict[str, Any], type_hint: str | None) -> str:
    declared = data.get("type")
    # Event types are PascalCase ("OrderCreate") or upper case ("INSTALL"); a lower-case ``type`` is the
    # object's own field (a price's "one_time"/"recurring"), not the event's.
    if isinstance(declared, str) and declared[:1].isupper():
        return declared
    if type_hint:
        return type_hint
    if _looks_like_invoice(data):
        status = data.get("status")
        return INVOICE_TYPE_BY_STATUS.get(status if isinstance(status, str) else "", "InvoiceUpdate")
    if "product" in data and ("priceType" in data or "amount" in data):
        return "PriceUpdate"
    if "productType" in data:
        return "ProductUpdate"
    return "Unknown"


def _looks_like_invoice(data: dict[str, Any]) -> bool:
    return "invoiceItems" in data or "invoiceNumber" in data


def _location_id(data: dict[str, Any]) -> str | None:
    location = data.get("locationId")
    if isinstance(location, str) and location:
        return location
    alt_id = data.get("altId")
    if data.get("altType") == "location" and isinstance(alt_id, str) and alt_id:
        return alt_id
    return None


def _entity_id(data: dict[str, Any], kind: str) -> str | None:
    if kind == "app":
        keys: tuple[str, ...] = ("locationId", "companyId")
    elif kind == "contact":
        keys = ("id", "contactId", "_id")
    elif kind == "product" and isinstance(data.get("product"), str):
        keys = ("product", "_id")  # a price belongs to its product
    else:
        keys = ("_id", "id")
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None

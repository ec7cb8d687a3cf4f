"""Contact records: field application, matching keys (email, phone) and the shapes HighLevel returns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

CONTACT_STRING_FIELDS = (
    "firstName",
    "lastName",
    "email",
    "phone",
    "address1",
    "city",
    "state",
    "postalCode",
    "website",
    "timezone",
    "source",
    "country",
    "companyName",
    "assignedTo",
    "gender",
)

# Keys of the official ContactCreate/ContactUpdate/... webhook examples (besides ``type``/``locationId``).
WEBHOOK_CONTACT_KEYS = (
    "id",
    "address1",
    "city",
    "state",
    "companyName",
    "country",
    "source",
    "dateAdded",
    "dateOfBirth",
    "dnd",
    "email",
    "name",
    "firstName",
    "lastName",
    "phone",
    "postalCode",
    "tags",
    "website",
    "attachments",
    "assignedTo",
    "customFields",
)


def normalize_email(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def normalize_phone(phone: str | None) -> str | None:
    """E.164 as HighLevel stores it: ``+1 888-888-8888`` → ``+18888888888`` (10 digits → US)."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if not digits:
        return None
    if phone.strip().startswith("+"):
        return "+" + digits
    if len(digits) == 10:
        return "+1" + digits
    return "+" + digits


def unique_tags(tags: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = tag.strip().lower()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def apply_fields(contact: dict[str, Any], fields: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> None:
    """Write the given request fields onto a stored contact (tags overwrite when sent)."""
    skipped = set(ignore)
    for key in CONTACT_STRING_FIELDS:
        if key in fields and key not in skipped:
            value = fields[key]
            if key == "email":
                value = value.strip() if value else None
                contact["emailLowerCase"] = normalize_email(value)
            elif key == "phone":
                value = normalize_phone(value)
            contact[key] = value
    if "name" in fields and fields["name"] and not (fields.get("firstName") or fields.get("lastName")):
        first, _, last = str(fields["name"]).strip().partition(" ")
        contact["firstName"], contact["lastName"] = first or None, last or None
    if "dnd" in fields:
        contact["dnd"] = bool(fields["dnd"])
    if fields.get("dndSettings"):
        contact["dndSettings"] = {**contact.get("dndSettings", {}), **fields["dndSettings"]}
    if "inboundDndSettings" in fields:
        contact["inboundDndSettings"] = fields["inboundDndSettings"]
    if "tags" in fields and "tags" not in skipped:
        contact["tags"] = unique_tags(fields["tags"] or [])
    if "customFields" in fields:
        values = {f["id"]: f for f in contact.get("customFields", [])}
        for item in fields["customFields"] or []:
            values[str(item.get("id") or item.get("key"))] = {
                "id": str(item.get("id") or item.get("key")),
                "value": item.get("field_value", item.get("value")),
            }
        contact["customFields"] = list(values.values())
    if "dateOfBirth" in fields:
        contact["dateOfBirth"] = str(fields["dateOfBirth"]) if fields["dateOfBirth"] else None
    _derive_names(contact)


def _derive_names(contact: dict[str, Any]) -> None:
    first = contact.get("firstName") or ""
    last = contact.get("lastName") or ""
    full = f"{first} {last}".strip()
    contact["name"] = full or None
    contact["firstNameLowerCase"] = first.lower() or None
    contact["lastNameLowerCase"] = last.lower() or None
    contact["fullNameLowerCase"] = full.lower() or None


def sort_key(contact: Mapping[str, Any]) -> tuple[int, str]:
    """Search order and its ``searchAfter`` cursor: ``[dateAdded in epoch milliseconds, id]``."""
    added = datetime.fromisoformat(str(contact["dateAdded"]).replace("Z", "+00:00"))
    return int(added.timestamp() * 1000), str(contact["id"])


def render(contact: Mapping[str, Any]) -> dict[str, Any]:
    """The contact as ``GET /contacts/{id}`` returns it (absent values are left out)."""
    return {k: v for k, v in contact.items() if v is not None and not k.startswith("_")}


def webhook_payload(event_type: str, contact: Mapping[str, Any]) -> dict[str, Any]:
    """Shaped like webhooks/examples/Contact*.json."""
    payload: dict[str, Any] = {"type": event_type, "locationId": contact["locationId"]}
    for key in WEBHOOK_CONTACT_KEYS:
        value = contact.get(key)
        if key in ("tags", "attachments", "customFields"):
            payload[key] = list(value or [])
        elif key == "dnd":
            payload[key] = bool(value)
        else:
            payload[key] = value if value is not None else ""
    if event_type == "ContactDndUpdate":
        payload["dndSettings"] = dict(contact.get("dndSettings") or {})
    return payload


def matches_search(contact: Mapping[str, Any], query: str | None, filters: list[dict[str, Any]]) -> bool:
    if query:
        needle = query.strip().lower()
        haystack = " ".join(str(contact.get(k) or "") for k in ("name", "email", "phone", "companyName")).lower()
        if needle not in haystack:
            return False
    for item in filters:
        field_name = str(item.get("field", ""))
        operator = str(item.get("operator", "eq"))
        value = item.get("value")
        actual = contact.get(field_name)
        if field_name == "email":
            actual, value = normalize_email(actual), normalize_email(str(value) if value else None)
        elif field_name == "phone":
            actual, value = normalize_phone(actual), normalize_phone(str(value) if value else None)
        if operator == "eq" and actual != value:
            return False
        if operator == "not_eq" and actual == value:
            return False
        if operator == "exists" and not actual:
            return False
        if operator == "not_exists" and actual:
            return False
        if operator == "contains" and (not isinstance(actual, str) or str(value).lower() not in actual.lower()):
            return False
    return True

"""Request-body checks worded like HighLevel's (NestJS class-validator) 422 messages.

Unknown properties are refused ("property x should not exist"), as HighLevel's whitelist does: that
is how, for instance, ``companyName`` on ``PUT /contacts/{id}`` is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["string", "boolean", "number", "string_list", "object", "object_list", "any"]

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Field:
    kind: Kind
    nullable: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    email: bool = False


def check_body(body: Any, fields: Mapping[str, Field]) -> list[str]:
    """Return the 422 messages for ``body`` (empty when it is valid)."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    problems: list[str] = []
    for name in body:
        if name not in fields:
            problems.append(f"property {name} should not exist")
    for name, rule in fields.items():
        if name not in body:
            if rule.required:
                problems.append(f"{name} should not be empty")
                if rule.kind == "string":
                    problems.append(f"{name} must be a string")
            continue
        problems.extend(_check_value(name, body[name], rule))
    return problems


def _check_value(name: str, value: Any, rule: Field) -> list[str]:
    if value is None:
        if rule.nullable:
            return []
        return [f"{name} should not be null"]
    if rule.kind == "string":
        if not isinstance(value, str):
            return [f"{name} must be a string"]
        if rule.required and not value.strip():
            return [f"{name} should not be empty"]
        if rule.choices and value not in rule.choices:
            return [f"{name} must be one of the following values: {', '.join(rule.choices)}"]
        if rule.email and value and not EMAIL_RE.match(value):
            return [f"{name} must be an email"]
        return []
    if rule.kind == "boolean":
        return [] if isinstance(value, bool) else [f"{name} must be a boolean value"]
    if rule.kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{name} must be a number conforming to the specified constraints"]
    if rule.kind == "string_list":
        if not isinstance(value, list):
            return [f"{name} must be an array"]
        if not all(isinstance(v, str) for v in value):
            return [f"each value in {name} must be a string"]
        return []
    if rule.kind == "object":
        return [] if isinstance(value, dict) else [f"{name} must be an object"]
    if rule.kind == "object_list":
        if not isinstance(value, list):
            return [f"{name} must be an array"]
        if not all(isinstance(v, dict) for v in value):
            return [f"each value in {name} must be an object"]
        return []
    return []


DND_CHANNELS = ("Call", "Email", "SMS", "WhatsApp", "GMB", "FB")
DND_STATUSES = ("active", "inactive", "permanent")


def check_dnd_settings(value: Any) -> list[str]:
    if value is None or not isinstance(value, dict):
        return []
    problems: list[str] = []
    for channel, setting in value.items():
        if channel not in DND_CHANNELS:
            problems.append(f"dndSettings.property {channel} should not exist")
        elif not isinstance(setting, dict) or setting.get("status") not in DND_STATUSES:
            problems.append(
                f"dndSettings.{channel}.status must be one of the following values: {', '.join(DND_STATUSES)}"
            )
    return problems


def _contact_fields(*, with_location: bool, with_company: bool, upsert: bool) -> dict[str, Field]:
    fields: dict[str, Field] = {
        "firstName": Field("string", nullable=True),
        "lastName": Field("string", nullable=True),
        "name": Field("string", nullable=True),
        "email": Field("string", nullable=True, email=True),
        "phone": Field("string", nullable=True),
        "address1": Field("string", nullable=True),
        "city": Field("string", nullable=True),
        "state": Field("string", nullable=True),
        "postalCode": Field("string"),
        "website": Field("string", nullable=True),
        "timezone": Field("string", nullable=True),
        "dnd": Field("boolean"),
        "dndSettings": Field("object"),
        "inboundDndSettings": Field("object"),
        "tags": Field("string_list"),
        "customFields": Field("object_list"),
        "source": Field("string", nullable=not with_location),
        "dateOfBirth": Field("any", nullable=True),
        "country": Field("string"),
        "assignedTo": Field("string", nullable=not with_location),
    }
    if with_location:
        fields["locationId"] = Field("string", required=True)
        fields["gender"] = Field("string")
    if with_company:
        fields["companyName"] = Field("string", nullable=True)
    if upsert:
        fields["createNewIfDuplicateAllowed"] = Field("boolean")
    return fields


CREATE_CONTACT = _contact_fields(with_location=True, with_company=True, upsert=False)
UPSERT_CONTACT = _contact_fields(with_location=True, with_company=True, upsert=True)
UPDATE_CONTACT = _contact_fields(with_location=False, with_company=False, upsert=False)
TAGS = {"tags": Field("string_list", required=True)}

MESSAGE_TYPES = ("SMS", "RCS", "Email", "WhatsApp", "IG", "FB", "Custom", "Live_Chat", "TIKTOK")
SEND_MESSAGE = {
    "type": Field("string", required=True, choices=MESSAGE_TYPES),
    "subType": Field("any"),
    "contactId": Field("string", required=True),
    "appointmentId": Field("string"),
    "attachments": Field("string_list"),
    "emailFrom": Field("string"),
    "emailCc": Field("string_list"),
    "emailBcc": Field("string_list"),
    "html": Field("string"),
    "message": Field("string"),
    "subject": Field("string"),
    "replyMessageId": Field("string"),
    "templateId": Field("string"),
    "threadId": Field("string"),
    "scheduledTimestamp": Field("number"),
    "conversationProviderId": Field("string"),
    "emailTo": Field("string", email=True),
    "customSubtypeId": Field("string"),
    "emailReplyMode": Field("string", choices=("reply", "reply_all")),
    "fromNumber": Field("string"),
    "toNumber": Field("string"),
    "forward": Field("object"),
    "status": Field("string", choices=("delivered", "failed", "pending", "read")),
    "usesNativeSchedulingAi": Field("boolean"),
    "optimizationPeriod": Field("string", choices=("24h", "48h", "72h")),
}

"""Intuit webhook payloads (legacy ``eventNotifications`` and CloudEvents) and their signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from typing import Any

from .clock import qbo_time
from .company import Change

MAX_CLOUDEVENTS_PER_POST = 100
_CLOUD_VERBS = {"Create": "created", "Update": "updated", "Delete": "deleted", "Merge": "merged", "Void": "voided"}


def sign(verifier_token: str, body: bytes) -> str:
    """``intuit-signature``: base64(HMAC-SHA256(key=verifier token, message=raw body))."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def legacy_payload(changes: Sequence[Change]) -> dict[str, Any]:
    by_realm: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        entity: dict[str, Any] = {
            "id": change.entity_id,
            "operation": change.operation,
            "name": change.entity,
            "lastUpdated": qbo_time(change.at, millis=True),
        }
        if change.deleted_id:
            entity["deletedId"] = change.deleted_id
        by_realm.setdefault(change.realm_id, []).append(entity)
    return {
        "eventNotifications": [
            {"realmId": realm, "dataChangeEvent": {"entities": entities}} for realm, entities in by_realm.items()
        ]
    }


def cloudevents_payload(changes: Sequence[Change], source: str) -> list[dict[str, Any]]:
    events = []
    for change in changes:
        data: dict[str, Any] = {}
        if change.deleted_id:
            data["deletedid"] = change.deleted_id
        events.append(
            {
                "specversion": "1.0",
                "id": f"{uuid.uuid4()}-{change.entity}-{change.entity_id}",
                "source": source,
                "type": f"qbo.{change.entity.lower()}.{_CLOUD_VERBS[change.operation]}.v1",
                "datacontenttype": "application/json",
                "time": qbo_time(change.at, millis=True),
                "intuitentityid": change.entity_id,
                "intuitaccountid": change.realm_id,
                "data": data,
            }
        )
    return events


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()

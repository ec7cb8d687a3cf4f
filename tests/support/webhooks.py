"""Signed webhook bodies and the service's storage, for intake tests."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from qbconnect.clock import utcnow
from qbconnect.db.models import InboxEvent, Location, QboConnection, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.engine.intake import refusal_counts

VERIFIER = "intuit-verifier-token"


def connect(runtime: Runtime, location_id: str, realm_id: str) -> None:
    with runtime.sessions.begin() as session:
        session.add(Location(id=location_id, name="Test", crm_status="installed"))
        session.flush()
        session.add(
            QboConnection(location_id=location_id, realm_id=realm_id, active_realm_id=realm_id, status="connected")
        )


def counts(runtime: Runtime) -> tuple[int, int]:
    """(inbox rows, sync jobs)."""
    with runtime.sessions() as session:
        inbox = session.scalar(select(func.count()).select_from(InboxEvent)) or 0
        jobs = session.scalar(select(func.count()).select_from(SyncJob)) or 0
    return int(inbox), int(jobs)


def refusals(runtime: Runtime) -> dict[tuple[str, str], int]:
    with runtime.sessions() as session:
        return refusal_counts(session)


def crm_invoice(location_id: str, webhook_id: str, *, at: datetime | None = None, **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "type": "InvoiceSent",
        "locationId": location_id,
        "webhookId": webhook_id,
        "timestamp": (at or utcnow()).isoformat(),
        "_id": "6578278e879ad2646715ba9c",
        "altId": location_id,
        "altType": "location",
        "status": "sent",
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def qbo_legacy(realm_id: str, *entities: dict[str, Any]) -> bytes:
    return json.dumps(
        {"eventNotifications": [{"realmId": realm_id, "dataChangeEvent": {"entities": list(entities)}}]}
    ).encode()


def qbo_entity(entity_id: str, name: str = "Customer", operation: str = "Update") -> dict[str, Any]:
    return {"id": entity_id, "operation": operation, "name": name, "lastUpdated": "2026-11-01T10:00:00Z"}

"""Reading the sync log for the API and the Settings page: newest first, filters, plain-word labels."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.db.models import Activity
from qbconnect.sync.engine import registry

STATUS_WORDS = {
    "pending": "Waiting",
    "running": "Syncing now",
    "retrying": "Will try again",
    "done": "Synced",
    "failed": "Failed",
    "skipped": "Skipped",
    "retried": "Retried",
}
DIRECTION_WORDS = {"crm_to_qbo": "CRM → QuickBooks", "qbo_to_crm": "QuickBooks → CRM", "internal": "Internal"}
KIND_WORDS = {
    "invoice": "Invoice",
    "order": "Order",
    "transaction": "Payment",
    "customer": "Customer",
    "qbo_payment": "QuickBooks payment",
    "customer_import": "Customer import",
    "invoice_reconcile": "Invoice check",
    "transaction_poll": "Payment check",
    "qbo_cdc": "QuickBooks changes check",
}
RETRYABLE = ("failed", "skipped")
MAX_LIMIT = 200


def kind_title(kind: str) -> str:
    spec = registry.HANDLERS.get(kind)
    return spec.title if spec is not None else KIND_WORDS.get(kind, kind.replace("_", " ").capitalize())


def list_activity(
    session: Session,
    location_id: str,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Activity]:
    stmt = select(Activity).where(Activity.location_id == location_id)
    if status:
        stmt = stmt.where(Activity.status == status)
    if kind:
        stmt = stmt.where(Activity.kind == kind)
    if before_id is not None:
        stmt = stmt.where(Activity.id < before_id)
    stmt = stmt.order_by(Activity.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    return list(session.execute(stmt).scalars())


def activity_json(row: Activity) -> dict[str, Any]:
    return {
        "id": row.id,
        "location_id": row.location_id,
        "job_id": row.job_id,
        "kind": row.kind,
        "title": kind_title(row.kind),
        "entity_id": row.entity_id,
        "direction": row.direction,
        "status": row.status,
        "status_text": STATUS_WORDS.get(row.status, row.status),
        "reason": row.reason,
        "summary": row.summary,
        "attempts": row.attempts,
        "error_category": row.error_category,
        "error_message": row.error_message,
        "crm_id": row.crm_id,
        "qbo_id": row.qbo_id,
        "retryable": row.status in RETRYABLE,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }

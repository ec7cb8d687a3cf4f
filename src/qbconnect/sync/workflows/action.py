"""The "Get QuickBooks balance" workflow action: a contact's open balance, overdue amount and open invoices,
answered from the stored invoice balances (balances.py) — no QuickBooks call, whatever the workflow's volume."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.sync.links.customers import customer_ids_for_contact
from qbconnect.sync.workflows import balances, payloads


class ActionRefused(ValueError):
    """The action call is not one the app can answer (the message says why)."""


def contact_of(body: Any) -> tuple[str, str]:
    """(location id, contact id) from HighLevel's action body (``extras.locationId``, ``extras.contactId``;
    a ``data.contactId`` field, when the action is configured with one, wins)."""
    if not isinstance(body, Mapping):
        raise ActionRefused("the body is not a JSON object")
    extras = body.get("extras")
    data = body.get("data")
    extras = extras if isinstance(extras, Mapping) else {}
    data = data if isinstance(data, Mapping) else {}
    location_id = str(extras.get("locationId") or "").strip()
    contact_id = str(data.get("contactId") or extras.get("contactId") or "").strip()
    if not location_id:
        raise ActionRefused("extras.locationId is required")
    if not contact_id:
        raise ActionRefused("the workflow has no contact (extras.contactId)")
    if len(location_id) > 64 or len(contact_id) > 64:
        raise ActionRefused("an id is too long")
    return location_id, contact_id


def balance_answer(
    session: Session, location_id: str, contact_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """The action's response (catalogue.BALANCE.sample_response's shape)."""
    now = now or utcnow()
    customer_ids = customer_ids_for_contact(session, location_id, contact_id)
    balance = balances.customer_balance(session, location_id, customer_ids, now.date())
    return {
        "contactId": contact_id,
        "found": bool(customer_ids),
        "openBalance": payloads.money(balance.open_balance),
        "overdue": payloads.money(balance.overdue),
        "openInvoices": balance.open_invoices,
        "overdueInvoices": balance.overdue_invoices,
        "oldestDueDate": balance.oldest_due_date or "",
        "currency": balance.currency or "",
        "customerIds": customer_ids,
        "asOf": payloads.iso(now),
    }

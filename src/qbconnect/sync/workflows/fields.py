"""The optional contact balance fields: "QuickBooks open balance" and "QuickBooks overdue" on each linked
contact (setting ``workflow_balance_fields``).

Job kind ``contact_balance`` (entity: the CRM contact id). Values come from the stored invoice balances (no
QuickBooks read); the CRM is called only when a value differs from the one last written
(``contact_balance_fields``). The two custom fields are created once per location through the custom-fields
API (found by name first) and their ids kept in the location's state. Jobs are enqueued only when a value
differs, by the places that see invoices change (observe.py) and by the overdue pass (an invoice becoming
overdue changes the overdue amount without any QuickBooks change).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.state import syncing_location_ids
from qbconnect.db.models import ContactBalanceFields, Location, QboInvoiceBalance
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.domain.money import amount
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic
from qbconnect.sync.links.customers import customer_ids_for_contact, linked_contact_id
from qbconnect.sync.workflows import balances, payloads

CONTACT_BALANCE = "contact_balance"
STATE_KEY = "workflow_balance_fields"
OPEN_FIELD = "QuickBooks open balance"
OVERDUE_FIELD = "QuickBooks overdue"
FIELD_TYPE = "MONETORY"  # HighLevel's spelling (CreateCustomFieldsDTO dataType examples)


def enabled(session: Session, location_id: str) -> bool:
    location = session.get(Location, location_id)
    return location is not None and load_settings(location.settings).workflow_balance_fields


def values(session: Session, location_id: str, contact_id: str, today: date) -> tuple[str, str]:
    balance = balances.customer_balance(
        session, location_id, customer_ids_for_contact(session, location_id, contact_id), today
    )
    return payloads.money(balance.open_balance), payloads.money(balance.overdue)


def _written(session: Session, location_id: str, contact_id: str) -> ContactBalanceFields | None:
    return session.execute(
        select(ContactBalanceFields).where(
            ContactBalanceFields.location_id == location_id, ContactBalanceFields.contact_id == contact_id
        )
    ).scalar_one_or_none()


def differs(session: Session, location_id: str, contact_id: str, today: date) -> bool:
    row = _written(session, location_id, contact_id)
    current = values(session, location_id, contact_id, today)
    return row is None or (row.open_balance, row.overdue) != current


def enqueue_changed(session: Session, location_id: str, customer_ids: Iterable[str], *, reason: str) -> int:
    """Queue a field write for the contacts of these customers whose values differ (setting on only)."""
    if not enabled(session, location_id):
        return 0
    today = utcnow().date()
    queued = 0
    for customer_id in sorted(set(customer_ids)):
        contact_id = linked_contact_id(session, location_id, customer_id)
        if contact_id and differs(session, location_id, contact_id, today):
            jobs.enqueue(session, location_id, CONTACT_BALANCE, contact_id, reason)
            queued += 1
    return queued


def refresh_location(session: Session, location_id: str) -> int:
    """The periodic look: contacts whose overdue amount moved because a due date passed."""
    customers = session.execute(
        select(QboInvoiceBalance.customer_id)
        .where(QboInvoiceBalance.location_id == location_id, QboInvoiceBalance.status == balances.OPEN)
        .distinct()
    ).scalars()
    return enqueue_changed(session, location_id, [c for c in customers if c], reason="a QuickBooks due date passed")


def _field_ids(ctx: JobContext) -> tuple[str, str]:
    """The two custom fields' ids: kept in the location's state; found by name, else created (once)."""
    location = ctx.session.get(Location, ctx.location_id)
    assert location is not None
    kept = (location.state or {}).get(STATE_KEY)
    if isinstance(kept, dict) and kept.get("open") and kept.get("overdue"):
        return str(kept["open"]), str(kept["overdue"])
    crm = ctx.crm()
    existing = {str(f.get("name")): str(f.get("id")) for f in crm.contact_custom_fields() if f.get("id")}
    ids: dict[str, str] = {}
    for key, name in (("open", OPEN_FIELD), ("overdue", OVERDUE_FIELD)):
        ids[key] = existing.get(name) or str(crm.create_contact_custom_field(name, FIELD_TYPE).get("id") or "")
        location = ctx.session.get(Location, ctx.location_id)
        assert location is not None
        location.state = {**(location.state or {}), STATE_KEY: {**ids}}  # kept after each create
    if not ids["open"] or not ids["overdue"]:
        raise RuntimeError("HighLevel did not return the custom fields' ids")
    return ids["open"], ids["overdue"]


@register(CONTACT_BALANCE, direction="qbo_to_crm", title="Contact balance fields")
def write_balance_fields(ctx: JobContext) -> Result:
    session, contact_id = ctx.session, ctx.entity_id
    if not enabled(session, ctx.location_id):
        return Result("QuickBooks balance fields are off for this location.", crm_id=contact_id, skipped=True)
    open_balance, overdue = values(session, ctx.location_id, contact_id, utcnow().date())
    ctx.describe(label="QuickBooks balance", amount=amount(open_balance))
    row = _written(session, ctx.location_id, contact_id)
    if row is not None and (row.open_balance, row.overdue) == (open_balance, overdue):
        return Result("QuickBooks balance fields already up to date.", crm_id=contact_id, skipped=True)
    open_id, overdue_id = _field_ids(ctx)
    fields = [{"id": open_id, "field_value": open_balance}, {"id": overdue_id, "field_value": overdue}]
    ctx.crm().update_contact(contact_id, {"customFields": fields})
    if row is None:
        row = ContactBalanceFields(location_id=ctx.location_id, contact_id=contact_id)
        session.add(row)
    row.open_balance, row.overdue, row.written_at = open_balance, overdue, utcnow()
    return Result(f"QuickBooks balance fields: open {open_balance}, overdue {overdue}.", crm_id=contact_id)


@register_periodic("workflow_balance_fields", every_seconds=lambda rt: rt.settings.reconcile_interval_seconds)
def refresh_balance_fields(runtime: Runtime, session: Session) -> None:
    """Due dates pass without any QuickBooks change: the overdue field follows them (stored balances only)."""
    for location_id in syncing_location_ids(session):
        refresh_location(session, location_id)

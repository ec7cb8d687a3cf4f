"""Invoice sync: a sent CRM invoice becomes a QuickBooks invoice and stays in step (docs/invoices.md).

Job kinds:
- ``INVOICE`` (entity = CRM invoice id): re-read the invoice from the CRM and make the QuickBooks invoice
  equal to it — create, sparse update, one Payment per increase of the amount paid, void.
- ``INVOICE_RECONCILE`` (entity ``all``): list the CRM invoices changed since the last pass and queue an
  ``INVOICE`` job for each one whose change the link has not recorded (a lost webhook heals itself).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.clock import as_utc, utcnow
from qbconnect.connections.service import company_facts
from qbconnect.connections.state import active_connection, is_syncing, syncing_location_ids
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Location, QboConnection
from qbconnect.domain.company import TaxMapping
from qbconnect.domain.crm_models import CrmInvoice, CrmTransaction, parse_datetime
from qbconnect.domain.invoice import InvoiceContext, build_qbo_invoice
from qbconnect.domain.invoice_rules import (
    VOID_STATUSES,
    InvoiceLinkState,
    check_exact,
    contact_name,
    content_hash,
    expected,
    first_sighting_decision,
    is_newer,
    label,
    skip_message,
)
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.errors import AuthError
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic
from qbconnect.sync.engine.routing import INVOICE, INVOICE_RECONCILE
from qbconnect.sync.invoices.converge import Convergence
from qbconnect.sync.links.invoices import InvoiceLink, find_invoice, save_invoice
from qbconnect.sync.lookup import resolve_customer, resolve_item, rounding_item

EXEMPT_TAX_KEY = "exempt"  # settings.tax_code_map key for the code of untaxed lines (non-US companies)
RECONCILE_STATE_KEY = "invoice_reconcile"
RECONCILE_LOOKBACK_DAYS = 90  # invoices created earlier than this are not re-listed by the reconciliation
RECONCILE_OVERLAP = timedelta(minutes=5)  # each pass re-reads a little before the cursor (clock skew)
RECONCILE_PAGE = 100


def skipped(summary: str, crm_id: str, qbo_id: str | None = None) -> Result:
    return Result(summary=summary, crm_id=crm_id, qbo_id=qbo_id, skipped=True)


def _connection(ctx: JobContext) -> QboConnection | None:
    connection = active_connection(ctx.session, ctx.location_id)
    if connection is not None and connection.status == "needs_reconnect":
        raise AuthError("QuickBooks needs to be reconnected before invoices can sync.")
    if connection is None or not is_syncing(ctx.session, ctx.location_id):
        return None
    return connection


def tax_mapping(settings: LocationSettings) -> TaxMapping:
    codes = dict(settings.tax_code_map)
    exempt = codes.pop(EXEMPT_TAX_KEY, None)
    return TaxMapping(codes=codes, exempt_code=exempt)


@register(INVOICE, direction="crm_to_qbo", title="Invoice")
def sync_invoice(ctx: JobContext) -> Result:
    crm_id = ctx.entity_id
    location = ctx.session.get(Location, ctx.location_id)
    if location is None:
        return skipped("The location is not installed.", crm_id)
    settings = load_settings(location.settings)
    connection = _connection(ctx)
    if connection is None:
        return skipped("QuickBooks is not connected, so invoices are not synced.", crm_id)
    if not settings.sync_invoices:
        return skipped("Invoice sync is turned off in the settings.", crm_id)
    realm_id = connection.realm_id
    ctx.log = ctx.log.bind(realm_id=realm_id)

    link = find_invoice(ctx.session, ctx.location_id, crm_id)
    if link is not None and not link.belongs_to(realm_id):
        link.start_over(realm_id)  # made for another QuickBooks company
        save_invoice(ctx.session, ctx.location_id, link)
    if link is not None and link.state.skipped:
        return skipped(skip_message(link.state.skipped, label(None, crm_id)), crm_id)

    raw = _crm(ctx).get_invoice(crm_id)
    inv = CrmInvoice.from_api(raw) if raw is not None else None
    name = label(inv, crm_id)
    ctx.describe(**_readable(name, inv))  # a run that fails from here on still reads as this invoice
    if inv is None and (link is None or not link.qbo_id):
        return skipped(f"{name} was deleted in the CRM before it was synced; there is nothing to book.", crm_id)
    if inv is not None and (link is None or (not link.qbo_id and not link.request_id and not link.state.refused)):
        if inv.status == "draft":
            return skipped(f"{name} is still a draft; it syncs once it is sent.", crm_id)
        decision = first_sighting_decision(inv, as_utc(connection.connected_at) or utcnow())
        if decision is not None:
            link = link or InvoiceLink(crm_id=crm_id)
            link.state = InvoiceLinkState(realm_id=realm_id, skipped=decision, crm_updated_at=_iso(inv))
            save_invoice(ctx.session, ctx.location_id, link)
            return skipped(skip_message(decision, name), crm_id)

    qbo = ctx.qbo(realm_id)
    if link is None:
        link = InvoiceLink(crm_id=crm_id)
        save_invoice(ctx.session, ctx.location_id, link)
    link.state.realm_id = realm_id
    run = Convergence(ctx=ctx, qbo=qbo, link=link, name=name)

    if inv is None or inv.status in VOID_STATUSES:
        if inv is not None and not link.qbo_id:
            # voided before QuickBooks had it (late or lost webhooks, or a create whose answer was lost):
            # book it (replaying a stored requestid), then void it, so the record exists once
            run.create(_desired(run, inv, settings, connection), inv.number)
        return _void(run, inv, crm_id)
    return _converge(run, inv, settings, connection)


def _desired(
    run: Convergence, inv: CrmInvoice, settings: LocationSettings, connection: QboConnection
) -> dict[str, Any]:
    """The QuickBooks invoice body for the CRM invoice (customer and items found or created first)."""
    ctx, qbo = run.ctx, run.qbo
    company = company_facts(connection)
    customer_id = resolve_customer(ctx, inv.contact, qbo, currency=inv.currency if company.multicurrency else None)
    item_ids = [resolve_item(ctx, line, qbo, settings) for line in inv.items]
    return build_qbo_invoice(
        inv,
        InvoiceContext(
            customer_id=customer_id,
            item_ids=item_ids,
            company=company,
            tax_mapping=tax_mapping(settings),
            discount_account_id=settings.discount_account_id,
            # non-US: QuickBooks computes VAT itself; a rounding line may be needed to meet the CRM total
            rounding_item_id=None if company.is_us else rounding_item(ctx, qbo, settings),
        ),
    )


def _converge(run: Convergence, inv: CrmInvoice, settings: LocationSettings, connection: QboConnection) -> Result:
    ctx, link = run.ctx, run.link
    company = company_facts(connection)
    desired = _desired(run, inv, settings, connection)
    content = content_hash(desired, inv)
    total, due = expected(inv)
    run.state.crm_updated_at = _iso(inv)
    run.state.crm_status = inv.status
    if link.qbo_id and link.content_hash == content and run.state.pending_payment is None:
        run.save()
        return _result(
            run,
            inv,
            f"{run.name}: QuickBooks invoice {link.qbo_id} already matches (total {total:.2f}, balance {due:.2f}).",
        )

    if not link.qbo_id:
        run.create(desired, inv.number)
    run.update(desired, content)
    run.book_payments(
        inv,
        method_id=_payment_method(ctx, settings, inv),
        deposit_id=settings.deposit_account_id,
        multi=company.multicurrency,
    )
    # exact from QuickBooks' own answers and the payments booked since (no read: docs/invoices.md)
    check_exact(run.current(), total, due, run.name)
    link.content_hash = content
    run.save()
    return _result(run, inv, _summary(run, total, due))


def _void(run: Convergence, inv: CrmInvoice | None, crm_id: str) -> Result:
    link = run.link
    what = "deleted" if inv is None else "voided"
    total, due = expected(inv)
    if inv is not None:
        run.state.crm_updated_at = _iso(inv)
        run.state.crm_status = inv.status
    else:
        run.state.crm_status = "deleted"
    if run.state.voided:
        run.save()
        return _result(
            run, inv, f"{run.name} ({what} in the CRM): QuickBooks invoice {link.qbo_id} is already void.", crm_id
        )
    if not link.qbo_id:
        run.save()
        return Result(
            summary=f"{run.name} was {what} in the CRM before QuickBooks had it; nothing to void.",
            crm_id=crm_id,
            skipped=True,
            label=run.name,
            number=inv.number if inv is not None else None,
        )
    voided = run.void(crm_id)
    check_exact(voided, total, due, run.name)
    link.content_hash = None
    run.save()
    return _result(
        run,
        inv,
        f"{run.name} {what} in the CRM → QuickBooks invoice {link.qbo_id} " + ", ".join(run.actions) + " (total 0.00).",
        crm_id,
    )


def _result(run: Convergence, inv: CrmInvoice | None, summary: str, crm_id: str | None = None) -> Result:
    """The run's answer with the fields that make its sync-log row readable
    ("Invoice #1042 · Kira Garcia · $885.00 → QuickBooks invoice 19")."""
    return Result(
        summary=summary,
        crm_id=inv.id if inv is not None else crm_id,
        qbo_id=run.link.qbo_id,
        **_readable(run.name, inv),
    )


def _readable(name: str, inv: CrmInvoice | None) -> dict[str, Any]:
    contact = inv.contact if inv is not None else None
    return {
        "label": name,
        "number": inv.number if inv is not None else None,
        "customer": contact_name(contact) if contact is not None else None,
        "customer_email": contact.email if contact is not None else None,
        "amount": inv.total if inv is not None else None,
        "currency": inv.currency if inv is not None else None,
        "qbo_type": "Invoice",
    }


def _summary(run: Convergence, total: Any, due: Any) -> str:
    what = ", ".join(run.actions) or "checked, already in step"
    return f"{run.name} → QuickBooks invoice {run.link.qbo_id} {what} (total {total:.2f}, balance {due:.2f})"


def _payment_method(ctx: JobContext, settings: LocationSettings, inv: CrmInvoice) -> str | None:
    """The QuickBooks payment method for the invoice's payments, from ``payment_method_map``: the latest
    CRM transaction's card brand, then its payment method type, then the key ``default``."""
    mapping = {key.lower(): value for key, value in settings.payment_method_map.items()}
    if not mapping or inv.amount_paid <= 0:
        return None
    transactions, _ = _crm(ctx).list_transactions(entity_id=inv.id, limit=10)
    keys: list[str] = []
    for raw in sorted(transactions, key=lambda t: str(t.get("createdAt") or ""), reverse=True)[:1]:
        txn = CrmTransaction.from_api(raw)
        keys += [k.lower() for k in (txn.card_brand, txn.payment_method_type, txn.payment_provider) if k]
    keys.append("default")
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


def _crm(ctx: JobContext) -> CrmClient:
    return ctx.crm()


def _iso(inv: CrmInvoice) -> str | None:
    return inv.updated_at.isoformat() if inv.updated_at else None


# ---- reconciliation ------------------------------------------------------------------------------


@register_periodic("invoice_reconcile", every_seconds=lambda rt: rt.settings.reconcile_interval_seconds)
def enqueue_reconciliation(runtime: Runtime, session: Session) -> None:
    """Queue one reconciliation pass for every location whose invoices sync."""
    for location_id in syncing_location_ids(session):
        location = session.get(Location, location_id)
        if location is None or not load_settings(location.settings).sync_invoices:
            continue
        jobs.enqueue(session, location_id, INVOICE_RECONCILE, "all", "periodic invoice reconciliation")


@register(INVOICE_RECONCILE, direction="internal", title="Invoice reconciliation")
def reconcile_invoices(ctx: JobContext) -> Result:
    """List CRM invoices changed since the cursor and queue those whose change the link has not seen.

    HighLevel's invoice list cannot filter on ``updatedAt``; it lists newest ``createdAt`` first. The pass
    pages through it until a whole page was created before the horizon (the connection time, at most
    ``RECONCILE_LOOKBACK_DAYS`` back), keeps invoices updated after ``cursor - RECONCILE_OVERLAP``, and
    queues an ``INVOICE`` job when the link has not recorded that ``updatedAt``. The cursor (the newest
    ``updatedAt`` seen) is kept in ``Location.state["invoice_reconcile"]``.
    """
    location = ctx.session.get(Location, ctx.location_id)
    connection = _connection(ctx)
    if location is None or connection is None:
        return skipped("QuickBooks is not connected, so invoices are not reconciled.", "all")
    if not load_settings(location.settings).sync_invoices:
        return skipped("Invoice sync is turned off in the settings.", "all")
    connected_at = as_utc(connection.connected_at) or utcnow()
    progress = dict((location.state or {}).get(RECONCILE_STATE_KEY) or {})
    cursor = parse_datetime(progress.get("cursor")) if progress.get("realm_id") == connection.realm_id else None
    since = (cursor or connected_at) - RECONCILE_OVERLAP
    horizon = max(connected_at, utcnow() - timedelta(days=RECONCILE_LOOKBACK_DAYS)) - RECONCILE_OVERLAP

    crm = _crm(ctx)
    seen = queued = 0
    newest = cursor
    offset = 0
    while True:
        page, total = crm.list_invoices(offset=offset, limit=RECONCILE_PAGE)
        for raw in page:
            inv = CrmInvoice.from_api(raw)
            seen += 1
            if inv.updated_at is not None and (newest is None or inv.updated_at > newest):
                newest = inv.updated_at
            if inv.status == "draft" or inv.updated_at is None or inv.updated_at < since:
                continue
            if _needs_sync(ctx, inv):
                jobs.enqueue(ctx.session, ctx.location_id, INVOICE, inv.id, "reconciliation: changed in the CRM")
                queued += 1
        offset += len(page)
        all_old = all((_created(raw) or horizon) < horizon for raw in page)
        if not page or len(page) < RECONCILE_PAGE or all_old or (0 < total <= offset):
            break
        ctx.heartbeat()
    progress.update(
        {
            "realm_id": connection.realm_id,
            "cursor": newest.isoformat() if newest else None,
            "last_pass_at": utcnow().isoformat(),
            "last_seen": seen,
            "last_queued": queued,
        }
    )
    location.state = {**(location.state or {}), RECONCILE_STATE_KEY: progress}
    shown = newest.isoformat(timespec="seconds") if newest else "never"
    return Result(
        summary=f"Invoice reconciliation: {seen} CRM invoices listed, {queued} queued for sync "
        f"(changes up to {shown}).",
    )


def _created(raw: dict[str, Any]) -> datetime | None:
    return parse_datetime(raw.get("createdAt"))


def _needs_sync(ctx: JobContext, inv: CrmInvoice) -> bool:
    link = find_invoice(ctx.session, ctx.location_id, inv.id)
    if link is None:
        return True
    if link.state.skipped:
        return False
    return is_newer(inv.updated_at, link.state.crm_updated_at)

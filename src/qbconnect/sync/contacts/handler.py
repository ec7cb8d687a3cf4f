"""Contacts from QuickBooks: the full import, one customer at a time, and the periodic change sweep.

Job kinds (names in :mod:`qbconnect.sync.engine.routing`):

- ``customer_import`` (entity ``all``): every active QuickBooks customer → a CRM contact
  (:mod:`qbconnect.sync.contacts.importer`). Started by :func:`start_customer_import` — after connecting,
  from the settings page's "Import now", and by the periodic check below until one has completed.
- ``customer`` (entity = QuickBooks customer id; queued by the change query, by a Merge webhook for the
  merged-away customer, and by a webhook too old for the change query): the customer's current state → its
  contact. The state is the object the change query returned when it queued the job (no read), else a
  read by id. Inactive, deleted or merged-away customers leave their contact as it is (a CRM contact may
  hold history worth keeping); only the link is updated — after a merge it names the surviving customer.
- ``qbo_cdc`` (entity ``all``; a QuickBooks webhook schedules it, debounced, and the daily safety sweep):
  QuickBooks' change feed → ``customer`` and ``qbo_payment`` jobs (:mod:`qbconnect.sync.contacts.cdc`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.state import syncing_location_ids
from qbconnect.domain.contact_plan import Action, plan_contact
from qbconnect.domain.customer import normalize_email
from qbconnect.qbo.faults import NotFound
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.cdc import run_sweep, safety_sweep_interval, sweep_due
from qbconnect.sync.contacts.importer import CustomerImport, import_ever_completed, start_customer_import
from qbconnect.sync.contacts.merges import merge_survivor
from qbconnect.sync.contacts.state import CDC_KEY, ContactSetup, read_setup
from qbconnect.sync.contacts.write import write_contact
from qbconnect.sync.engine import changes, jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic
from qbconnect.sync.engine.routing import ALL, CUSTOMER, CUSTOMER_IMPORT, QBO_CDC
from qbconnect.sync.links.customers import load_index, mark_deleted, mark_inactive, record_contact, repoint

log = structlog.get_logger(__name__)

__all__ = ["import_customers", "start_customer_import", "sweep_changes", "sync_customer"]

SWEEP_EVERY_SECONDS = 300.0
CONTACT_LABEL = "Contact"


def _setup(ctx: JobContext) -> ContactSetup:
    setup = read_setup(ctx.session, ctx.location_id)
    if ctx.log is None:
        ctx.log = structlog.get_logger(__name__)
    ctx.log = ctx.log.bind(realm_id=setup.realm_id)
    return setup


def _not_running(setup: ContactSetup, *, needs_import: bool) -> Result | None:
    if not setup.syncing or setup.realm_id is None:
        return Result("The location is not connected to QuickBooks; nothing to do", skipped=True)
    if needs_import and not setup.settings.import_contacts:
        return Result("Importing contacts from QuickBooks is turned off in the settings", skipped=True)
    return None


@register(CUSTOMER_IMPORT, direction="qbo_to_crm", title="Contact import")
def import_customers(ctx: JobContext) -> Result:
    setup = _setup(ctx)
    stop = _not_running(setup, needs_import=True)
    if stop is not None:
        return stop
    assert setup.realm_id is not None
    qbo = ctx.qbo(setup.realm_id)
    crm = ctx.crm()
    return CustomerImport(ctx, setup, qbo, crm, limiter=ctx.runtime.limiter).run()


@register(CUSTOMER, direction="qbo_to_crm", title="Customer")
def sync_customer(ctx: JobContext) -> Result:
    setup = _setup(ctx)
    qbo_id = ctx.entity_id
    # What the change query kept for this run is taken whether or not it is used: a later run reads.
    kept = changes.take(ctx.session, ctx.location_id, setup.realm_id, "Customer", qbo_id)
    stop = _not_running(setup, needs_import=True)
    if stop is not None:
        return stop
    assert setup.realm_id is not None
    customer = kept.object if kept is not None else _read_customer(ctx, setup, qbo_id)
    if customer is None or customer.get("status") == "Deleted":
        return _customer_gone(ctx, setup, qbo_id)

    node = customer.get("PrimaryEmailAddr")
    email = normalize_email(node.get("Address")) if isinstance(node, dict) else None
    index = load_index(ctx.session, ctx.location_id, [qbo_id], [email] if email else [])
    link = index.match(qbo_id, email)
    plan = plan_contact(customer, link, without_email=setup.settings.contacts_without_email, realm_id=setup.realm_id)
    label = f"QuickBooks customer {qbo_id} ({plan.label})"
    linked_id = link.crm_id if link is not None else None
    readable = _readable(plan.label, plan.email)
    ctx.describe(**readable)  # a failed write still names the customer in the sync log
    if plan.action is Action.UNCHANGED:
        return Result(
            f"{label}: no change since the last sync, contact not written",
            crm_id=linked_id,
            qbo_id=qbo_id,
            skipped=True,
            **readable,
        )
    if plan.action is Action.INACTIVE:
        mark_inactive(ctx.session, ctx.location_id, qbo_id=qbo_id, content_hash=plan.content_hash)
        return Result(
            f"{label} is inactive in QuickBooks; its contact is kept as it is",
            crm_id=linked_id,
            qbo_id=qbo_id,
            skipped=True,
            **readable,
        )
    if plan.action is Action.SKIP_NO_EMAIL:
        return Result(
            f"{label} has no email address; customers without email are skipped (see the settings)",
            qbo_id=qbo_id,
            skipped=True,
            **readable,
        )
    if plan.action is Action.SKIP_NO_CONTACT_INFO:
        return Result(
            f"{label} has neither an email address nor a phone number to match a contact by",
            qbo_id=qbo_id,
            skipped=True,
            **readable,
        )
    crm = ctx.crm()
    write = write_contact(crm, plan, tag=setup.settings.contact_tag)
    record_contact(
        ctx.session,
        ctx.location_id,
        contact_id=write.contact_id,
        qbo_id=qbo_id,
        email=plan.email,
        content_hash=plan.content_hash,
        realm_id=setup.realm_id,
        phone=plan.phone if not plan.email else None,
        currency=plan.currency,
    )
    verb = "created" if write.created else "updated"
    tagged = f", tagged {setup.settings.contact_tag}" if write.tag_added else ""
    return Result(
        f"{label} → contact {verb} ({plan.email or plan.phone}{tagged})",
        crm_id=write.contact_id,
        qbo_id=qbo_id,
        **readable,
    )


def _readable(customer: str | None, email: str | None) -> dict[str, Any]:
    """The sync-log row's readable fields: "Contact · Kira Garcia → CRM contact …" (docs/sync-log.md)."""
    return {"label": CONTACT_LABEL, "customer": customer, "customer_email": email, "qbo_type": "Customer"}


def _read_customer(ctx: JobContext, setup: ContactSetup, qbo_id: str) -> dict[str, Any] | None:
    """The customer as QuickBooks has it now (None: gone). A customer a Merge webhook named as merged away
    is gone without asking QuickBooks."""
    if merge_survivor(ctx.session, ctx.location_id, setup.realm_id, qbo_id) is not None:
        return None
    assert setup.realm_id is not None
    try:
        return ctx.qbo(setup.realm_id).read("Customer", qbo_id)
    except NotFound:
        return None


def _customer_gone(ctx: JobContext, setup: ContactSetup, qbo_id: str) -> Result:
    survivor = merge_survivor(ctx.session, ctx.location_id, setup.realm_id, qbo_id)
    if survivor is not None:
        moved = repoint(ctx.session, ctx.location_id, from_qbo_id=qbo_id, to_qbo_id=survivor)
        kept = f"its contact is kept and now linked to customer {survivor}" if moved else "no contact was linked to it"
        return Result(
            f"QuickBooks customer {qbo_id} was merged into customer {survivor}; {kept}",
            crm_id=moved[0] if moved else None,
            qbo_id=survivor,
            **_readable(None, None),
        )
    marked = mark_deleted(ctx.session, ctx.location_id, qbo_id=qbo_id)
    kept = "its contact is kept as it is" if marked else "no contact was linked to it"
    return Result(
        f"QuickBooks customer {qbo_id} no longer exists; {kept}", qbo_id=qbo_id, skipped=True, **_readable(None, None)
    )


@register(QBO_CDC, direction="internal", title="QuickBooks changes")
def sweep_changes(ctx: JobContext) -> Result:
    setup = _setup(ctx)
    stop = _not_running(setup, needs_import=False)
    if stop is not None:
        return stop
    assert setup.realm_id is not None
    qbo = ctx.qbo(setup.realm_id)
    return run_sweep(ctx, setup, qbo)


def _sweep_interval(runtime: Runtime) -> float:
    return min(runtime.settings.reconcile_interval_seconds, SWEEP_EVERY_SECONDS)


@register_periodic("qbo_cdc", every_seconds=_sweep_interval)
def enqueue_change_sweeps(runtime: Runtime, session: Session, *, now: datetime | None = None) -> None:
    """The safety sweep: a change query for each syncing location whose company had none (after a webhook
    or a sweep) for :func:`safety_sweep_interval` — a day by default. Checked every few minutes; the
    check itself reads only our own tables."""
    now = now or utcnow()
    interval = safety_sweep_interval(runtime, session)
    if interval is None:
        log.warning("qbo.sweeps_paused", reason="the monthly QuickBooks read budget is spent")
        return
    for location_id in syncing_location_ids(session):
        setup = read_setup(session, location_id)
        state = setup.state.get(CDC_KEY)
        if sweep_due(
            state if isinstance(state, dict) else {}, setup.realm_id, setup.connected_at, now=now, interval=interval
        ):
            jobs.enqueue(session, location_id, QBO_CDC, ALL, "periodic QuickBooks safety change check")


@register_periodic("customer_import_check", every_seconds=_sweep_interval)
def enqueue_unfinished_imports(runtime: Runtime, session: Session) -> None:
    """A connected location with contact import on whose import never completed gets one (again)."""
    for location_id in syncing_location_ids(session):
        setup = read_setup(session, location_id)
        if setup.settings.import_contacts and not import_ever_completed(setup.state):
            start_customer_import(session, location_id, "the first contact import has not completed yet")

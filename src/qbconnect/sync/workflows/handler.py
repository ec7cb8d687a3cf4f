"""Firing a trigger (job kind ``workflow_trigger``, one job per delivery) and the overdue pass.

A delivery is sent once: it is claimed (``sending``) before the call (the engine commits before every
platform call), marked ``sent`` with HighLevel's answer, and a run that finds it already claimed — the
worker stopped while HighLevel was answering — does not send it again on its own: it says so in the sync log,
whose Retry button sends it deliberately. A call HighLevel refused or never received (429, a connection
that never opened) is released and retried by the engine's backoff. See docs/workflows.md.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.orm import Session

from qbconnect.clock import as_utc, utcnow
from qbconnect.db.models import Location, QboInvoiceBalance, WorkflowEvent
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.domain.money import amount
from qbconnect.errors import ErrorCategory, PermanentError, SyncError, TransientError
from qbconnect.runtime import Runtime
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic
from qbconnect.sync.links.customers import linked_contact_id
from qbconnect.sync.workflows import balances, payloads, store
from qbconnect.sync.workflows.catalogue import CUSTOMER_CREATED, INVOICE_OVERDUE, OVERDUE_STAGES, TRIGGERS

RETRY_REASON = "retry requested from the sync log"  # jobs.retry_activity's reason: a person asked to send again
# A new customer's CRM contact is written by its own job; the trigger waits this long for it at most.
CONTACT_WAIT = timedelta(minutes=10)
CONTACT_WAIT_RETRY_SECONDS = 30.0
_NOT_SENT_CODES = frozenset({"http_429", "rate_budget"})
_NOT_SENT_DETAILS = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
_GONE_CODES = frozenset({"http_404", "http_410"})


def _definitely_not_sent(exc: SyncError) -> bool:
    if exc.category is not ErrorCategory.TRANSIENT:
        return True  # answered with a refusal
    return exc.code in _NOT_SENT_CODES or (exc.code == "network" and exc.detail in _NOT_SENT_DETAILS)


def _readable(event: WorkflowEvent) -> dict[str, object]:
    facts = event.facts or {}
    customer = facts.get("customer") or {}
    invoice = facts.get("invoice") or {}
    payment = facts.get("payment") or {}
    money = invoice.get("balance") if event.trigger_key == INVOICE_OVERDUE else invoice.get("total")
    money = money or payment.get("amount")
    qbo_type = "Invoice" if invoice else "Payment" if payment else "Customer"
    values: dict[str, object] = {
        "label": TRIGGERS[event.trigger_key].name if event.trigger_key in TRIGGERS else event.trigger_key,
        "customer": customer.get("name") or None,
        "customer_email": customer.get("email") or None,
        "number": invoice.get("number") or payment.get("reference") or None,
        "amount": amount(money) if money else None,
        "currency": invoice.get("currency") or payment.get("currency") or None,
        "qbo_type": qbo_type,
    }
    return {key: value for key, value in values.items() if value is not None}


def _qbo_id(event: WorkflowEvent) -> str | None:
    facts = event.facts or {}
    for part in ("invoice", "payment", "customer"):
        node = facts.get(part)
        if isinstance(node, dict) and node.get("id"):
            return str(node["id"])
    return None


@register(store.WORKFLOW_TRIGGER, direction="qbo_to_crm", title="Workflow trigger")
def fire_trigger(ctx: JobContext) -> Result:
    session = ctx.session
    view = store.load_delivery(session, ctx.location_id, ctx.entity_id)
    if view is None:
        return Result(f"Nothing to send: workflow delivery {ctx.entity_id} no longer exists.", skipped=True)
    delivery, event, subscription = view.delivery, view.event, view.subscription
    ctx.describe(**_readable(event))
    qbo_id = _qbo_id(event)
    name = TRIGGERS[event.trigger_key].name if event.trigger_key in TRIGGERS else event.trigger_key
    where = f"workflow {subscription.workflow_id or subscription.trigger_id}"

    if delivery.state == store.SENT:
        return Result(f"{name} already sent to {where}; sent once only.", qbo_id=qbo_id, skipped=True)
    if delivery.state in (store.SENDING, store.UNKNOWN) and ctx.reason != RETRY_REASON:
        store.mark(delivery, store.UNKNOWN, "the worker stopped while HighLevel was answering")
        raise PermanentError(
            f"HighLevel may already have started {where} for this event (the worker stopped while it was "
            "answering). It is not sent again automatically, so the workflow never runs twice; Retry sends it."
        )
    if not subscription.active:
        store.mark(delivery, store.SKIPPED, "the workflow stopped using the trigger")
        return Result(f"{name} not sent: {where} no longer uses this trigger.", qbo_id=qbo_id, skipped=True)
    if event.trigger_key == INVOICE_OVERDUE and not _still_open(session, event):
        store.mark(delivery, store.SKIPPED, "the invoice was paid or voided before the trigger went out")
        return Result(f"{name} not sent: the invoice was paid or voided meanwhile.", qbo_id=qbo_id, skipped=True)

    contact_id = linked_contact_id(session, ctx.location_id, event.qbo_customer_id) if event.qbo_customer_id else None
    if contact_id is None and event.trigger_key == CUSTOMER_CREATED and _waits_for_contact(ctx, event):
        raise TransientError(
            "Waiting for the new customer's CRM contact to be written before starting the workflow.",
            code="waiting_for_contact",
            retry_after=CONTACT_WAIT_RETRY_SECONDS,
        )
    body = payloads.build(
        event.trigger_key,
        event_id=payloads.event_id(ctx.location_id, event.event_key),
        occurred_at=as_utc(event.occurred_at) or utcnow(),
        facts=event.facts or {},
        contact_id=contact_id,
    )
    store.mark(delivery, store.SENDING)
    target_url = subscription.target_url
    try:
        ctx.crm().fire_workflow_trigger(target_url, body)  # the claim above is committed before this call
    except ValueError as exc:
        store.mark(delivery, store.FAILED, str(exc))
        raise PermanentError(f"{name} not sent: {exc}.") from exc
    except SyncError as exc:
        if exc.code in _GONE_CODES:
            store.mark(delivery, store.SKIPPED, exc.message)
            subscription.active = False
            subscription.ended_at = utcnow()
            return Result(
                f"{name} not sent: HighLevel no longer knows {where} (it stopped using the trigger).",
                qbo_id=qbo_id,
                skipped=True,
            )
        if _definitely_not_sent(exc):
            store.mark(delivery, store.PENDING, exc.message)
            raise
        store.mark(delivery, store.UNKNOWN, exc.message)
        raise PermanentError(
            f"HighLevel did not confirm whether {where} started ({exc.message}). It is not sent again "
            "automatically, so the workflow never runs twice; Retry sends it.",
            code=exc.code,
            detail=exc.detail,
        ) from exc
    store.mark(delivery, store.SENT)
    ctx.log.info("workflow.trigger_sent", trigger=event.trigger_key, delivery_id=delivery.id)
    return Result(f"{name} sent to {where}.", crm_id=contact_id, qbo_id=qbo_id)


def _still_open(session: Session, event: WorkflowEvent) -> bool:
    invoice = (event.facts or {}).get("invoice") or {}
    row = balances.invoice_row(session, event.location_id, event.realm_id, str(invoice.get("id") or ""))
    return row is not None and row.status == balances.OPEN


def _waits_for_contact(ctx: JobContext, event: WorkflowEvent) -> bool:
    location = ctx.session.get(Location, ctx.location_id)
    if location is None or not load_settings(location.settings).import_contacts:
        return False
    occurred = as_utc(event.occurred_at) or utcnow()
    return utcnow() - occurred < CONTACT_WAIT


# ---- overdue ------------------------------------------------------------------------------------------------


def overdue_facts(
    row: QboInvoiceBalance, days: int, stage: int, environment: str, company: dict[str, object]
) -> dict[str, object]:
    customer_id = row.customer_id or ""
    return {
        "customer": payloads.customer_facts(
            customer_id, environment, name=row.customer_name or "", email=row.bill_email or ""
        ),
        "invoice": {
            "id": row.invoice_id,
            "number": row.doc_number or "",
            "date": row.txn_date or "",
            "dueDate": row.due_date or "",
            "total": payloads.money(row.total),
            "balance": payloads.money(row.balance),
            "currency": row.currency or "USD",
            "url": payloads.qbo_url(environment, "Invoice", row.invoice_id),
        },
        "overdue": {"stage": str(stage), "daysOverdue": days, "amount": payloads.money(row.balance)},
        "company": company,
    }


def overdue_pass(session: Session, location_id: str, *, today: date, environment: str) -> int:
    """Record the overdue stages invoices of the location reached (reading only stored balances). Each stage
    fires once per invoice; when several are reached at once (an invoice first seen long past due), only the
    latest is delivered and the earlier ones are recorded as passed. Returns the stages delivered."""
    delivered = 0
    company: dict[str, object] | None = None
    for row in balances.overdue_invoices(session, location_id, today, min(OVERDUE_STAGES)):
        days = balances.days_overdue(row.due_date, today)
        keys = {stage: f"invoice_overdue:{row.realm_id}:{row.invoice_id}:{stage}" for stage in OVERDUE_STAGES}
        new = [
            stage
            for stage in OVERDUE_STAGES
            if days >= stage and not store.event_exists(session, location_id, keys[stage])
        ]
        if not new:
            continue
        company = company or store.company_facts(session, location_id, row.realm_id)
        latest = max(new)
        for stage in new:
            store.record_event(
                session,
                location_id,
                INVOICE_OVERDUE,
                keys[stage],
                realm_id=row.realm_id,
                customer_id=row.customer_id,
                facts=overdue_facts(row, days, stage, environment, company),
                deliver=stage == latest,
                reason=f"invoice {days} days overdue",
            )
        delivered += 1
    return delivered


@register_periodic("workflow_overdue", every_seconds=lambda rt: rt.settings.reconcile_interval_seconds)
def find_overdue_invoices(runtime: Runtime, session: Session) -> None:
    """The periodic overdue pass: for every location where a workflow uses the overdue trigger."""
    today = utcnow().date()
    for location_id in store.subscribed_locations(session, INVOICE_OVERDUE):
        overdue_pass(session, location_id, today=today, environment=runtime.settings.qbo_environment)

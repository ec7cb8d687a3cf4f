"""The periodic QuickBooks change sweep (CDC): whatever a webhook missed becomes a job.

One ``GET /cdc?entities=Customer,Payment&changedSince=…`` per location and sweep. The cursor is the
server ``time`` of the previous answer (``Location.state["qbo_cdc"]``), read back with an overlap of
:data:`OVERLAP`; the first sweep starts at the connection time. Customers whose content hash matches
their link are left alone (the overlap reports them again); others become ``customer`` jobs. Payments
become ``qbo_payment`` jobs (handled by the review-request feature), each change once. Intuit looks back
at most 30 days and answers at most 1000 objects per entity: an older cursor, or a full answer, starts
the full customer import instead (cheap: unchanged customers cost no CRM call).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from qbconnect.clock import as_utc, utcnow
from qbconnect.domain.customer import normalize_email
from qbconnect.qbo.client import QboClient
from qbconnect.sync.contacts.importer import start_customer_import
from qbconnect.sync.contacts.state import CDC_KEY, ContactSetup, read_state, write_state
from qbconnect.sync.contacts.write import Action, plan_contact
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.routing import CUSTOMER, QBO_PAYMENT
from qbconnect.sync.links.customers import load_index

CDC_ENTITIES = ("Customer", "Payment")
OVERLAP = timedelta(minutes=5)
MAX_LOOKBACK = timedelta(days=30) - timedelta(hours=1)
CDC_LIMIT = 1000


@dataclass
class SweepCounts:
    customers_queued: int = 0
    customers_unchanged: int = 0
    payments_queued: int = 0
    import_started: str | None = None

    def summary(self, since: datetime) -> str:
        text = (
            f"QuickBooks changes since {since.isoformat(timespec='seconds')}: "
            f"{self.customers_queued} customers to sync ({self.customers_unchanged} unchanged), "
            f"{self.payments_queued} payments to check"
        )
        if self.import_started:
            text += f"; full customer import started ({self.import_started})"
        return text


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _stamp(obj: dict[str, Any]) -> str:
    meta = obj.get("MetaData")
    return str(meta.get("LastUpdatedTime") or "") if isinstance(meta, dict) else ""


def run_sweep(ctx: JobContext, setup: ContactSetup, qbo: QboClient) -> Result:
    session, location_id = ctx.session, ctx.location_id
    state = read_state(session, location_id, CDC_KEY)
    now = utcnow()
    cursor = _parse(state.get("cursor")) or as_utc(setup.connected_at) or now
    since = cursor - OVERLAP
    counts = SweepCounts()
    import_on = setup.settings.import_contacts
    if now - since > MAX_LOOKBACK:
        if import_on:
            counts.import_started = "QuickBooks keeps changes for 30 days only"
            start_customer_import(session, location_id, f"change check: {counts.import_started}")
        write_state(session, location_id, CDC_KEY, {"cursor": now.isoformat(), "last_run_at": now.isoformat()})
        return Result(counts.summary(since))

    changed, server_time = qbo.cdc(list(CDC_ENTITIES), since)
    customers = changed.get("Customer", [])
    payments = changed.get("Payment", [])
    if import_on:
        _queue_customers(ctx, setup, customers, counts)
        if len(customers) >= CDC_LIMIT:
            counts.import_started = "more than 1000 customer changes at once"
            start_customer_import(session, location_id, f"change check: {counts.import_started}")

    raw_recent = state.get("recent")
    seen_before: dict[str, Any] = raw_recent if isinstance(raw_recent, dict) else {}
    recent: dict[str, str] = {}
    for payment in payments:
        payment_id = str(payment.get("Id") or "")
        if not payment_id or payment.get("status") == "Deleted":
            continue
        key, stamp = f"Payment:{payment_id}", _stamp(payment)
        recent[key] = stamp
        if stamp and seen_before.get(key) == stamp:
            continue  # reported again only because of the overlap
        jobs.enqueue(session, location_id, QBO_PAYMENT, payment_id, "QuickBooks change check (payment changed)")
        counts.payments_queued += 1
    if len(payments) >= CDC_LIMIT:
        ctx.log.warning("qbo_cdc.payments_truncated", realm_id=setup.realm_id, count=len(payments))

    write_state(
        session,
        location_id,
        CDC_KEY,
        {
            "cursor": server_time.isoformat(),
            "last_run_at": now.isoformat(),
            "recent": recent,
            "customers_queued": counts.customers_queued,
            "payments_queued": counts.payments_queued,
        },
    )
    return Result(counts.summary(since))


def _queue_customers(
    ctx: JobContext, setup: ContactSetup, customers: list[dict[str, Any]], counts: SweepCounts
) -> None:
    emails = []
    for customer in customers:
        node = customer.get("PrimaryEmailAddr")
        email = normalize_email(node.get("Address")) if isinstance(node, dict) else None
        if email:
            emails.append(email)
    index = load_index(ctx.session, ctx.location_id, [str(c.get("Id")) for c in customers], emails)
    for customer in customers:
        qbo_id = str(customer.get("Id") or "")
        if not qbo_id:
            continue
        if customer.get("status") == "Deleted":
            link = index.by_qbo.get(qbo_id)
            if link is not None and link.qbo_id == qbo_id and not link.deleted:
                jobs.enqueue(ctx.session, ctx.location_id, CUSTOMER, qbo_id, "QuickBooks change check (customer gone)")
                counts.customers_queued += 1
            continue
        node = customer.get("PrimaryEmailAddr")
        email = normalize_email(node.get("Address")) if isinstance(node, dict) else None
        link = index.match(qbo_id, email)
        plan = plan_contact(
            customer, link, without_email=setup.settings.contacts_without_email, realm_id=setup.realm_id
        )
        if plan.action is Action.UNCHANGED:
            counts.customers_unchanged += 1
            continue
        if plan.action in (Action.SKIP_NO_EMAIL, Action.SKIP_NO_CONTACT_INFO):
            continue
        if plan.action is Action.INACTIVE and (link is None or link.qbo_id != qbo_id):
            continue  # never imported: nothing to keep in step
        jobs.enqueue(ctx.session, ctx.location_id, CUSTOMER, qbo_id, "QuickBooks change check (customer changed)")
        counts.customers_queued += 1

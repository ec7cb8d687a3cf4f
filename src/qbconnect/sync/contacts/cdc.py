"""The QuickBooks change query (CDC): one call per company brings every changed customer and payment.

Run as the ``qbo_cdc`` job, which a QuickBooks webhook schedules a short window ahead (the doorbell, see
:mod:`qbconnect.sync.engine.routing`) and the daily safety sweep schedules for a company that had no change
query for :func:`safety_sweep_interval`. One ``GET /cdc?entities=Customer,Payment,Invoice&changedSince=…``
per run. The cursor is the server ``time`` of the previous answer for the same company
(``Location.state["qbo_cdc"]``), read back with an overlap of :data:`OVERLAP`. The first change query after
connecting a company starts at the connection time: customers from before come with the full contact import
that connecting starts, and payments from before are history (never a review request).

The answer holds whole objects: customers whose content hash matches their link are left alone (the overlap
reports them again); others become ``customer`` jobs. Payments become ``qbo_payment`` jobs, each change
once. The objects those jobs act on are kept for them (:mod:`qbconnect.sync.engine.changes`: the customer;
the payment with its customer's invoices and the customer from the same answer), so they read nothing again.
Intuit looks back at most 30 days and answers at most 1000 objects per entity: an older cursor, or a full
customer answer, starts the full customer import instead (cheap: unchanged customers cost no CRM call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.clock import as_utc, utcnow
from qbconnect.connections.read_budget import read_budget_state, sweep_interval_multiplier
from qbconnect.domain.contact_plan import Action, plan_contact
from qbconnect.domain.customer import normalize_email
from qbconnect.qbo.client import QboClient
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.importer import start_customer_import
from qbconnect.sync.contacts.state import CDC_KEY, ContactSetup, read_state, write_state
from qbconnect.sync.engine import changes, jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.routing import CDC_MAX_LOOKBACK, CUSTOMER, QBO_PAYMENT
from qbconnect.sync.links.customers import load_index
from qbconnect.sync.workflows.observe import observe_changes as observe_for_workflows

CDC_ENTITIES = ("Customer", "Payment", "Invoice")
OVERLAP = timedelta(minutes=5)
MAX_LOOKBACK = CDC_MAX_LOOKBACK
CDC_LIMIT = 1000


def safety_sweep_interval(runtime: Runtime, session: Session | None = None) -> timedelta | None:
    """How long a company may go without a change query before the safety sweep runs one; None: no sweep.

    The one place this interval is computed: ``QBCONNECT_QBO_SWEEP_INTERVAL_SECONDS`` (a day by default),
    stretched by the read budget (``connections/read_budget.py``) when ``session`` is given: four times as
    long from 80 % of the monthly budget, no sweep at all once it is spent (webhook-driven change queries
    go on: they are how changes arrive)."""
    base = timedelta(seconds=runtime.settings.qbo_sweep_interval_seconds)
    if session is None:
        return base
    multiplier = sweep_interval_multiplier(read_budget_state(session, runtime.settings))
    if math.isinf(multiplier):
        return None
    return base * multiplier


def sweep_due(
    state: dict[str, Any], realm_id: str | None, connected_at: datetime | None, *, now: datetime, interval: timedelta
) -> bool:
    """Whether the company's safety sweep is due at ``now``: no change query (webhook-driven or not) ran for
    ``interval`` — counted from the connection time when none ran yet for this company."""
    last = _parse(state.get("last_run_at")) if _same_company(state, realm_id) else None
    since = last or as_utc(connected_at)
    return since is None or now - since >= interval


def _same_company(state: dict[str, Any], realm_id: str | None) -> bool:
    """The stored cursor is this company's (states written before the realm was recorded count as this one's)."""
    stored = state.get("realm_id")
    return stored is None or stored == realm_id


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
    assert setup.realm_id is not None
    state = read_state(session, location_id, CDC_KEY)
    now = utcnow()
    cursor = _parse(state.get("cursor")) if _same_company(state, setup.realm_id) else None
    cursor = cursor or as_utc(setup.connected_at) or now
    since = cursor - OVERLAP
    counts = SweepCounts()
    import_on = setup.settings.import_contacts
    if now - since > MAX_LOOKBACK:
        if import_on:
            counts.import_started = "QuickBooks keeps changes for 30 days only"
            start_customer_import(session, location_id, f"change check: {counts.import_started}")
        write_state(
            session,
            location_id,
            CDC_KEY,
            {"realm_id": setup.realm_id, "cursor": now.isoformat(), "last_run_at": now.isoformat()},
        )
        return Result(counts.summary(since))

    changed, server_time = qbo.cdc(list(CDC_ENTITIES), since)
    # Invoice balances and workflow triggers (docs/workflows.md) from the same answer: no read of their own.
    environment = ctx.runtime.settings.qbo_environment
    observe_for_workflows(session, location_id, setup.realm_id, setup.connected_at, changed, environment=environment)
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
    related = _Related(customers, changed.get("Invoice", []))
    for payment in payments:
        payment_id = str(payment.get("Id") or "")
        if not payment_id or payment.get("status") == "Deleted":
            continue
        key, stamp = f"Payment:{payment_id}", _stamp(payment)
        recent[key] = stamp
        if stamp and seen_before.get(key) == stamp:
            continue  # reported again only because of the overlap
        changes.keep(session, location_id, setup.realm_id, "Payment", payment, related.of(payment))
        jobs.enqueue(session, location_id, QBO_PAYMENT, payment_id, "QuickBooks change check (payment changed)")
        counts.payments_queued += 1
    if len(payments) >= CDC_LIMIT:
        ctx.log.warning("qbo_cdc.payments_truncated", realm_id=setup.realm_id, count=len(payments))

    write_state(
        session,
        location_id,
        CDC_KEY,
        {
            "realm_id": setup.realm_id,
            "cursor": server_time.isoformat(),
            "last_run_at": now.isoformat(),
            "recent": recent,
            "customers_queued": counts.customers_queued,
            "payments_queued": counts.payments_queued,
        },
    )
    return Result(counts.summary(since))


class _Related:
    """The objects of one answer a payment's review check needs: its customer and that customer's invoices."""

    def __init__(self, customers: list[dict[str, Any]], invoices: list[dict[str, Any]]) -> None:
        self.customers = {str(c.get("Id")): c for c in customers if c.get("status") != "Deleted"}
        self.invoices: dict[str, list[dict[str, Any]]] = {}
        for invoice in invoices:
            customer_id = _customer_id(invoice)
            if customer_id and invoice.get("status") != "Deleted":
                self.invoices.setdefault(customer_id, []).append(invoice)

    def of(self, payment: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        customer_id = _customer_id(payment)
        if not customer_id:
            return {}
        found: dict[str, list[dict[str, Any]]] = {"Invoice": self.invoices.get(customer_id, [])}
        if customer_id in self.customers:
            found["Customer"] = [self.customers[customer_id]]
        return found


def _customer_id(obj: dict[str, Any]) -> str:
    ref = obj.get("CustomerRef")
    return str(ref.get("value") or "") if isinstance(ref, dict) else ""


def _queue_customers(
    ctx: JobContext, setup: ContactSetup, customers: list[dict[str, Any]], counts: SweepCounts
) -> None:
    assert setup.realm_id is not None
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
                changes.keep(ctx.session, ctx.location_id, setup.realm_id, "Customer", customer)
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
        changes.keep(ctx.session, ctx.location_id, setup.realm_id, "Customer", customer)
        jobs.enqueue(ctx.session, ctx.location_id, CUSTOMER, qbo_id, "QuickBooks change check (customer changed)")
        counts.customers_queued += 1

"""Finding CRM transactions to book: an order's payments (webhooks), and polling the transactions list.

HighLevel sends no webhook for subscription renewals or refunds and drops webhooks that fail, so besides
the ORDER job (OrderCreate / OrderStatusUpdate) a TRANSACTION_POLL job per location lists the CRM's
transactions: new ones since a cursor (``Location.state["transaction_poll"]``, with an overlap) and, for
refunds, every transaction within ``refund_lookback_days``. Both only enqueue TRANSACTION jobs, which
coalesce per transaction id; the link table decides what is still to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qbconnect.clock import as_utc, utcnow
from qbconnect.connections.state import active_connection, is_syncing, syncing_location_ids
from qbconnect.db.models import Location, SyncJob
from qbconnect.domain.crm_models import CrmTransaction, parse_datetime
from qbconnect.domain.location_settings import load
from qbconnect.sync.engine import jobs, routing
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.links import receipts as links

STATE_KEY = "transaction_poll"
POLL_OVERLAP = timedelta(minutes=5)  # clock skew and late writes on HighLevel's side
POLL_ENTITY = "all"
BATCH = 200


def _queue(
    session: Session, location_id: str, transactions: Iterable[CrmTransaction], *, since: datetime | None, why: str
) -> Counter[str]:
    """Enqueue a TRANSACTION job for each transaction that needs one; count them by reason."""
    batch = list(transactions)
    found = links.receipt_links(session, location_id, (t.id for t in batch if t.id))
    counts: Counter[str] = Counter()
    for txn in batch:
        if not txn.id:
            continue
        created = txn.created_at or txn.charged_at
        new = since is None or created is None or created >= since
        reason = links.look_reason(links.ReceiptState.of(found.get(txn.id)), txn, new=new)
        if reason is None:
            continue
        jobs.enqueue(session, location_id, routing.TRANSACTION, txn.id, f"{reason} ({why})"[:255])
        counts[reason] += 1
    return counts


def _not_syncing(ctx: JobContext) -> Result | None:
    location = ctx.session.get(Location, ctx.location_id)
    if location is None or not is_syncing(ctx.session, ctx.location_id):
        return Result("QuickBooks is not connected for this location; nothing was checked.", skipped=True)
    if not load(location.settings).sync_sales_receipts:
        return Result("Sales receipts are turned off in the settings; nothing was checked.", skipped=True)
    return None


def _counts_text(counts: Counter[str]) -> str:
    if not counts:
        return "nothing new"
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


# ---- ORDER: an order's payments ----------------------------------------------------------------


def sync_order(ctx: JobContext) -> Result:
    """The ORDER job (OrderCreate / OrderStatusUpdate): re-read the order, queue its payments that need a look."""
    stop = _not_syncing(ctx)
    if stop is not None:
        return stop
    crm = ctx.crm()
    if crm.get_order(ctx.entity_id) is None:
        gone = f"CRM order {ctx.entity_id} no longer exists; nothing to book."
        return Result(gone, crm_id=ctx.entity_id, skipped=True)
    transactions = [CrmTransaction.from_api(raw) for raw in crm.iter_transactions(entity_id=ctx.entity_id)]
    counts = _queue(
        ctx.session, ctx.location_id, transactions, since=None, why=f"order {ctx.entity_id}, {ctx.reason or 'webhook'}"
    )
    if not transactions:
        summary = f"CRM order {ctx.entity_id} has no payments yet."
    else:
        summary = f"CRM order {ctx.entity_id}: {len(transactions)} payment(s) checked, {_counts_text(counts)}."
    return Result(summary, crm_id=ctx.entity_id)


# ---- TRANSACTION_POLL: the transactions list since the cursor, and recent refunds ---------------


def _cursor(location: Location) -> datetime | None:
    state = (location.state or {}).get(STATE_KEY) or {}
    return parse_datetime(state.get("cursor")) if isinstance(state, dict) else None


def poll_transactions(ctx: JobContext) -> Result:
    """The TRANSACTION_POLL job: queue new CRM transactions since the cursor and changed refunds."""
    stop = _not_syncing(ctx)
    if stop is not None:
        return stop
    location = ctx.session.get(Location, ctx.location_id)
    connection = active_connection(ctx.session, ctx.location_id)
    assert location is not None and connection is not None  # checked by _not_syncing
    settings = load(location.settings)
    started = utcnow()
    # Before the first poll, count payments from the moment QuickBooks was connected.
    cursor = _cursor(location) or as_utc(connection.connected_at) or started
    since = cursor - POLL_OVERLAP
    start = min(since, started - timedelta(days=settings.refund_lookback_days))
    crm = ctx.crm()
    counts: Counter[str] = Counter()
    seen = 0
    batch: list[CrmTransaction] = []
    for raw in crm.iter_transactions(start_at=start):
        batch.append(CrmTransaction.from_api(raw))
        seen += 1
        if len(batch) >= BATCH:
            counts += _queue(ctx.session, ctx.location_id, batch, since=since, why="found by polling")
            batch = []
            ctx.heartbeat()
    counts += _queue(ctx.session, ctx.location_id, batch, since=since, why="found by polling")

    # Move the cursor last, re-reading the row so other writers of Location.state are not overwritten.
    fresh = ctx.session.get(Location, ctx.location_id, populate_existing=True, with_for_update=True)
    assert fresh is not None
    fresh.state = {
        **(fresh.state or {}),
        STATE_KEY: {
            "cursor": max(cursor, started).isoformat(),
            "last_run_at": started.isoformat(),
            "checked": seen,
            "queued": sum(counts.values()),
        },
    }
    ctx.session.flush()
    summary = (
        f"Checked {seen} CRM payment(s) since {start:%Y-%m-%d %H:%M} UTC "
        f"(new since {since:%Y-%m-%d %H:%M} UTC): {_counts_text(counts)}."
    )
    return Result(summary, skipped=False)


# ---- the periodic hook: one poll per location, each at its own interval -------------------------


def enqueue_due_polls(session: Session, *, now: datetime | None = None) -> list[str]:
    """Enqueue a TRANSACTION_POLL job for every syncing location whose ``transaction_poll_minutes`` have
    passed since its last one. Returns the location ids."""
    now = now or utcnow()
    last_runs = dict(
        session.execute(
            select(SyncJob.location_id, func.max(SyncJob.created_at))
            .where(SyncJob.kind == routing.TRANSACTION_POLL)
            .group_by(SyncJob.location_id)
        ).all()
    )
    queued: list[str] = []
    for location_id in syncing_location_ids(session):
        location = session.get(Location, location_id)
        if location is None:
            continue
        settings = load(location.settings)
        if not settings.sync_sales_receipts:
            continue
        last = as_utc(last_runs.get(location.id))
        if last is not None and now - last < timedelta(minutes=settings.transaction_poll_minutes):
            continue
        jobs.enqueue(session, location.id, routing.TRANSACTION_POLL, POLL_ENTITY, "scheduled check of CRM payments")
        queued.append(location.id)
    return queued

"""CRM payments outside invoices → QuickBooks sales receipts (and refund receipts).

Job kinds (``sync/routing.py``):
- ORDER (CRM order id, from OrderCreate / OrderStatusUpdate): queue the order's payments that need a look;
- TRANSACTION (CRM transaction id): book it as one SalesReceipt, then any newly refunded amount as a
  RefundReceipt (``sync/receipt_booking.py``);
- TRANSACTION_POLL (entity ``all``): list CRM transactions since the cursor and recent refunds
  (``sync/receipt_discovery.py``), queued per location every ``transaction_poll_minutes``.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from qbconnect.runtime import Runtime
from qbconnect.sync.engine import routing
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic
from qbconnect.sync.receipts.booking import sync_transaction
from qbconnect.sync.receipts.discovery import enqueue_due_polls, poll_transactions, sync_order


@register(routing.ORDER, direction="crm_to_qbo", title="Order")
def order_job(ctx: JobContext) -> Result:
    return sync_order(ctx)


@register(routing.TRANSACTION, direction="crm_to_qbo", title="Sales receipt")
def transaction_job(ctx: JobContext) -> Result:
    return sync_transaction(ctx)


@register(routing.TRANSACTION_POLL, direction="internal", title="CRM payments check")
def transaction_poll_job(ctx: JobContext) -> Result:
    return poll_transactions(ctx)


def _check_every(runtime: Runtime) -> float:
    """How often the hook looks; each location is polled at its own ``transaction_poll_minutes``."""
    return min(60.0, runtime.settings.sweep_interval_seconds)


@register_periodic("transaction_poll", every_seconds=_check_every)
def schedule_transaction_polls(runtime: Runtime, session: Session) -> None:
    enqueue_due_polls(session)

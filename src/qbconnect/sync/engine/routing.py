"""Which job a platform event asks for. Webhooks are hints: the job reads the current state itself.

An Intuit webhook is a doorbell: for the entities the product acts on (Customer, Payment) it asks for one
change query (``qbo_cdc``) of its company, a short window ahead, so that one call covers every entity changed
in the window (the job table keeps one pending ``qbo_cdc`` per location). See docs/contacts.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from qbconnect.clock import utcnow
from qbconnect.crm.events import CrmEvent
from qbconnect.qbo.webhooks import QboEvent

# Job kinds, one name each.
INVOICE = "invoice"  # CRM invoice id → QBO Invoice (+ Payments, void)
ORDER = "order"  # CRM order id → a sales receipt for each of its transactions
TRANSACTION = "transaction"  # CRM transaction id → QBO SalesReceipt (+ RefundReceipts)
CUSTOMER = "customer"  # QBO customer id → CRM contact
QBO_PAYMENT = "qbo_payment"  # QBO payment id → review request when it pays the first invoice in full
CUSTOMER_IMPORT = "customer_import"  # entity "all": import every QBO customer
INVOICE_RECONCILE = "invoice_reconcile"  # entity "all": list CRM invoices changed since the last pass
TRANSACTION_POLL = "transaction_poll"  # entity "all": list CRM transactions since the cursor (+ refunds)
QBO_CDC = "qbo_cdc"  # entity "all": QBO change data capture since the last pass
ALL = "all"

# Intuit's change query looks back 30 days at most; an hour of margin for clock differences.
CDC_MAX_LOOKBACK = timedelta(days=30) - timedelta(hours=1)

CRM_INVOICE_EVENTS = frozenset(
    {"InvoiceSent", "InvoiceUpdate", "InvoicePartiallyPaid", "InvoicePaid", "InvoiceVoid", "InvoiceDelete"}
)
CRM_ORDER_EVENTS = frozenset({"OrderCreate", "OrderStatusUpdate"})


@dataclass(frozen=True)
class JobRequest:
    kind: str
    entity_id: str
    reason: str
    delay: float = 0.0  # seconds before the job may run


def jobs_for_crm_event(event: CrmEvent) -> list[JobRequest]:
    if not event.entity_id:
        return []
    if event.type in CRM_INVOICE_EVENTS or (event.type == "InvoiceCreate" and event.body.get("status") != "draft"):
        return [JobRequest(INVOICE, event.entity_id, f"{event.type} webhook")]
    if event.type in CRM_ORDER_EVENTS:
        return [JobRequest(ORDER, event.entity_id, f"{event.type} webhook")]
    return []


def jobs_for_qbo_event(
    event: QboEvent, *, debounce_seconds: float = 0.0, now: datetime | None = None
) -> list[JobRequest]:
    """The doorbell: one debounced ``qbo_cdc`` for a Customer change or a Payment create/update.

    Two cases keep a job per entity, which reads the entity by id:
    - the event's change is older than the change query can see (:data:`CDC_MAX_LOOKBACK`: a delivery
      delayed or replayed for a month); a change that old may predate the company's change-query cursor;
    - a customer Merge also asks for the merged-away customer (``deleted_id``): the webhook is the only
      place that names its survivor, and that job repoints the link without reading QuickBooks.
    """
    acts = event.entity == "Customer" or (event.entity == "Payment" and event.operation in ("Create", "Update"))
    if not acts:
        return []
    reason = f"QuickBooks {event.entity} {event.operation} webhook"
    if event.occurred_at is not None and (now or utcnow()) - event.occurred_at > CDC_MAX_LOOKBACK:
        old = f"{reason} (changed more than 30 days ago: read by id)"
        kind = CUSTOMER if event.entity == "Customer" else QBO_PAYMENT
        requests = [JobRequest(kind, event.entity_id, old)]
    else:
        requests = [JobRequest(QBO_CDC, ALL, reason, delay=debounce_seconds)]
    if event.entity == "Customer" and event.deleted_id:
        requests.append(JobRequest(CUSTOMER, event.deleted_id, reason))
    return requests

"""Which job a platform event asks for. Webhooks are hints: the job reads the current state itself."""

from __future__ import annotations

from dataclasses import dataclass

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

CRM_INVOICE_EVENTS = frozenset(
    {"InvoiceSent", "InvoiceUpdate", "InvoicePartiallyPaid", "InvoicePaid", "InvoiceVoid", "InvoiceDelete"}
)
CRM_ORDER_EVENTS = frozenset({"OrderCreate", "OrderStatusUpdate"})


@dataclass(frozen=True)
class JobRequest:
    kind: str
    entity_id: str
    reason: str


def jobs_for_crm_event(event: CrmEvent) -> list[JobRequest]:
    if not event.entity_id:
        return []
    if event.type in CRM_INVOICE_EVENTS or (event.type == "InvoiceCreate" and event.body.get("status") != "draft"):
        return [JobRequest(INVOICE, event.entity_id, f"{event.type} webhook")]
    if event.type in CRM_ORDER_EVENTS:
        return [JobRequest(ORDER, event.entity_id, f"{event.type} webhook")]
    return []


def jobs_for_qbo_event(event: QboEvent) -> list[JobRequest]:
    reason = f"QuickBooks {event.entity} {event.operation} webhook"
    if event.entity == "Customer":
        requests = [JobRequest(CUSTOMER, event.entity_id, reason)]
        if event.deleted_id:
            requests.append(JobRequest(CUSTOMER, event.deleted_id, reason))
        return requests
    if event.entity == "Payment" and event.operation in ("Create", "Update"):
        return [JobRequest(QBO_PAYMENT, event.entity_id, reason)]
    return []

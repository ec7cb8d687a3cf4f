"""Where the product sees QuickBooks change, the workflow events are recorded (no QuickBooks read of their own).

- :func:`observe_changes`: the objects of a change query (sync/contacts/cdc.py): invoices update the stored
  balances and an invoice newly paid in full is an "invoice paid" event; each new payment is a "payment
  received" event; each customer created after the connection is a "customer created" event.
- :func:`observe_invoice_write`: the invoice as the product's own write left it (sync/invoices/converge.py).

History is not news: a payment or customer created before QuickBooks was connected, or an invoice first seen
already paid that was created before the connection, records nothing. Every event is recorded once per
location (its key), so an object reported again (an overlapping change query, a redelivered webhook, a
write and the change query that later reports it) delivers nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.clock import as_utc
from qbconnect.domain.qbo_models import QboInvoice, QboPayment
from qbconnect.sync.workflows import balances, fields, payloads
from qbconnect.sync.workflows.catalogue import CUSTOMER_CREATED, INVOICE_PAID, PAYMENT_RECEIVED
from qbconnect.sync.workflows.store import company_facts, record_event

HISTORY_MARGIN = timedelta(minutes=10)  # clock differences between QuickBooks and us


def _created(obj: Mapping[str, Any]) -> datetime | None:
    meta = obj.get("MetaData")
    value = meta.get("CreateTime") if isinstance(meta, Mapping) else None
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(moment) if moment.tzinfo is not None else None


def _is_new(obj: Mapping[str, Any], connected_at: datetime | None) -> bool:
    created = _created(obj)
    since = as_utc(connected_at)
    return created is not None and since is not None and created >= since - HISTORY_MARGIN


def _customer_id(obj: Mapping[str, Any]) -> str:
    ref = obj.get("CustomerRef")
    return str(ref.get("value") or "") if isinstance(ref, Mapping) else ""


def _ref_name(obj: Mapping[str, Any]) -> str:
    ref = obj.get("CustomerRef")
    return str(ref.get("name") or "").strip() if isinstance(ref, Mapping) else ""


def _phone(customer: Mapping[str, Any] | None) -> str:
    node = customer.get("PrimaryPhone") if customer is not None else None
    return str(node.get("FreeFormNumber") or "").strip() if isinstance(node, Mapping) else ""


class Observer:
    """One location's view while recording events (its company and QuickBooks environment)."""

    def __init__(self, session: Session, location_id: str, realm_id: str, environment: str, reason: str) -> None:
        self.session = session
        self.location_id = location_id
        self.realm_id = realm_id
        self.environment = environment
        self.reason = reason
        self.company = company_facts(session, location_id, realm_id)
        self.changed_customers: set[str] = set()

    def _customer(
        self, customer_id: str, customers: Mapping[str, Mapping[str, Any]], *, name: str = "", email: str = ""
    ) -> dict[str, Any]:
        return payloads.customer_facts(
            customer_id, self.environment, customers.get(customer_id), name=name, email=email
        )

    def invoice(
        self,
        seen: balances.InvoiceSeen,
        obj: Mapping[str, Any],
        customers: Mapping[str, Mapping[str, Any]],
        *,
        new: bool,
    ) -> None:
        transition = balances.observe(self.session, self.location_id, self.realm_id, seen)
        if transition is None:
            return
        if seen.customer_id:
            self.changed_customers.add(seen.customer_id)
        newly_paid = transition.after == balances.PAID and transition.before != balances.PAID
        if not newly_paid or not (transition.before == balances.OPEN or new):
            return
        customer_id = seen.customer_id or ""
        facts = {
            "customer": self._customer(
                customer_id, customers, name=seen.customer_name or "", email=seen.bill_email or ""
            ),
            "invoice": payloads.invoice_facts(obj, self.environment),
            "company": self.company,
            "contact_phone": _phone(customers.get(customer_id)),
        }
        record_event(
            self.session,
            self.location_id,
            INVOICE_PAID,
            f"invoice_paid:{self.realm_id}:{seen.invoice_id}",
            realm_id=self.realm_id,
            customer_id=customer_id or None,
            facts=facts,
            reason=self.reason,
        )

    def payment(
        self, payment: Mapping[str, Any], customers: Mapping[str, Mapping[str, Any]], invoice_ids: list[str]
    ) -> None:
        payment_id = str(payment.get("Id") or "")
        customer_id = _customer_id(payment)
        facts = {
            "customer": self._customer(customer_id, customers, name=_ref_name(payment)),
            "payment": payloads.payment_facts(payment, self.environment, invoice_ids),
            "company": self.company,
            "contact_phone": _phone(customers.get(customer_id)),
        }
        record_event(
            self.session,
            self.location_id,
            PAYMENT_RECEIVED,
            f"payment_received:{self.realm_id}:{payment_id}",
            realm_id=self.realm_id,
            customer_id=customer_id or None,
            facts=facts,
            reason=self.reason,
        )

    def customer(self, customer: Mapping[str, Any]) -> None:
        customer_id = str(customer.get("Id") or "")
        created = _created(customer)
        facts = {
            "customer": payloads.new_customer_facts(
                customer, self.environment, payloads.iso(created) if created is not None else ""
            ),
            "company": self.company,
            "contact_phone": _phone(customer),
        }
        record_event(
            self.session,
            self.location_id,
            CUSTOMER_CREATED,
            f"customer_created:{self.realm_id}:{customer_id}",
            realm_id=self.realm_id,
            customer_id=customer_id,
            facts=facts,
            reason=self.reason,
        )


def observe_changes(
    session: Session,
    location_id: str,
    realm_id: str,
    connected_at: datetime | None,
    changed: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    environment: str,
) -> set[str]:
    """Record what a change query's answer means for the workflows. Returns the QuickBooks customers whose
    invoices changed (their contacts' balance fields may need writing)."""
    observer = Observer(session, location_id, realm_id, environment, "QuickBooks change check")
    live = {
        str(c.get("Id")): c
        for c in changed.get("Customer", [])
        if c.get("Id") is not None and c.get("status") != "Deleted"
    }
    for obj in changed.get("Invoice", []):
        if not obj.get("Id"):
            continue
        observer.invoice(balances.InvoiceSeen.from_object(obj), obj, live, new=_is_new(obj, connected_at))
    for payment in changed.get("Payment", []):
        if payment.get("Id") and payment.get("status") != "Deleted" and _is_new(payment, connected_at):
            observer.payment(payment, live, list(QboPayment.from_api(payment).invoice_ids))
    for customer in live.values():
        if _is_new(customer, connected_at):
            observer.customer(customer)
    fields.enqueue_changed(session, location_id, observer.changed_customers, reason="QuickBooks invoices changed")
    return observer.changed_customers


def observe_invoice_write(
    session: Session,
    location_id: str,
    realm_id: str,
    invoice: QboInvoice,
    *,
    voided: bool,
    environment: str,
) -> set[str]:
    """Record the invoice as the product's own write left it (an invoice the product created is new)."""
    observer = Observer(session, location_id, realm_id, environment, "invoice synced to QuickBooks")
    seen = balances.InvoiceSeen.from_invoice(invoice, voided=voided)
    obj = {**invoice.raw, "Balance": str(invoice.balance), "TotalAmt": str(invoice.total)}
    observer.invoice(seen, obj, {}, new=True)
    fields.enqueue_changed(session, location_id, observer.changed_customers, reason="QuickBooks invoice changed")
    return observer.changed_customers

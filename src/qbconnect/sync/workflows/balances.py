"""Each QuickBooks invoice as the product last saw it, and the per-customer balances read from them.

Fed by what the product already sees, never by a read of its own: the answers to its own invoice writes
(create, update, payment, void: sync/invoices/converge.py) and the Invoice objects of every change query
(sync/contacts/cdc.py). Read by the balance action, the overdue pass and the contact balance fields.
An object older than the stored one (by ``MetaData.LastUpdatedTime``) is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.db.models import QboInvoiceBalance
from qbconnect.domain.money import amount, cents
from qbconnect.domain.qbo_models import QboInvoice

OPEN, PAID, VOIDED, DELETED = "open", "paid", "voided", "deleted"


@dataclass(frozen=True)
class InvoiceSeen:
    """One observation of a QuickBooks invoice."""

    invoice_id: str
    customer_id: str | None
    customer_name: str | None
    bill_email: str | None
    doc_number: str | None
    currency: str | None
    total: Decimal
    balance: Decimal
    txn_date: str | None
    due_date: str | None
    status: str
    stamp: str | None  # MetaData.LastUpdatedTime, when the object carries it

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> InvoiceSeen:
        """From a QuickBooks Invoice object (a change query's, or a write's answer)."""
        invoice = QboInvoice.from_api(obj)
        meta = obj.get("MetaData")
        stamp = str(meta.get("LastUpdatedTime") or "") or None if isinstance(meta, Mapping) else None
        deleted = obj.get("status") == "Deleted"
        return cls.from_invoice(invoice, deleted=deleted, stamp=stamp)

    @classmethod
    def from_invoice(
        cls, invoice: QboInvoice, *, voided: bool = False, deleted: bool = False, stamp: str | None = None
    ) -> InvoiceSeen:
        return cls(
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            customer_name=_ref_name(invoice.raw.get("CustomerRef")),
            bill_email=(invoice.bill_email or "").strip().lower() or None,
            doc_number=invoice.doc_number,
            currency=invoice.currency,
            total=cents(invoice.total),
            balance=cents(invoice.balance),
            txn_date=invoice.txn_date,
            due_date=invoice.due_date,
            status=status_of(invoice, voided=voided, deleted=deleted),
            stamp=stamp,
        )


def _ref_name(node: Any) -> str | None:
    return str(node.get("name") or "").strip() or None if isinstance(node, Mapping) else None


def status_of(invoice: QboInvoice, *, voided: bool = False, deleted: bool = False) -> str:
    if deleted:
        return DELETED
    if voided or (invoice.total == 0 and (invoice.private_note or "").startswith("Voided")):
        return VOIDED
    if invoice.balance > 0:
        return OPEN
    return PAID if invoice.total > 0 else VOIDED


@dataclass(frozen=True)
class Transition:
    """What one observation changed: the status before (None: never seen) and after."""

    before: str | None
    after: str
    row: QboInvoiceBalance


def observe(session: Session, location_id: str, realm_id: str, seen: InvoiceSeen) -> Transition | None:
    """Store the observation. None when it is older than what is stored (nothing changed)."""
    params = {"location": location_id, "realm": realm_id, "invoice": seen.invoice_id}
    row = session.execute(_OBSERVED, params).scalar_one_or_none()
    before: str | None = None
    if row is None:
        row = QboInvoiceBalance(location_id=location_id, realm_id=realm_id, invoice_id=seen.invoice_id)
        session.add(row)
    else:
        if seen.stamp and row.qbo_updated and seen.stamp < row.qbo_updated:
            return None
        before = row.status
    row.customer_id = seen.customer_id or row.customer_id
    row.customer_name = seen.customer_name or row.customer_name
    row.bill_email = seen.bill_email or row.bill_email
    row.doc_number = seen.doc_number
    row.currency = seen.currency
    if seen.status != DELETED:  # a deleted invoice keeps its last amounts; its status says it is gone
        row.total = seen.total
        row.balance = seen.balance
        row.txn_date = seen.txn_date
        row.due_date = seen.due_date
    row.status = seen.status
    row.qbo_updated = seen.stamp or row.qbo_updated
    row.updated_at = utcnow()
    session.flush()
    return Transition(before=before, after=seen.status, row=row)


# Built once: every invoice write and change read observes its invoices.
_OBSERVED = select(QboInvoiceBalance).where(
    QboInvoiceBalance.location_id == bindparam("location"),
    QboInvoiceBalance.realm_id == bindparam("realm"),
    QboInvoiceBalance.invoice_id == bindparam("invoice"),
)


def days_overdue(due_date: str | None, today: date) -> int:
    """Whole days past the due date (UTC calendar days); 0 when not yet due or no due date."""
    if not due_date:
        return 0
    try:
        due = date.fromisoformat(due_date[:10])
    except ValueError:
        return 0
    return max(0, (today - due).days)


@dataclass(frozen=True)
class Balance:
    """A customer's balance as the product knows it."""

    open_balance: Decimal
    overdue: Decimal
    open_invoices: int
    overdue_invoices: int
    oldest_due_date: str | None
    currency: str | None


def customer_balance(session: Session, location_id: str, customer_ids: Iterable[str], today: date) -> Balance:
    ids = sorted({customer_id for customer_id in customer_ids if customer_id})
    rows = (
        list(
            session.execute(
                select(QboInvoiceBalance).where(
                    QboInvoiceBalance.location_id == location_id,
                    QboInvoiceBalance.customer_id.in_(ids),
                    QboInvoiceBalance.status == OPEN,
                )
            ).scalars()
        )
        if ids
        else []
    )
    open_balance = sum((amount(row.balance) for row in rows), Decimal(0))
    overdue_rows = [row for row in rows if days_overdue(row.due_date, today) > 0]
    overdue = sum((amount(row.balance) for row in overdue_rows), Decimal(0))
    due_dates = sorted(row.due_date for row in overdue_rows if row.due_date)
    currencies = {row.currency for row in rows if row.currency}
    return Balance(
        open_balance=cents(open_balance),
        overdue=cents(overdue),
        open_invoices=len(rows),
        overdue_invoices=len(overdue_rows),
        oldest_due_date=due_dates[0] if due_dates else None,
        currency=currencies.pop() if len(currencies) == 1 else None,
    )


def overdue_invoices(session: Session, location_id: str, today: date, min_days: int) -> list[QboInvoiceBalance]:
    """Open invoices of the location at least ``min_days`` past due."""
    cutoff = date.fromordinal(today.toordinal() - min_days).isoformat()
    return list(
        session.execute(
            select(QboInvoiceBalance)
            .where(
                QboInvoiceBalance.location_id == location_id,
                QboInvoiceBalance.status == OPEN,
                QboInvoiceBalance.due_date.is_not(None),
                QboInvoiceBalance.due_date <= cutoff,
            )
            .order_by(QboInvoiceBalance.id)
        ).scalars()
    )


def customers_with_overdue(session: Session, location_id: str, today: date) -> set[str]:
    return {row.customer_id for row in overdue_invoices(session, location_id, today, 1) if row.customer_id}


def invoice_row(session: Session, location_id: str, realm_id: str, invoice_id: str) -> QboInvoiceBalance | None:
    return session.execute(
        select(QboInvoiceBalance).where(
            QboInvoiceBalance.location_id == location_id,
            QboInvoiceBalance.realm_id == realm_id,
            QboInvoiceBalance.invoice_id == invoice_id,
        )
    ).scalar_one_or_none()

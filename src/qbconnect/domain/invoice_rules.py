"""The invoice sync's decisions that need no I/O: which invoices are synced, what a run must do, the
exactness check, request ids, and the state kept in the invoice's link row.

Which invoices sync ("sent after connecting"). The CRM records no send time, so the decision is taken
once, at the first run that sees the invoice in a non-draft state, and kept in the link row:
- created at or after the moment QuickBooks was connected → synced (it can only have been sent since);
- created before, but first seen still unpaid ``sent`` and last changed after connecting → synced
  (a draft prepared earlier and sent since);
- otherwise → skipped for good as an invoice that already existed ("existing invoices are not synced").
An invoice first seen already voided (its webhooks were late or lost) is booked and voided, so every
synced CRM invoice has exactly one QuickBooks invoice and the voided one stays on record.
CRM times have millisecond precision; the connection time is compared at the same precision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain import jsonutil
from qbconnect.domain.crm_models import CrmContactDetails, CrmInvoice
from qbconnect.domain.invoice import expected_totals
from qbconnect.domain.money import amount as money
from qbconnect.domain.money import round_money
from qbconnect.domain.qbo_models import QboInvoice, QboPayment
from qbconnect.errors import PermanentError

VOID_STATUSES = frozenset({"void", "delete", "deleted"})
SYNCED_LIST_STATUSES = ("sent", "partially_paid", "paid", "void")

# Link.data["skipped"] codes: a decision that stays (later events are skipped the same way).
SKIP_BEFORE_CONNECTION = "before_connection"


def label(inv: CrmInvoice | None, crm_id: str) -> str:
    """How the sync log names a CRM invoice: ``Invoice #19`` (or its id when it has no number)."""
    if inv is not None and inv.number:
        return f"Invoice #{inv.number}"
    return f"Invoice {crm_id}"


def contact_name(contact: CrmContactDetails) -> str | None:
    """How the sync log names a CRM contact: its name, else first and last name, else its company, else
    its email (``Kira Garcia``)."""
    full = " ".join(part.strip() for part in (contact.first_name, contact.last_name) if part and part.strip())
    for candidate in (contact.name, full, contact.company_name, contact.email):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def first_sighting_decision(inv: CrmInvoice, connected_at: datetime) -> str | None:
    """At the first non-draft sighting: None to sync the invoice, else the skip code to keep."""
    since = _ms(connected_at)
    created = inv.created_at or inv.updated_at
    if created is None or created >= since:
        return None
    if inv.status == "sent" and inv.amount_paid == 0 and inv.updated_at is not None and inv.updated_at >= since:
        return None
    return SKIP_BEFORE_CONNECTION


def skip_message(code: str, name: str) -> str:
    if code == SKIP_BEFORE_CONNECTION:
        return f"{name} was sent before QuickBooks was connected; invoices that already existed are not synced."
    return f"{name} is not synced ({code})."


def content_hash(desired: Mapping[str, Any], inv: CrmInvoice) -> str:
    """What the last complete run made QuickBooks equal to: the invoice body, the amount paid, the status."""
    payload = {"invoice": desired, "paid": round_money(inv.amount_paid, inv.currency), "status": inv.status}
    return hashlib.sha256(jsonutil.dumps(payload)).hexdigest()


def check_exact(qbo_invoice: QboInvoice, total: Decimal, due: Decimal, name: str) -> None:
    """Fail the run when QuickBooks does not show the CRM's total and amount due to the cent."""
    problems = []
    if qbo_invoice.total != total:
        problems.append(f"QuickBooks total {qbo_invoice.total:.2f} but CRM total {total:.2f}")
    if qbo_invoice.balance != due:
        problems.append(f"QuickBooks balance {qbo_invoice.balance:.2f} but CRM amount due {due:.2f}")
    if problems:
        raise PermanentError(
            f"{name} does not match QuickBooks invoice {qbo_invoice.id}: " + "; ".join(problems) + ".",
            code="mismatch",
        )


def expected(inv: CrmInvoice | None) -> tuple[Decimal, Decimal]:
    """(TotalAmt, Balance) QuickBooks must show; a deleted invoice (``None``) is voided: zeros."""
    if inv is None:
        return Decimal("0.00"), Decimal("0.00")
    return expected_totals(inv)


# ---- the invoice link's data --------------------------------------------------------------------


@dataclass
class LinkedPayment:
    """One QuickBooks Payment the product booked on the invoice (a ``Link.data["payments"]`` entry)."""

    id: str
    amount: Decimal
    paid_to_date: str  # the CRM's amount paid it brought QuickBooks to ("50.00")
    sync_token: str | None = None  # from QuickBooks' answer to our last write of it (None: an older version's)
    voided: bool = False

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> LinkedPayment:
        token = data.get("sync_token")
        return cls(
            id=str(data.get("id") or ""),
            amount=money(data.get("amount")),
            paid_to_date=str(data.get("paid_to_date") or ""),
            sync_token=str(token) if token not in (None, "") else None,
            voided=bool(data.get("voided", False)),
        )

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "amount": f"{self.amount:.2f}", "paid_to_date": self.paid_to_date}
        if self.sync_token is not None:
            data["sync_token"] = self.sync_token
        if self.voided:
            data["voided"] = True
        return data


@dataclass
class InvoiceLinkState:
    """``Link.data`` of an invoice link, typed. The QuickBooks snapshot is stored as JSON text so its
    amounts stay exact ``Decimal``s.

    The snapshot is QuickBooks' own last answer about the invoice (a create, update or void answers with
    the whole invoice; a read happens only on the exception path). Writes of ours that change the invoice
    without answering with it, our payments and their voids, are counted since that answer:
    ``applied_since`` (the amount they took off the balance) and ``touches_since`` (each raised the
    invoice's SyncToken by one). :func:`known_invoice` is the invoice as the product knows it now.

    ``refused`` counts requests QuickBooks refused with a fault (they created nothing); it is part of every
    new requestid (:func:`request_parts`), so the request re-planned after a fix is a new request, never a
    replay of the refused one."""

    realm_id: str | None = None
    skipped: str | None = None
    snapshot: dict[str, Any] | None = None  # QuickBooks' last answer about the invoice
    payments: list[LinkedPayment] = field(default_factory=list)
    pending_payment: dict[str, Any] | None = None  # {"request_id", "body" (JSON text), "paid_to_date"}
    voided: bool = False
    crm_updated_at: str | None = None
    crm_status: str | None = None
    applied_since: Decimal = Decimal(0)
    touches_since: int = 0
    refused: int = 0

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> InvoiceLinkState:
        data = data or {}
        snapshot = data.get("snapshot")
        return cls(
            realm_id=data.get("realm_id"),
            skipped=data.get("skipped"),
            snapshot=jsonutil.loads(snapshot) if isinstance(snapshot, str) else None,
            payments=[LinkedPayment.load(p) for p in data.get("payments") or [] if isinstance(p, Mapping)],
            pending_payment=data.get("pending_payment"),
            voided=bool(data.get("voided", False)),
            crm_updated_at=data.get("crm_updated_at"),
            crm_status=data.get("crm_status"),
            applied_since=money(data.get("applied_since")),
            touches_since=int(data.get("touches_since") or 0),
            refused=int(data.get("refused") or 0),
        )

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "realm_id": self.realm_id,
            "payments": [payment.dump() for payment in self.payments],
            "voided": self.voided,
        }
        if self.skipped:
            data["skipped"] = self.skipped
        if self.snapshot is not None:
            data["snapshot"] = jsonutil.dumps(self.snapshot).decode("utf-8")
        if self.pending_payment is not None:
            data["pending_payment"] = self.pending_payment
        if self.crm_updated_at:
            data["crm_updated_at"] = self.crm_updated_at
        if self.crm_status:
            data["crm_status"] = self.crm_status
        if self.applied_since:
            data["applied_since"] = f"{self.applied_since:.2f}"
        if self.touches_since:
            data["touches_since"] = self.touches_since
        if self.refused:
            data["refused"] = self.refused
        return data

    def remember(self, answer: Mapping[str, Any]) -> QboInvoice:
        """QuickBooks answered with the whole invoice: that answer is what the product knows from now on."""
        self.snapshot = dict(answer)
        self.applied_since = Decimal(0)
        self.touches_since = 0
        return QboInvoice.from_api(answer)

    def payment_applied(self, payment: QboPayment, invoice_id: str) -> None:
        """QuickBooks answered the create of our ``payment`` on invoice ``invoice_id``. A payment the snapshot
        already lists (that answer came after it: a stale-token read before a lost answer was replayed)
        moved nothing the snapshot does not show."""
        if self.snapshot is None or invoice_id not in payment.invoice_ids:
            return
        if payment.id in QboInvoice.from_api(self.snapshot).payment_ids:
            return
        self.applied_since += payment.total
        self.touches_since += 1

    def payment_voided(self, payment: LinkedPayment) -> None:
        """QuickBooks answered the void of our ``payment``: it no longer pays the invoice."""
        if self.snapshot is None:
            return
        self.applied_since -= payment.amount
        self.touches_since += 1

    def booked(self) -> Decimal:
        """What the product booked as paid on the invoice: its payments that are not voided."""
        return sum((p.amount for p in self.payments if not p.voided), Decimal(0))


def known_invoice(state: InvoiceLinkState) -> QboInvoice | None:
    """The QuickBooks invoice as the product knows it now, without a call: QuickBooks' last answer, with the
    Balance and SyncToken our payments and voids since then moved it to (QuickBooks raises an invoice's
    SyncToken whenever a payment applied to it is created or voided). None when no answer is kept."""
    if state.snapshot is None:
        return None
    answer = QboInvoice.from_api(state.snapshot)
    if not state.touches_since and not state.applied_since:
        return answer
    token = answer.sync_token
    if token is not None and token.isdigit():
        token = str(int(token) + state.touches_since)
    return replace(answer, balance=answer.balance - state.applied_since, sync_token=token)


def request_parts(state: InvoiceLinkState) -> tuple[int, ...]:
    """What a requestid adds after its own parts: the count of refused requests, once there is one (so the
    requestids of a link that never had a refusal stay what they always were)."""
    return (state.refused,) if state.refused else ()


def is_newer(updated_at: datetime | None, recorded: str | None) -> bool:
    """Reconciliation: does the CRM show a change the link has not recorded?"""
    if updated_at is None:
        return False
    if not recorded:
        return True
    try:
        seen = datetime.fromisoformat(recorded)
    except ValueError:
        return True
    return updated_at > seen

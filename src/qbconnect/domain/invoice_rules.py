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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain import jsonutil
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.invoice import expected_totals
from qbconnect.domain.money import amount as money
from qbconnect.domain.money import round_money
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


def check_exact(qbo_invoice: Mapping[str, Any], total: Decimal, due: Decimal, name: str) -> None:
    """Fail the run when QuickBooks does not show the CRM's total and amount due to the cent."""
    qbo_total = money(qbo_invoice.get("TotalAmt"))
    qbo_balance = money(qbo_invoice.get("Balance"))
    problems = []
    if qbo_total != total:
        problems.append(f"QuickBooks total {qbo_total:.2f} but CRM total {total:.2f}")
    if qbo_balance != due:
        problems.append(f"QuickBooks balance {qbo_balance:.2f} but CRM amount due {due:.2f}")
    if problems:
        raise PermanentError(
            f"{name} does not match QuickBooks invoice {qbo_invoice.get('Id')}: " + "; ".join(problems) + ".",
            code="mismatch",
        )


def expected(inv: CrmInvoice | None) -> tuple[Decimal, Decimal]:
    """(TotalAmt, Balance) QuickBooks must show; a deleted invoice (``None``) is voided: zeros."""
    if inv is None:
        return Decimal("0.00"), Decimal("0.00")
    return expected_totals(inv)


# ---- the invoice link's data --------------------------------------------------------------------


@dataclass
class InvoiceLinkState:
    """``Link.data`` of an invoice link, typed. The QuickBooks snapshot is stored as JSON text so its
    amounts stay exact ``Decimal``s."""

    realm_id: str | None = None
    skipped: str | None = None
    snapshot: dict[str, Any] | None = None  # the QuickBooks invoice as last written or read
    payments: list[dict[str, str]] | None = None  # [{"id", "amount", "paid_to_date"}]
    pending_payment: dict[str, Any] | None = None  # {"request_id", "body" (JSON text), "paid_to_date"}
    voided: bool = False
    crm_updated_at: str | None = None
    crm_status: str | None = None

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> InvoiceLinkState:
        data = data or {}
        snapshot = data.get("snapshot")
        return cls(
            realm_id=data.get("realm_id"),
            skipped=data.get("skipped"),
            snapshot=jsonutil.loads(snapshot) if isinstance(snapshot, str) else None,
            payments=list(data.get("payments") or []),
            pending_payment=data.get("pending_payment"),
            voided=bool(data.get("voided", False)),
            crm_updated_at=data.get("crm_updated_at"),
            crm_status=data.get("crm_status"),
        )

    def dump(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "realm_id": self.realm_id,
            "payments": list(self.payments or []),
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
        return data


def booked_payments(snapshot: Mapping[str, Any]) -> Decimal:
    """What QuickBooks holds as paid on the invoice: TotalAmt - Balance."""
    return money(snapshot.get("TotalAmt")) - money(snapshot.get("Balance"))


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

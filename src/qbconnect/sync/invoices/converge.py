"""Make one QuickBooks invoice equal to its CRM invoice: create, sparse update, payments, void.

Every write is followed by saving the link (and a checkpoint), so a later failure in the same run never
loses what QuickBooks already holds; every create carries a ``requestid`` that was committed before the
call, so a crash between the call and the commit replays instead of duplicating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qbconnect.domain import jsonutil
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.invoice import build_sparse_invoice_update, private_note
from qbconnect.domain.invoice_rules import InvoiceLinkState, booked_payments
from qbconnect.domain.money import amount as money
from qbconnect.domain.payment import build_qbo_payment, payments_needed
from qbconnect.errors import ConflictError, PermanentError
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.faults import DuplicateDocNumber, NotFound, StaleObject
from qbconnect.sync.engine.context import JobContext
from qbconnect.sync.links.invoices import InvoiceLink, save_invoice
from qbconnect.sync.lookup import request_id

MAX_STALE_RETRIES = 3


@dataclass
class Convergence:
    """One run's view of an invoice link: the link row, its typed data, and what was done."""

    ctx: JobContext
    qbo: QboClient
    link: InvoiceLink
    name: str  # "Invoice #19"
    actions: list[str] = field(default_factory=list)
    fresh: bool = False  # the snapshot was just written or read (exact, current)

    @property
    def qbo_id(self) -> str | None:
        return self.link.qbo_id

    @property
    def state(self) -> InvoiceLinkState:
        return self.link.state

    def save(self, snapshot: Mapping[str, Any] | None = None) -> None:
        """Store the link (and the QuickBooks invoice as it now is) durably."""
        if snapshot is not None:
            self.state.snapshot = dict(snapshot)
            self.link.sync_token = str(snapshot.get("SyncToken", "")) or None
            self.fresh = True
        save_invoice(self.ctx.session, self.ctx.location_id, self.link)

    def read(self) -> dict[str, Any]:
        assert self.link.qbo_id is not None
        try:
            invoice = self.qbo.read("Invoice", self.link.qbo_id)
        except NotFound as exc:
            raise PermanentError(
                f"QuickBooks invoice {self.link.qbo_id}, made for {self.name}, no longer exists in QuickBooks "
                "(deleted there?). Nothing was changed.",
                code=exc.code,
            ) from exc
        self.state.snapshot = invoice
        self.link.sync_token = str(invoice.get("SyncToken", "")) or None
        self.fresh = True
        return invoice

    def current(self) -> dict[str, Any]:
        """The QuickBooks invoice as we last knew it (no call) or as it is now (one read)."""
        if self.state.snapshot is not None:
            return self.state.snapshot
        return self.read()

    # ---- create / update ------------------------------------------------------------------------

    def create(self, desired: dict[str, Any], number: str | None) -> dict[str, Any]:
        """Create the QuickBooks invoice with the requestid stored in the link before the call."""
        ctx = self.ctx
        if not self.link.request_id:
            self.link.request_id = request_id(ctx.location_id, "invoice", self.state.realm_id, self.link.crm_id)
        self.save()  # the requestid is durable before the call
        try:
            created = self.qbo.create("Invoice", desired, request_id=self.link.request_id)
        except DuplicateDocNumber as exc:
            raise PermanentError(
                f"QuickBooks already has an invoice numbered {number}, so {self.name} cannot be booked under its "
                "own number. Renumber one of them (qbconnect never renumbers silently), then retry.",
                code=exc.code,
            ) from exc
        self.link.qbo_id = str(created["Id"])
        self.actions.append("created")
        self.save(created)
        return created

    def update(self, desired: dict[str, Any], content: str) -> dict[str, Any]:
        """Sparse-update what we own when it differs; a stale SyncToken (5010) re-reads and retries."""
        existing = self.current()
        for _ in range(MAX_STALE_RETRIES):
            change = build_sparse_invoice_update(existing, desired)
            if change is None:
                return existing
            rid = request_id(self.ctx.location_id, "invoice-update", self.link.crm_id, content, change["SyncToken"])
            try:
                updated = self.qbo.update("Invoice", change, request_id=rid)
            except StaleObject:
                self.ctx.log.info("invoice.stale", qbo_id=self.link.qbo_id, realm_id=self.qbo.realm_id)
                existing = self.read()
                continue
            if "updated" not in self.actions and "created" not in self.actions:
                self.actions.append("updated")
            self.save(updated)
            return updated
        raise ConflictError(
            f"QuickBooks invoice {self.link.qbo_id} kept changing while {self.name} was being synced; "
            "trying again shortly."
        )

    # ---- payments -------------------------------------------------------------------------------

    def book_payments(self, inv: CrmInvoice, *, method_id: str | None, deposit_id: str | None, multi: bool) -> None:
        """Each increase of the CRM's amount paid becomes one QuickBooks Payment applied to the invoice."""
        if self.state.pending_payment is not None:
            self._send_payment(self.state.pending_payment)
        snapshot = self.current()
        needed = payments_needed(inv.amount_paid, booked_payments(snapshot), inv.currency)
        if needed <= 0:
            return
        if not self.fresh:  # the amount to book is decided on QuickBooks' current figures
            snapshot = self.read()
            needed = payments_needed(inv.amount_paid, booked_payments(snapshot), inv.currency)
            if needed <= 0:
                return
        paid_to_date = f"{inv.amount_paid:.2f}"
        customer = (snapshot.get("CustomerRef") or {}).get("value")
        body = build_qbo_payment(
            customer_id=str(customer),
            invoice_id=str(self.link.qbo_id),
            amount=needed,
            currency=inv.currency,
            payment_method_id=method_id,
            deposit_account_id=deposit_id,
            reference=inv.number,
            private_note=f"Payment on {private_note('invoice', inv.id, inv.number)}; paid to date {paid_to_date}",
            multicurrency=multi,
        )
        pending = {
            "request_id": request_id(self.ctx.location_id, "invoice-payment", inv.id, self.link.qbo_id, paid_to_date),
            "body": jsonutil.dumps(body).decode("utf-8"),
            "paid_to_date": paid_to_date,
        }
        self.state.pending_payment = pending
        self.save()  # requestid durable before the call
        self._send_payment(pending)

    def _send_payment(self, pending: Mapping[str, Any]) -> None:
        body = jsonutil.loads(str(pending["body"]))
        payment = self.qbo.create("Payment", body, request_id=str(pending["request_id"]))
        payments = [p for p in (self.state.payments or []) if p.get("id") != str(payment["Id"])]
        payments.append(
            {
                "id": str(payment["Id"]),
                "amount": f"{money(payment.get('TotalAmt')):.2f}",
                "paid_to_date": str(pending["paid_to_date"]),
            }
        )
        self.state.payments = payments
        self.state.pending_payment = None
        self.state.snapshot = None  # applying a payment changed the invoice's Balance and SyncToken
        self.fresh = False
        self.actions.append(f"payment {money(payment.get('TotalAmt')):.2f} recorded")
        self.save()

    # ---- void -----------------------------------------------------------------------------------

    def void(self, crm_id: str) -> dict[str, Any]:
        """Void our payments on the invoice, then the invoice itself (never delete)."""
        invoice = self.read()
        if booked_payments(invoice) > 0:
            self._void_payments(invoice, crm_id)
            invoice = self.read()
        for _ in range(MAX_STALE_RETRIES):
            rid = request_id(self.ctx.location_id, "invoice-void", crm_id, self.link.qbo_id, invoice["SyncToken"])
            try:
                voided = self.qbo.void("Invoice", str(self.link.qbo_id), str(invoice["SyncToken"]), request_id=rid)
            except StaleObject:
                invoice = self.read()
                continue
            self.state.voided = True
            self.actions.append("voided")
            self.save(voided)
            return voided
        raise ConflictError(f"QuickBooks invoice {self.link.qbo_id} kept changing while being voided; trying again.")

    def _void_payments(self, invoice: Mapping[str, Any], crm_id: str) -> None:
        customer = (invoice.get("CustomerRef") or {}).get("value")
        ours = {p.get("id") for p in (self.state.payments or [])}
        marker = f"(CRM id {crm_id})"
        linked = [
            p
            for p in self.qbo.query(f"SELECT * FROM Payment WHERE CustomerRef = '{customer}'")
            if _applies_to(p, str(self.link.qbo_id)) and money(p.get("TotalAmt")) > 0
        ]
        foreign = [p for p in linked if p.get("Id") not in ours and marker not in str(p.get("PrivateNote") or "")]
        if foreign:
            ids = ", ".join(str(p.get("Id")) for p in foreign)
            raise PermanentError(
                f"{self.name} was voided in the CRM, but QuickBooks invoice {self.link.qbo_id} has payments "
                f"recorded in QuickBooks itself ({ids}). Remove them there, then retry."
            )
        for payment in linked:
            rid = request_id(self.ctx.location_id, "payment-void", payment["Id"], payment["SyncToken"])
            self.qbo.void("Payment", str(payment["Id"]), str(payment["SyncToken"]), request_id=rid)
            self.actions.append(f"payment {payment['Id']} voided")
        self.save()


def _applies_to(payment: Mapping[str, Any], invoice_id: str) -> bool:
    for line in payment.get("Line") or []:
        for txn in line.get("LinkedTxn") or []:
            if (
                str(txn.get("TxnId")) == invoice_id
                and txn.get("TxnType") == "Invoice"
                and money(line.get("Amount")) > 0
            ):
                return True
    return False

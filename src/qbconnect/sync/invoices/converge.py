"""Make one QuickBooks invoice equal to its CRM invoice: create, sparse update, payments, void.

Every write is followed by saving the link, so a later failure in the same run never loses what QuickBooks
already holds; every create carries a ``requestid`` that was committed before the call, so a crash between
the call and the commit replays instead of duplicating.

No read on the normal path (docs/invoices.md, "QuickBooks calls"): a create, update or void answers with the
whole invoice (SyncToken, TotalAmt, Balance), and that answer is kept in the link; a payment or a payment's
void moves the kept Balance by its amount and the SyncToken by one (``InvoiceLinkState``). Decisions are made
on :class:`~qbconnect.domain.qbo_models.QboInvoice` and ``QboPayment``. QuickBooks is read only when it
refuses a write for a reason only it knows: a stale SyncToken (someone changed the invoice there), a
payment it no longer has, an invoice void it refuses because payments we did not book are applied. A link
written by an older version that keeps no answer is read once.

Retries: a request QuickBooks refused with a fault created nothing, so it is forgotten and the next run
plans it again from the current CRM invoice and settings, under a new requestid (``refused`` counts them);
a request whose outcome is unknown (timeout, lost answer, 5xx) stays saved and is replayed unchanged first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qbconnect.db.models import Location
from qbconnect.domain import jsonutil
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.invoice import build_sparse_invoice_update, private_note
from qbconnect.domain.invoice_rules import InvoiceLinkState, LinkedPayment, known_invoice, request_parts
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.domain.payment import build_qbo_payment, payments_needed
from qbconnect.domain.qbo_models import QboInvoice, QboPayment
from qbconnect.errors import ConflictError, PermanentError
from qbconnect.qbo.client import QboClient, escape_query_value
from qbconnect.qbo.faults import DuplicateDocNumber, NotFound, QboFault, StaleObject
from qbconnect.sync.engine import changes, jobs
from qbconnect.sync.engine.context import JobContext
from qbconnect.sync.engine.routing import QBO_PAYMENT
from qbconnect.sync.links.echoes import remember_payment
from qbconnect.sync.links.invoices import InvoiceLink, save_invoice
from qbconnect.sync.lookup import refused, request_id
from qbconnect.sync.workflows.observe import observe_invoice_write

MAX_STALE_RETRIES = 3


@dataclass
class Convergence:
    """One run's view of an invoice link: the link row, its typed data, and what was done."""

    ctx: JobContext
    qbo: QboClient
    link: InvoiceLink
    name: str  # "Invoice #19"
    actions: list[str] = field(default_factory=list)

    @property
    def qbo_id(self) -> str | None:
        return self.link.qbo_id

    @property
    def state(self) -> InvoiceLinkState:
        return self.link.state

    def save(self) -> None:
        """Store the link (and the QuickBooks invoice as the product knows it) durably."""
        known = known_invoice(self.state)
        if known is not None:
            self.link.sync_token = known.sync_token
            ctx, realm = self.ctx, self.state.realm_id  # the invoice balance the workflows read (docs/workflows.md)
            if realm:
                env = ctx.runtime.settings.qbo_environment
                observe_invoice_write(
                    ctx.session, ctx.location_id, realm, known, voided=self.state.voided, environment=env
                )
        save_invoice(self.ctx.session, self.ctx.location_id, self.link)

    def _remember(self, answer: Mapping[str, Any]) -> QboInvoice:
        invoice = self.state.remember(answer)
        self.save()
        return invoice

    def _rid(self, *parts: object) -> str:
        return request_id(self.ctx.location_id, *parts, *request_parts(self.state))

    def _refused(self) -> None:
        """QuickBooks refused a request: it created nothing; the next one gets a new requestid."""
        self.state.refused += 1
        self.save()

    def read(self, why: str) -> QboInvoice:
        """One read of the invoice: the exception path only (``why`` is logged)."""
        assert self.link.qbo_id is not None
        self.ctx.log.info("invoice.read", qbo_id=self.link.qbo_id, realm_id=self.qbo.realm_id, why=why)
        try:
            answer = self.qbo.read("Invoice", self.link.qbo_id)
        except NotFound as exc:
            raise PermanentError(
                f"QuickBooks invoice {self.link.qbo_id}, made for {self.name}, no longer exists in QuickBooks "
                "(deleted there?). Nothing was changed.",
                code=exc.code,
            ) from exc
        return self._remember(answer)

    def current(self) -> QboInvoice:
        """The QuickBooks invoice as the product knows it (no call); one read only for a link that keeps no
        answer (written by an older version)."""
        known = known_invoice(self.state)
        return known if known is not None else self.read("no answer kept")

    # ---- create / update ------------------------------------------------------------------------

    def create(self, desired: dict[str, Any], number: str | None) -> QboInvoice:
        """Create the QuickBooks invoice with the requestid stored in the link before the call."""
        if not self.link.request_id:
            self.link.request_id = self._rid("invoice", self.state.realm_id, self.link.crm_id)
        self.save()  # the requestid is durable before the call
        try:
            created = self.qbo.create("Invoice", desired, request_id=self.link.request_id)
        except QboFault as exc:
            if refused(exc):
                self.link.request_id = None
                self._refused()
            if isinstance(exc, DuplicateDocNumber):
                raise PermanentError(
                    f"QuickBooks already has an invoice numbered {number}, so {self.name} cannot be booked under "
                    "its own number. Renumber one of them (qbconnect never renumbers silently), then retry.",
                    code=exc.code,
                ) from exc
            raise
        self.link.qbo_id = str(created["Id"])
        self.actions.append("created")
        return self._remember(created)

    def update(self, desired: dict[str, Any], content: str) -> QboInvoice:
        """Sparse-update what we own when it differs; a stale SyncToken (5010) reads once and retries."""
        existing = self.current()
        for _ in range(MAX_STALE_RETRIES):
            change = build_sparse_invoice_update(existing, desired)
            if change is None:
                return existing
            rid = self._rid("invoice-update", self.link.crm_id, content, change["SyncToken"])
            try:
                updated = self.qbo.update("Invoice", change, request_id=rid)
            except StaleObject:
                existing = self.read("stale SyncToken on update")
                continue
            except QboFault as exc:
                if refused(exc):
                    self._refused()
                raise
            if "updated" not in self.actions and "created" not in self.actions:
                self.actions.append("updated")
            return self._remember(updated)
        raise ConflictError(
            f"QuickBooks invoice {self.link.qbo_id} kept changing while {self.name} was being synced; "
            "trying again shortly."
        )

    # ---- payments -------------------------------------------------------------------------------

    def book_payments(self, inv: CrmInvoice, *, method_id: str | None, deposit_id: str | None, multi: bool) -> None:
        """Each increase of the CRM's amount paid becomes one QuickBooks Payment applied to the invoice.

        The amount is the CRM's amount paid minus what the invoice shows as paid: QuickBooks' last answer
        plus the payments booked since."""
        if self.state.pending_payment is not None:
            self._send_payment(self.state.pending_payment)  # outcome unknown: replayed unchanged first
        known = self.current()
        needed = payments_needed(inv.amount_paid, known.paid, inv.currency)
        if needed <= 0:
            return
        paid_to_date = f"{inv.amount_paid:.2f}"
        body = build_qbo_payment(
            customer_id=str(known.customer_id),
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
            "request_id": self._rid("invoice-payment", inv.id, self.link.qbo_id, paid_to_date),
            "body": jsonutil.dumps(body).decode("utf-8"),
            "paid_to_date": paid_to_date,
        }
        self.state.pending_payment = pending
        self.save()  # requestid durable before the call
        self._send_payment(pending)

    def _send_payment(self, pending: Mapping[str, Any]) -> None:
        body = jsonutil.loads(str(pending["body"]))
        try:
            answer = self.qbo.create("Payment", body, request_id=str(pending["request_id"]))
        except QboFault as exc:
            if refused(exc):  # nothing was booked: the next run plans the payment again
                self.state.pending_payment = None
                self._refused()
            raise
        payment = QboPayment.from_api(answer)
        remember_payment(self.ctx.session, self.ctx.location_id, payment.id)  # its webhook echo rings nothing
        self.state.payments = [p for p in self.state.payments if p.id != payment.id]
        self.state.payments.append(
            LinkedPayment(
                id=payment.id,
                amount=payment.total,
                paid_to_date=str(pending["paid_to_date"]),
                sync_token=payment.sync_token,
            )
        )
        self.state.payment_applied(payment, str(self.link.qbo_id))
        self.state.pending_payment = None
        self.actions.append(f"payment {payment.total:.2f} recorded")
        self.save()
        self._ask_review_check(answer)

    def _ask_review_check(self, payment: Mapping[str, Any]) -> None:
        """A payment the product recorded may fully pay the customer's first invoice: the review-request
        check runs on it as on any QuickBooks payment (its webhook echo rings nothing), with the payment
        and the invoice as the product knows them, so the check reads nothing to learn them."""
        location = self.ctx.session.get(Location, self.ctx.location_id)
        if location is None or not load_settings(location.settings).review_requests_active:
            return
        invoice = known_invoice(self.state)
        related = {"Invoice": [{**invoice.raw, "Balance": str(invoice.balance)}]} if invoice is not None else None
        changes.keep(self.ctx.session, self.ctx.location_id, self.qbo.realm_id, "Payment", payment, related)
        jobs.enqueue(
            self.ctx.session,
            self.ctx.location_id,
            QBO_PAYMENT,
            str(payment["Id"]),
            "payment recorded by the invoice sync",
        )

    # ---- void -----------------------------------------------------------------------------------

    def void(self, crm_id: str) -> QboInvoice:
        """Void our payments on the invoice, then the invoice itself (never delete)."""
        self._void_payments()
        invoice = self.current()
        cleared = False
        for _ in range(MAX_STALE_RETRIES):
            rid = self._rid("invoice-void", crm_id, self.link.qbo_id, invoice.sync_token)
            try:
                voided = self.qbo.void("Invoice", str(self.link.qbo_id), str(invoice.sync_token), request_id=rid)
            except StaleObject:
                invoice = self.read("stale SyncToken on void")
                continue
            except QboFault as exc:
                # refused while payments we did not book are applied (QuickBooks requires them voided first)
                if refused(exc) and not cleared and self._void_other_payments(crm_id, invoice):
                    cleared = True
                    invoice = self.read("payments voided after the void was refused")
                    continue
                if refused(exc):
                    self._refused()
                raise
            self.state.voided = True
            self.actions.append("voided")
            return self._remember(voided)
        raise ConflictError(f"QuickBooks invoice {self.link.qbo_id} kept changing while being voided; trying again.")

    def _void_payments(self) -> None:
        """Void every payment the product booked on the invoice, with the SyncToken of its last answer."""
        for payment in [p for p in self.state.payments if not p.voided]:
            token = payment.sync_token or "0"
            for _ in range(MAX_STALE_RETRIES):
                try:
                    answer = self._void_payment(payment.id, token)
                except StaleObject:
                    found = self._read_payment(payment.id)
                    if found is None or str(self.link.qbo_id) not in found.invoice_ids:
                        # deleted or moved off this invoice in QuickBooks: not ours to void any more
                        payment.voided = found is None
                        self.state.snapshot = None  # what the invoice shows now is read before the void
                        self.save()
                        break
                    token = found.sync_token or token
                    continue
                except NotFound:
                    payment.voided = True
                    self.state.snapshot = None
                    self.save()
                    break
                payment.voided = True
                payment.sync_token = answer.sync_token
                self.state.payment_voided(payment)
                self.save()
                break

    def _void_payment(self, payment_id: str, token: str) -> QboPayment:
        rid = request_id(self.ctx.location_id, "payment-void", payment_id, token)
        answer = QboPayment.from_api(self.qbo.void("Payment", payment_id, token, request_id=rid))
        self.actions.append(f"payment {payment_id} voided")
        return answer

    def _read_payment(self, payment_id: str) -> QboPayment | None:
        self.ctx.log.info("payment.read", payment_id=payment_id, realm_id=self.qbo.realm_id, why="stale SyncToken")
        try:
            return QboPayment.from_api(self.qbo.read("Payment", payment_id))
        except NotFound:
            return None

    def _void_other_payments(self, crm_id: str, invoice: QboInvoice) -> bool:
        """QuickBooks refused the invoice void: find the payments applied to it (one query). Payments an
        earlier version booked (they carry our marker) are voided; payments recorded in QuickBooks itself
        stop the run. False when no payment is applied (the refusal had another reason)."""
        self.ctx.log.info("invoice.payments_query", qbo_id=self.link.qbo_id, realm_id=self.qbo.realm_id)
        customer = escape_query_value(str(invoice.customer_id))
        found = self.qbo.query(f"SELECT * FROM Payment WHERE CustomerRef = '{customer}'")
        linked = [
            payment
            for payment in map(QboPayment.from_api, found)
            if str(self.link.qbo_id) in payment.invoice_ids and payment.total > 0
        ]
        if not linked:
            return False
        ours = {p.id for p in self.state.payments}
        marker = f"(CRM id {crm_id})"
        foreign = [p for p in linked if p.id not in ours and marker not in (p.private_note or "")]
        if foreign:
            ids = ", ".join(p.id for p in foreign)
            raise PermanentError(
                f"{self.name} was voided in the CRM, but QuickBooks invoice {self.link.qbo_id} has payments "
                f"recorded in QuickBooks itself ({ids}). Remove them there, then retry."
            )
        for payment in linked:
            self._void_payment(payment.id, str(payment.sync_token))
        self.save()
        return True

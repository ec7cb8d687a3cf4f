"""QuickBooks payment → one review request when it leaves the customer's first invoice fully paid.

Job kind ``qbo_payment`` (entity: the QBO Payment id), enqueued by the change query (CDC) that Intuit's
Payment Create/Update webhooks schedule (and by a webhook too old for it). The job takes the payment as the
change query returned it — with the customer's invoices and the customer from the same answer — or reads it
when it has nothing kept (a retry, the sync log's Retry). When none of the invoices the payment pays is paid
in full, it is done without a read. Otherwise it finds the customer's first invoice (earliest TxnDate, ties
by Id; one query) and, when the payment is applied to it and its Balance is 0, sends the customer one review
request through the CRM conversations API. The customer is read only when the CRM contact needs it and the
answer did not hold it. See docs/review-requests.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from qbconnect.connections.state import active_connection
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Location, QboConnection, ReviewRequest
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.domain.money import round_money
from qbconnect.domain.qbo_models import QboInvoice, QboPayment
from qbconnect.domain.review import first_invoice
from qbconnect.domain.review_message import compose, inactive_reason, preview_review_message
from qbconnect.errors import ErrorCategory, PermanentError, SyncError
from qbconnect.qbo.client import QboClient, escape_query_value
from qbconnect.qbo.faults import NotFound
from qbconnect.sync.engine import changes
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register
from qbconnect.sync.engine.routing import QBO_PAYMENT
from qbconnect.sync.links.customers import link_contact
from qbconnect.sync.reviews import store as review_store
from qbconnect.sync.reviews.contact import ReviewContact, dnd_reason, linked_contact_id, resolve_contact

__all__ = ["handle_qbo_payment", "linked_invoice_ids", "preview_review_message"]

INVOICE_PAGE = 100
# Payments recorded this long before the QuickBooks connection are history (e.g. an old payment edited
# today): they never trigger a review request. The margin absorbs clock differences.
HISTORY_MARGIN = timedelta(minutes=10)
# CRM send failures that prove nothing was sent (the request was refused or never left).
_NOT_SENT_CODES = frozenset({"http_429", "rate_budget"})
_NOT_SENT_DETAILS = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})


def linked_invoice_ids(payment: Mapping[str, Any]) -> list[str]:
    """The Invoice ids a QBO Payment applies an amount to (``Line[].LinkedTxn[]`` with TxnType Invoice)."""
    return list(QboPayment.from_api(payment).invoice_ids)


def customer_invoices(qbo: QboClient, customer_id: str) -> list[QboInvoice]:
    """The customer's invoices from the earliest TxnDate on, as far as needed to know the first one.

    Pages are read in TxnDate order until a page ends after the first real invoice's date, so a customer
    with thousands of invoices costs one or two queries.
    """
    select = f"SELECT * FROM Invoice WHERE CustomerRef = '{escape_query_value(customer_id)}' ORDERBY TxnDate"
    collected: list[QboInvoice] = []
    position = 1
    while True:
        page = [
            QboInvoice.from_api(row)
            for row in qbo.query(f"{select} STARTPOSITION {position} MAXRESULTS {INVOICE_PAGE}")
        ]
        collected.extend(page)
        if len(page) < INVOICE_PAGE:
            return collected
        first = first_invoice(collected)
        if first is not None and (page[-1].txn_date or "") > (first.txn_date or ""):
            return collected
        position += INVOICE_PAGE


def _invoice_label(invoice: QboInvoice) -> str:
    return f"invoice #{invoice.doc_number}" if invoice.doc_number else f"invoice {invoice.id}"


def _owed(invoice: QboInvoice) -> str:
    return str(round_money(invoice.balance, invoice.currency or "USD"))


def _skip(ctx: JobContext, summary: str, readable: Mapping[str, Any] | None = None, **facts: Any) -> Result:
    ctx.log.info("review.skipped", reason=summary, **facts)  # ids only: ``readable`` names people, never logged
    return Result(summary, qbo_id=ctx.entity_id, skipped=True, **_readable(readable))


REVIEW_LABEL = "Review request"


def _readable(known: Mapping[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """The sync-log row's readable fields: "Review request · Kira Garcia · Invoice #1042" — the customer and
    the number of the first invoice, as far as the run got to know them; the row links the QuickBooks payment."""
    values = {"label": REVIEW_LABEL, "qbo_type": "Payment", **(known or {}), **more}
    return {key: value for key, value in values.items() if value is not None}


def _customer_fields(customer: Mapping[str, Any]) -> dict[str, Any]:
    node = customer.get("PrimaryEmailAddr")
    email = node.get("Address") if isinstance(node, Mapping) else None
    name = str(customer.get("DisplayName") or "").strip() or None
    return {"customer": name, "customer_email": str(email).strip().lower() if email else None}


def _business_name(location: Location, connection: QboConnection) -> str:
    return (location.name or connection.company_name or "").strip() or "us"


@register(QBO_PAYMENT, direction="qbo_to_crm", title="Review request")
def handle_qbo_payment(ctx: JobContext) -> Result:
    session = ctx.session
    location = session.get(Location, ctx.location_id)
    if location is None:
        return _skip(ctx, "Review request not sent: the location is not installed.")
    connection = active_connection(session, ctx.location_id)
    # What the change query kept for this run is taken whether or not it is used: a later run reads.
    realm = connection.realm_id if connection is not None else None
    kept = changes.take(session, ctx.location_id, realm, "Payment", ctx.entity_id)
    settings = load_settings(location.settings)
    reason = inactive_reason(settings)
    if reason is not None:
        return _skip(ctx, f"Review request not sent: {reason}.")
    if connection is None or connection.status != "connected":
        return _skip(ctx, "Review request not sent: QuickBooks is not connected.")
    realm_id, connected_at = connection.realm_id, connection.connected_at
    business_name = _business_name(location, connection)
    log = ctx.log.bind(realm_id=realm_id)
    ctx.log = log

    qbo = ctx.qbo(realm_id)
    if kept is not None:
        raw_payment = kept.object
    else:
        try:
            raw_payment = qbo.read("Payment", ctx.entity_id)
        except NotFound:
            return _skip(ctx, f"Nothing to send: QuickBooks payment {ctx.entity_id} no longer exists.")
    if raw_payment.get("status") == "Deleted":
        return _skip(ctx, f"Nothing to send: QuickBooks payment {ctx.entity_id} no longer exists.")
    payment = QboPayment.from_api(raw_payment)
    customer_id = payment.customer_id or ""
    known: dict[str, Any] = {"customer": payment.customer_name}
    if not customer_id:
        return _skip(ctx, f"Nothing to send: QuickBooks payment {ctx.entity_id} has no customer.")
    invoice_ids = list(payment.invoice_ids)
    if not invoice_ids:
        return _skip(ctx, f"Nothing to send: QuickBooks payment {ctx.entity_id} is not applied to an invoice.", known)

    existing = review_store.find(session, ctx.location_id, customer_id)
    if existing is not None and existing.status in review_store.FINAL:
        return _skip(ctx, _already(existing.status, existing.channel, customer_id), known, customer_id=customer_id)

    created = payment.created_at
    if created is not None and created < connected_at - HISTORY_MARGIN:
        return _skip(
            ctx,
            f"Nothing to send: QuickBooks payment {ctx.entity_id} was recorded before QuickBooks was connected.",
            known,
        )

    if kept is not None:
        kept_invoices = kept.related_by_id("Invoice")
        paid_by_it = [kept_invoices.get(invoice_id) for invoice_id in invoice_ids]
        unpaid = [QboInvoice.from_api(raw) for raw in paid_by_it if raw is not None]
        unpaid = [invoice for invoice in unpaid if invoice.balance != 0]
        if len(unpaid) == len(invoice_ids):  # none of them paid in full: not the first one either
            if len(unpaid) == 1:
                known["number"] = unpaid[0].doc_number
            return _skip(ctx, _not_paid_yet(ctx.entity_id, unpaid), known)

    invoices = customer_invoices(qbo, customer_id)
    first = first_invoice(invoices)
    if first is None:
        return _skip(ctx, f"Nothing to send: QuickBooks customer {customer_id} has no invoice with an amount.", known)
    first_id = first.id
    known["number"] = first.doc_number
    if first_id not in invoice_ids:
        paid = ", ".join(invoice_ids)
        return _skip(
            ctx,
            f"Nothing to send: payment {ctx.entity_id} pays invoice {paid}, not the customer's first "
            f"({_invoice_label(first)}).",
            known,
        )
    if first.balance != 0:
        return _skip(
            ctx,
            f"Nothing to send yet: the customer's first {_invoice_label(first)} still has {_owed(first)} to pay.",
            known,
        )

    kept_customer = kept.related_by_id("Customer").get(customer_id) if kept is not None else None
    if kept_customer is not None:  # named from the change query's answer; no read just for the title
        known.update({key: value for key, value in _customer_fields(kept_customer).items() if value})
    ctx.describe(**_readable(known))  # a run that fails from here on still reads as this review request
    customer = _customer_source(qbo, customer_id, kept)
    linked_id = linked_contact_id(session, ctx.location_id, customer_id)
    crm = ctx.crm()
    contact = resolve_contact(crm, customer, linked_id)
    email = str(contact.contact.get("email") or "").strip().lower()
    if contact.found_by != "link":
        # One customer identity: the contact this path met is linked for every later path (invoices,
        # receipts, the next review request) unless the contact already stands for another customer.
        link_contact(session, ctx.location_id, contact.id, customer_id, realm_id=realm_id, email=email or None)
    known.setdefault("customer_email", email or None)
    ctx.describe(**_readable(known))
    channel = settings.review_request_channel
    claim_args: dict[str, Any] = {
        "location_id": ctx.location_id,
        "qbo_customer_id": customer_id,
        "qbo_invoice_id": first_id,
        "qbo_payment_id": ctx.entity_id,
        "contact_id": contact.id,
        "channel": channel,
    }

    blocked = dnd_reason(contact.contact, channel)
    if blocked is not None:
        return _record_dnd_skip(ctx, claim_args, contact, blocked, known)

    message = compose(
        settings,
        first_name=contact.first_name or str(customer().get("GivenName") or ""),
        business_name=business_name,
        review_link=str(settings.review_link),
    )
    row = review_store.claim(session, status=review_store.SENDING, **claim_args)
    if row is None:
        return _skip(ctx, f"Review request not sent: another run is handling QuickBooks customer {customer_id}.", known)
    # The claim is durable before the message can leave (the engine commits before the call): no second send.

    try:
        answer = _send(crm, contact.id, message.channel, message.subject, message.html, message.text)
    except SyncError as exc:
        return _record_send_failure(ctx, row, contact, channel, exc, claim_args, known)
    message_id = str(answer.get("messageId") or answer.get("emailMessageId") or "")
    review_store.record(row, review_store.SENT, f"message {message_id}" if message_id else None)
    log.info("review.sent", customer_id=customer_id, contact_id=contact.id, channel=channel, message_id=message_id)
    return Result(
        f"Review request sent to {contact.label} by {channel} "
        f"(first {_invoice_label(first)} paid in full by payment {ctx.entity_id}).",
        crm_id=contact.id,
        qbo_id=ctx.entity_id,
        **_readable(known),
    )


def _not_paid_yet(payment_id: str, invoices: list[QboInvoice]) -> str:
    owed = ", ".join(f"{_invoice_label(invoice)} still has {_owed(invoice)} to pay" for invoice in invoices)
    return f"Nothing to send yet: payment {payment_id} leaves no invoice paid in full ({owed})."


def _customer_source(qbo: QboClient, customer_id: str, kept: changes.Change | None) -> Callable[[], dict[str, Any]]:
    """The customer, from the change query's answer when it held it, else read once when first asked for."""
    known = kept.related_by_id("Customer").get(customer_id) if kept is not None else None
    cache: list[dict[str, Any]] = [known] if known is not None else []

    def customer() -> dict[str, Any]:
        if not cache:
            cache.append(qbo.read("Customer", customer_id))
        return cache[0]

    return customer


def _already(status: str, channel: str, customer_id: str) -> str:
    if status == review_store.SENT:
        return f"Review request already sent to QuickBooks customer {customer_id} (by {channel}); sent once only."
    if status == review_store.SKIPPED:
        return f"Review request for QuickBooks customer {customer_id} was skipped before; decided once only."
    if status == review_store.SENDING:
        return (
            f"Review request to QuickBooks customer {customer_id} is being sent by another run, or a run "
            "stopped while sending; not sent again so the customer never gets it twice."
        )
    return (
        f"Review request to QuickBooks customer {customer_id} may have been sent earlier (HighLevel did not "
        "confirm it); not sent again so the customer never gets it twice."
    )


def _send(crm: CrmClient, contact_id: str, channel: str, subject: str, html: str, text: str) -> dict[str, Any]:
    if channel == "Email":
        return crm.send_message(contact_id=contact_id, channel="Email", message=text, subject=subject, html=html)
    return crm.send_message(contact_id=contact_id, channel="SMS", message=text)


def _record_dnd_skip(
    ctx: JobContext, claim_args: dict[str, Any], contact: ReviewContact, reason: str, known: Mapping[str, Any]
) -> Result:
    row = review_store.claim(ctx.session, status=review_store.SKIPPED, detail=reason, **claim_args)
    if row is None:
        return _skip(ctx, f"Review request not sent to {contact.label}: another run decided it first.", known)
    return _skip(
        ctx,
        f"Review request not sent to {contact.label}: {reason}.",
        known,
        customer_id=claim_args["qbo_customer_id"],
        contact_id=contact.id,
    )


def _definitely_not_sent(exc: SyncError) -> bool:
    """True when the error proves HighLevel did not take the message (refused, or never reached)."""
    if exc.category is not ErrorCategory.TRANSIENT:
        return True  # 4xx answers: refused
    return exc.code in _NOT_SENT_CODES or (exc.code == "network" and exc.detail in _NOT_SENT_DETAILS)


def _record_send_failure(
    ctx: JobContext,
    row: ReviewRequest,
    contact: ReviewContact,
    channel: str,
    exc: SyncError,
    claim_args: dict[str, Any],
    known: Mapping[str, Any],
) -> Result:
    customer_id = claim_args["qbo_customer_id"]
    if "dnd" in exc.message.lower():
        # Do-not-disturb switched on between our read and the send: HighLevel refused; that is a skip.
        reason = f"do-not-disturb is on for {channel}"
        review_store.record(row, review_store.SKIPPED, f"{reason} ({exc.message})")
        ctx.log.info("review.skipped", reason=reason, customer_id=customer_id, contact_id=contact.id)
        return Result(
            f"Review request not sent to {contact.label}: {reason}.",
            qbo_id=ctx.entity_id,
            skipped=True,
            **_readable(known),
        )
    if _definitely_not_sent(exc):
        review_store.record(row, review_store.FAILED, exc.message)
        # Kept with the failure (the engine commits what a handler recorded before a sync error): resumable.
        ctx.log.warning("review.send_failed", customer_id=customer_id, error=exc.message, code=exc.code)
        raise SyncError(
            f"Review request to {contact.label} not sent: {exc.message}",
            category=exc.category,
            code=exc.code,
            retry_after=exc.retry_after,
            detail=exc.detail,
        ) from exc
    review_store.record(row, review_store.UNKNOWN, exc.message)
    ctx.log.warning("review.send_unconfirmed", customer_id=customer_id, error=exc.message, code=exc.code)
    raise PermanentError(
        f"HighLevel did not confirm whether the review request to {contact.label} was sent ({exc.message}). "
        "It will not be sent again automatically, so the customer never gets it twice; check the contact's "
        "conversation in the CRM.",
        code=exc.code,
        detail=exc.detail,
    ) from exc

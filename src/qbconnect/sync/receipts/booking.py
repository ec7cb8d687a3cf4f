"""One CRM transaction → one QuickBooks SalesReceipt, then a RefundReceipt for each newly refunded amount.

Level-triggered: every run re-reads the transaction and converges QuickBooks through the ``sales_receipt``
link (``receipt_links``), so duplicate webhooks, polling and retries never book twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from qbconnect.connections.service import company_facts
from qbconnect.connections.state import active_connection, is_syncing
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Location
from qbconnect.domain.company import CompanyFacts
from qbconnect.domain.crm_models import CrmContactDetails, CrmOrder, CrmTransaction
from qbconnect.domain.errors import MappingError
from qbconnect.domain.invoice_rules import contact_name
from qbconnect.domain.location_settings import LocationSettings, load
from qbconnect.domain.money import round_money
from qbconnect.domain.qbo_models import QboReceipt
from qbconnect.domain.receipt_rules import (
    KIND_LABELS,
    describe,
    fallback_line,
    order_explains,
    payment_method_key_candidates,
    shipping_line,
    skip_for,
    tax_mapping,
)
from qbconnect.domain.sales_receipt import (
    ReceiptContext,
    ReceiptDraft,
    build_refund_receipt,
    build_sales_receipt,
    draft_sales_receipt,
    payment_method_draft,
    refund_needed,
)
from qbconnect.domain.sources import ReceiptKind, classify
from qbconnect.errors import PermanentError
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.faults import QboFault
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.links import receipts as links
from qbconnect.sync.links.receipts import PendingRefund, ReceiptLink, RefundEntry
from qbconnect.sync.lookup import (
    refused,
    resolve_customer,
    resolve_item,
    resolve_payment_method,
    rounding_item,
    undeposited_funds_account,
)

_PROBE_ITEM = "0"


@dataclass
class _Run:
    """What one run of a TRANSACTION job works with."""

    ctx: JobContext
    settings: LocationSettings
    facts: CompanyFacts
    qbo: QboClient
    crm: CrmClient
    txn: CrmTransaction
    kind: ReceiptKind

    @property
    def realm_id(self) -> str:
        return self.qbo.realm_id


def sync_transaction(ctx: JobContext) -> Result:
    """The TRANSACTION job: book CRM transaction ``ctx.entity_id`` (and its refunds) in QuickBooks."""
    location = ctx.session.get(Location, ctx.location_id)
    connection = active_connection(ctx.session, ctx.location_id)
    if location is None or connection is None or not is_syncing(ctx.session, ctx.location_id):
        return Result("QuickBooks is not connected for this location; nothing was booked.", skipped=True)
    settings = load(location.settings)
    crm = ctx.crm()
    raw = crm.get_transaction(ctx.entity_id)
    if raw is None:
        return Result("The CRM payment no longer exists; nothing was booked.", crm_id=ctx.entity_id, skipped=True)
    txn = CrmTransaction.from_api(raw)
    kind = classify(txn.source_type, txn.source_sub_type, txn.subscription_id)
    link = links.find_receipt(ctx.session, ctx.location_id, txn.id)
    state = links.ReceiptState.of(link)
    label = describe(txn, kind)
    ctx.describe(**_readable(txn, kind))  # a run that fails from here on still reads as this payment

    skip = skip_for(txn, kind, settings)
    booked = state is not None and state.booked
    if skip is not None and (not booked or not settings.sync_sales_receipts):
        _record_skip(ctx, link, txn, kind, skip.reason, skip.final, connection.realm_id)
        return _result(txn, kind, f"{label}: not booked — {skip.reason}.", None, skipped=True)

    run = _Run(
        ctx=ctx,
        settings=settings,
        facts=company_facts(connection),
        qbo=ctx.qbo(connection.realm_id),
        crm=crm,
        txn=txn,
        kind=kind,
    )
    if ctx.log is not None:
        ctx.log = ctx.log.bind(realm_id=run.realm_id)
    parts: list[str] = []
    if link is None or not link.qbo_id:
        link = _book_receipt(run, link)
        total = format(link.total, "f") if link.total is not None else None
        parts.append(f"{label} → QuickBooks sales receipt {link.qbo_id} created (total {total})")
        if link.tax_note:
            parts.append(f"note: {link.tax_note}")
    else:
        link = _check_total(run, link)
    for refund_id, amount in _book_refunds(run, link):
        parts.append(f"refund of {amount} → QuickBooks refund receipt {refund_id} created")
    if not parts:
        refunded = format(link.refunded, "f")
        note = f"; refunds booked: {refunded}" if link.refunded > 0 else ""
        return _result(
            txn,
            kind,
            f"{label} is already in QuickBooks as sales receipt {link.qbo_id}{note}; nothing new to book.",
            link.qbo_id,
        )
    summary = "; ".join(parts)
    return _result(txn, kind, summary[0].upper() + summary[1:], link.qbo_id)


def _result(
    txn: CrmTransaction, kind: ReceiptKind, summary: str, qbo_id: str | None, *, skipped: bool = False
) -> Result:
    """The run's answer with the fields that make its sync-log row readable
    ("Order form payment ch_123 · Kira Garcia · $150.10 → QuickBooks sales receipt 12"); the rows of one
    order share its group key."""
    return Result(summary, crm_id=txn.id, qbo_id=qbo_id, skipped=skipped, **_readable(txn, kind))


def _readable(txn: CrmTransaction, kind: ReceiptKind) -> dict[str, Any]:
    return {
        "label": f"{KIND_LABELS[kind]} payment {txn.charge_reference}",
        "customer": contact_name(txn.contact),
        "customer_email": txn.contact.email,
        "amount": round_money(txn.amount, txn.currency),
        "currency": txn.currency,
        "qbo_type": "SalesReceipt",
        "group_key": f"order:{txn.order_id}" if txn.order_id else None,
    }


def _record_skip(
    ctx: JobContext,
    link: ReceiptLink | None,
    txn: CrmTransaction,
    kind: ReceiptKind,
    reason: str,
    final: bool,
    realm_id: str,
) -> None:
    """Remember the skip, so polling does not ask again until the transaction changes."""
    link = link or ReceiptLink(crm_id=txn.id)
    if link.qbo_id:
        return  # already booked (sales receipts switched off since): keep the booking as it is
    links.save_receipt(
        ctx.session,
        ctx.location_id,
        replace(
            link,
            state=links.SKIPPED,
            reason=reason,
            final=final,
            txn_status=txn.status,
            kind=kind.value,
            realm_id=realm_id,
        ),
    )


def _order(run: _Run) -> CrmOrder | None:
    order_id = run.txn.order_id
    if not order_id:
        return None
    raw = run.crm.get_order(order_id)
    return CrmOrder.from_api(raw) if raw is not None else None


def _contact(txn: CrmTransaction, order: CrmOrder | None) -> CrmContactDetails:
    """The payer: the order's contact snapshot when it names someone, else the transaction's."""
    if order is not None and (order.contact.email or order.contact.id):
        return order.contact
    return txn.contact


def _mapped_payment_method(run: _Run) -> str | None:
    """The QuickBooks payment method the current ``payment_method_map`` gives this payment, if any."""
    for key in payment_method_key_candidates(run.txn):
        mapped = run.settings.payment_method_map.get(key)
        if mapped:
            return mapped
    return None


def _payment_method_id(run: _Run) -> str:
    mapped = _mapped_payment_method(run)
    if mapped:
        return mapped
    draft = payment_method_draft(run.txn)
    return resolve_payment_method(run.ctx, draft["Name"], draft["Type"], run.qbo)


def _deposit_account_id(run: _Run) -> str:
    return run.settings.deposit_account_id or undeposited_funds_account(run.ctx, run.qbo)


def _receipt_body(run: _Run) -> tuple[ReceiptDraft, ReceiptContext]:
    txn, ctx, qbo, settings = run.txn, run.ctx, run.qbo, run.settings
    run.facts.check_currency(txn.currency, "CRM payment")
    order = _order(run)
    currency = txn.currency if run.facts.multicurrency else None
    customer_id = resolve_customer(ctx, _contact(txn, order), qbo, currency=currency)
    explained = order_explains(txn, order)
    item_ids: list[str] = []
    shipping_item_id = settings.shipping_item_id
    if explained and order is not None:
        item_ids = [resolve_item(ctx, line, qbo, settings) for line in order.items]
        if order.shipping > 0 and not shipping_item_id:
            shipping_item_id = resolve_item(ctx, shipping_line(), qbo, settings)
    receipt_ctx = ReceiptContext(
        customer_id=customer_id,
        company=run.facts,
        item_ids=item_ids,
        fallback_item_id=None if explained else resolve_item(ctx, fallback_line(txn, run.kind, order), qbo, settings),
        tax_mapping=tax_mapping(settings),
        shipping_item_id=shipping_item_id,
        payment_method_id=_payment_method_id(run),
        deposit_account_id=_deposit_account_id(run),
        discount_account_id=settings.discount_account_id,
        rounding_item_id=rounding_item(ctx, qbo, settings) if explained and not run.facts.is_us else None,
    )
    if receipt_ctx.fallback_item_id is None:
        try:
            return draft_sales_receipt(txn, order, receipt_ctx), receipt_ctx
        except MappingError:
            # Did the order's lines fail to explain the charge (e.g. their tax disagrees), so that the
            # mapping wanted the one-line fallback? Probing with a placeholder item tells, without I/O;
            # any other reason (an unmapped tax…) is raised as it is.
            build_sales_receipt(txn, order, replace(receipt_ctx, fallback_item_id=_PROBE_ITEM))
        fallback = resolve_item(ctx, fallback_line(txn, run.kind, order), qbo, settings)
        receipt_ctx = replace(receipt_ctx, fallback_item_id=fallback)
    return draft_sales_receipt(txn, order, receipt_ctx), receipt_ctx


def _first_item(body: dict[str, Any]) -> str | None:
    for line in body.get("Line") or []:
        detail = line.get("SalesItemLineDetail")
        if isinstance(detail, dict):
            return str(detail["ItemRef"]["value"])
    return None


def _book_receipt(run: _Run, link: ReceiptLink | None) -> ReceiptLink:
    ctx, txn = run.ctx, run.txn
    draft, receipt_ctx = _receipt_body(run)
    body = draft.body
    link = link or ReceiptLink(crm_id=txn.id)
    # a request whose outcome is unknown is replayed under its requestid; a refused one was forgotten
    rid = link.request_id or links.receipt_request_id(ctx.location_id, txn.id, link.refused)
    # durable before QuickBooks sees the requestid (the engine commits before each call)
    link = links.save_receipt(
        ctx.session,
        ctx.location_id,
        replace(link, request_id=rid, state=links.BOOKING, kind=run.kind.value, realm_id=run.realm_id),
    )
    try:
        created = QboReceipt.from_api(run.qbo.create("SalesReceipt", body, request_id=rid))
    except QboFault as exc:
        if refused(exc):  # nothing was booked: the retry plans the receipt again under a new requestid
            links.save_receipt(ctx.session, ctx.location_id, replace(link, request_id=None, refused=link.refused + 1))
        raise
    total = round_money(created.total, txn.currency)
    charged = round_money(txn.amount, txn.currency)
    link = links.save_receipt(
        ctx.session,
        ctx.location_id,
        replace(
            link,
            qbo_id=created.id,
            sync_token=created.sync_token,
            state=links.BOOKED,
            total=total,
            total_ok=total == charged,
            customer_id=receipt_ctx.customer_id,
            item_id=_first_item(body),
            payment_method_id=receipt_ctx.payment_method_id,
            deposit_account_id=receipt_ctx.deposit_account_id,
            tax_note=draft.tax_note,
        ),
    )
    assert link.qbo_id is not None
    if draft.tax_note:
        ctx.log.warning("sales_receipt.tax_untaxed", note=draft.tax_note)
    if total != charged:
        raise _mismatch(link.qbo_id, total, charged, txn)
    ctx.log.info("sales_receipt.created", qbo_id=link.qbo_id, total=str(total), request_id=rid)
    return link


def _mismatch(qbo_id: str, total: Decimal, charged: Decimal, txn: CrmTransaction) -> PermanentError:
    return PermanentError(
        f"QuickBooks sales receipt {qbo_id} totals {total} {txn.currency}, but the CRM charged {charged} "
        f"{txn.currency} (payment {txn.charge_reference}). Correct the receipt in QuickBooks, then retry.",
        code="total_mismatch",
    )


def _check_total(run: _Run, link: ReceiptLink) -> ReceiptLink:
    """A receipt booked with a total that did not match: read it again; fail until someone corrects it."""
    if link.total_ok or not link.qbo_id:
        return link
    current = QboReceipt.from_api(run.qbo.read("SalesReceipt", link.qbo_id))
    total = round_money(current.total, run.txn.currency)
    charged = round_money(run.txn.amount, run.txn.currency)
    if total != charged:
        raise _mismatch(link.qbo_id, total, charged, run.txn)
    return links.save_receipt(run.ctx.session, run.ctx.location_id, replace(link, total=total, total_ok=True))


def _refund_targets(link: ReceiptLink, txn: CrmTransaction) -> list[Decimal]:
    """Cumulative refunded amounts to book, in order: an interrupted refund first (its requestid is
    replayed as it was, so a refund QuickBooks already holds is never booked again), then the CRM's figure."""
    booked = round_money(link.refunded, txn.currency)
    targets: list[Decimal] = []
    if link.refund_pending is not None:
        interrupted = round_money(link.refund_pending.cumulative, txn.currency)
        if interrupted > booked:
            targets.append(interrupted)
    current = round_money(txn.amount_refunded, txn.currency)
    if current > max([booked, *targets]):
        targets.append(current)
    return targets


def _book_refunds(run: _Run, link: ReceiptLink) -> list[tuple[str, Decimal]]:
    """Book what the CRM refunded since the last refund receipt: [(RefundReceipt Id, amount)]."""
    targets = _refund_targets(link, run.txn)
    if not targets:
        return []
    if link.realm_id and link.realm_id != run.realm_id:
        raise PermanentError(
            f"The payment {run.txn.charge_reference} was booked in another QuickBooks company, so its refund "
            "cannot be booked here.",
            code="other_company",
        )
    booked: list[tuple[str, Decimal]] = []
    for cumulative in targets:
        link, refund = _book_refund(run, link, cumulative)
        booked.append(refund)
    return booked


def _book_refund(run: _Run, link: ReceiptLink, cumulative: Decimal) -> tuple[ReceiptLink, tuple[str, Decimal]]:
    ctx, txn = run.ctx, run.txn
    amount = refund_needed(cumulative, link.refunded, txn.currency)
    pending = link.refund_pending
    if pending is not None and pending.request_id and pending.cumulative == cumulative:
        rid = pending.request_id  # outcome unknown: replayed under its requestid
    else:
        rid = links.refund_request_id(ctx.location_id, txn.id, cumulative, link.refused)
    # durable before QuickBooks sees the requestid (the engine commits before each call)
    link = links.save_receipt(
        ctx.session, ctx.location_id, replace(link, refund_pending=PendingRefund(cumulative, rid))
    )
    if link.customer_id is None:
        raise KeyError("customer_id")  # booked receipts always record their customer
    refund_ctx = ReceiptContext(
        customer_id=link.customer_id,
        company=run.facts,
        fallback_item_id=link.item_id,
        # planned from the current settings: a payment-method mapping fixed since applies
        payment_method_id=_mapped_payment_method(run) or link.payment_method_id,
        deposit_account_id=link.deposit_account_id or _deposit_account_id(run),
    )
    body = build_refund_receipt(txn, amount, refund_ctx)
    try:
        created = QboReceipt.from_api(run.qbo.create("RefundReceipt", body, request_id=rid))
    except QboFault as exc:
        if refused(exc):  # nothing was booked: the retry plans the refund again under a new requestid
            forgotten = replace(link, refund_pending=None, refused=link.refused + 1)
            links.save_receipt(ctx.session, ctx.location_id, forgotten)
        raise
    qbo_id = created.id
    total = round_money(created.total, txn.currency)
    entry = RefundEntry(qbo_id=qbo_id, amount=amount, total=total, cumulative=cumulative, request_id=rid)
    link = links.save_receipt(
        ctx.session,
        ctx.location_id,
        replace(link, refund_pending=None, refunded=cumulative, refunds=(*link.refunds, entry)),
    )
    if total != amount:
        raise PermanentError(
            f"QuickBooks refund receipt {qbo_id} totals {total} {txn.currency}, but the CRM refunded "
            f"{amount} {txn.currency} (payment {txn.charge_reference}). Correct it in QuickBooks.",
            code="total_mismatch",
        )
    ctx.log.info("refund_receipt.created", qbo_id=qbo_id, amount=str(amount), request_id=rid)
    return link, (qbo_id, amount)

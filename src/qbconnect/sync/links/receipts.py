"""The link of a CRM transaction and the QuickBooks sales receipt it became (kind ``sales_receipt``).

One row per CRM transaction id (``crm_id``), whatever route the transaction arrived by (webhook, polling,
redelivery). ``qbo_id`` is the SalesReceipt Id once booked; ``request_id`` is the create's ``requestid``,
stored (committed) before the call. ``data`` holds:

| key | meaning |
|---|---|
| ``state`` | ``booking`` (requestid stored, call under way or failed), ``booked`` or ``skipped`` |
| ``realm_id`` | the QuickBooks company the receipt is in |
| ``reason``, ``final``, ``txn_status`` | a skip: why, whether a later look can change it, the CRM status then |
| ``kind`` | the receipt kind (``domain.sources.ReceiptKind``) |
| ``total``, ``total_ok`` | QuickBooks' TotalAmt and whether it equals the amount charged |
| ``customer_id``, ``item_id``, ``payment_method_id``, ``deposit_account_id`` | what refunds reuse |
| ``refunded`` | the CRM's cumulative ``amountRefunded`` already booked as refund receipts |
| ``refunds`` | one entry per RefundReceipt: ``qbo_id``, ``amount``, ``total``, ``cumulative``, ``request_id`` |
| ``refund_pending`` | a refund under way: ``cumulative``, ``request_id`` (stored before the call) |
| ``tax_note`` | why the receipt was booked untaxed, when it was |
| ``refused`` | requests QuickBooks refused with a fault (they created nothing); part of every new requestid |

:class:`ReceiptLink` is the typed record of a row; keys it does not know are kept as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.db.link_model import Link
from qbconnect.domain.crm_models import CrmTransaction
from qbconnect.domain.money import parse_amount, round_money
from qbconnect.sync.links import rows
from qbconnect.sync.lookup import request_id

KIND = "sales_receipt"

BOOKING = "booking"
BOOKED = "booked"
SKIPPED = "skipped"


def receipt_request_id(location_id: str, transaction_id: str, generation: int = 0) -> str:
    """The SalesReceipt create's ``requestid``: the same for every run of the same transaction."""
    return request_id(location_id, KIND, transaction_id, "create", generation)


def refund_request_id(location_id: str, transaction_id: str, cumulative_refunded: Decimal, generation: int = 0) -> str:
    """A RefundReceipt's ``requestid``, from the cumulative refunded amount: one receipt per refund.
    ``generation`` (the refused requests so far) makes the request re-planned after a refusal a new one."""
    parts = (generation,) if generation else ()
    return request_id(location_id, KIND, transaction_id, "refund", format(cumulative_refunded, "f"), *parts)


def _decimal(value: Any) -> Decimal:
    """A stored figure; a missing or unreadable one counts as zero."""
    return parse_amount(value, Decimal(0), lenient=True)


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _amount_text(value: Decimal) -> str:
    return format(value, "f")


_KNOWN = frozenset(
    {
        "state",
        "realm_id",
        "reason",
        "final",
        "txn_status",
        "kind",
        "total",
        "total_ok",
        "customer_id",
        "item_id",
        "payment_method_id",
        "deposit_account_id",
        "refunded",
        "refunds",
        "refund_pending",
        "tax_note",
        "refused",
    }
)


@dataclass(frozen=True)
class RefundEntry:
    """One RefundReceipt booked for the transaction."""

    qbo_id: str
    amount: Decimal
    cumulative: Decimal
    request_id: str | None
    total: Decimal | None = None

    @classmethod
    def load(cls, raw: Mapping[str, Any]) -> RefundEntry:
        total = raw.get("total")
        return cls(
            qbo_id=str(raw.get("qbo_id") or ""),
            amount=_decimal(raw.get("amount")),
            cumulative=_decimal(raw.get("cumulative")),
            request_id=_text(raw.get("request_id")),
            total=_decimal(total) if total is not None else None,
        )

    def dump(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {"qbo_id": self.qbo_id, "amount": _amount_text(self.amount)}
        if self.total is not None:
            out["total"] = _amount_text(self.total)
        out["cumulative"] = _amount_text(self.cumulative)
        out["request_id"] = self.request_id
        return out


@dataclass(frozen=True)
class PendingRefund:
    """A RefundReceipt whose requestid is stored and whose create may not have happened yet."""

    cumulative: Decimal
    request_id: str


@dataclass(frozen=True)
class ReceiptLink:
    """The typed record of a ``sales_receipt`` link row. Change it with ``dataclasses.replace`` and store it
    with :func:`save_receipt`."""

    crm_id: str
    qbo_id: str | None = None
    request_id: str | None = None
    sync_token: str | None = None
    state: str | None = None  # booking | booked | skipped
    realm_id: str | None = None
    kind: str | None = None  # domain.sources.ReceiptKind value
    reason: str | None = None
    final: bool = True
    txn_status: str | None = None
    total: Decimal | None = None
    total_ok: bool = True
    customer_id: str | None = None
    item_id: str | None = None
    payment_method_id: str | None = None
    deposit_account_id: str | None = None
    refunded: Decimal = Decimal(0)
    refunds: tuple[RefundEntry, ...] = ()
    refund_pending: PendingRefund | None = None
    tax_note: str | None = None
    refused: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this record does not know, kept as they are
    row_id: int | None = None

    @classmethod
    def of(cls, row: Link) -> ReceiptLink:
        data = row.data or {}
        pending = data.get("refund_pending")
        refunds = data.get("refunds")
        total = data.get("total")
        refunded = data.get("refunded")
        return cls(
            crm_id=row.crm_id,
            qbo_id=row.qbo_id,
            request_id=row.request_id,
            sync_token=row.sync_token,
            state=_text(data.get("state")),
            realm_id=_text(data.get("realm_id")),
            kind=_text(data.get("kind")),
            reason=_text(data.get("reason")),
            final=bool(data.get("final", True)),
            txn_status=_text(data.get("txn_status")),
            total=_decimal(total) if total is not None else None,
            total_ok=bool(data.get("total_ok", True)),
            customer_id=_text(data.get("customer_id")),
            item_id=_text(data.get("item_id")),
            payment_method_id=_text(data.get("payment_method_id")),
            deposit_account_id=_text(data.get("deposit_account_id")),
            refunded=_decimal(refunded if refunded is not None else 0),
            refunds=tuple(RefundEntry.load(r) for r in refunds if isinstance(r, Mapping))
            if isinstance(refunds, list)
            else (),
            refund_pending=PendingRefund(_decimal(pending["cumulative"]), str(pending.get("request_id") or ""))
            if isinstance(pending, Mapping) and pending.get("cumulative") is not None
            else None,
            tax_note=_text(data.get("tax_note")),
            refused=int(data.get("refused") or 0),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
            row_id=row.id,
        )

    def dump(self) -> dict[str, Any]:
        """The ``data`` column: the same keys as ever."""
        data: dict[str, Any] = dict(self.extra)
        optional = {
            "state": self.state,
            "realm_id": self.realm_id,
            "kind": self.kind,
            "reason": self.reason,
            "txn_status": self.txn_status,
            "total": _amount_text(self.total) if self.total is not None else None,
            "customer_id": self.customer_id,
            "item_id": self.item_id,
            "payment_method_id": self.payment_method_id,
            "deposit_account_id": self.deposit_account_id,
            "tax_note": self.tax_note,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        data["final"] = self.final
        data["total_ok"] = self.total_ok
        data["refunded"] = _amount_text(self.refunded)
        data["refunds"] = [entry.dump() for entry in self.refunds]
        if self.refused:
            data["refused"] = self.refused
        if self.refund_pending is not None:
            data["refund_pending"] = {
                "cumulative": _amount_text(self.refund_pending.cumulative),
                "request_id": self.refund_pending.request_id,
            }
        return data


@dataclass(frozen=True)
class ReceiptState:
    """What the link row says about one CRM transaction."""

    state: str | None
    qbo_id: str | None
    realm_id: str | None
    refunded: Decimal
    skip_final: bool
    txn_status: str | None

    @property
    def booked(self) -> bool:
        return self.qbo_id is not None

    @property
    def skipped(self) -> bool:
        return not self.booked and self.state == SKIPPED

    @classmethod
    def of(cls, link: ReceiptLink | None) -> ReceiptState | None:
        if link is None:
            return None
        return cls(
            state=link.state,
            qbo_id=link.qbo_id,
            realm_id=link.realm_id,
            refunded=link.refunded,
            skip_final=link.final,
            txn_status=link.txn_status,
        )


def look_reason(state: ReceiptState | None, txn: CrmTransaction, *, new: bool) -> str | None:
    """Why a listed CRM transaction needs a TRANSACTION job now, or None when it is in step.

    ``new``: the transaction is inside the window where unseen transactions count (the polling cursor,
    or any transaction of an order a webhook just named).
    """
    if state is None:
        return "new payment" if new else None
    if state.booked:
        if round_money(txn.amount_refunded, txn.currency) > round_money(state.refunded, txn.currency):
            return "refund to book"
        return None
    if state.skipped:
        if not state.skip_final and (txn.status or "") != (state.txn_status or ""):
            return f"payment status now {txn.status or 'unknown'}"
        return None
    return "payment not booked yet" if new else None


def receipt_links(session: Session, location_id: str, transaction_ids: Iterable[str]) -> dict[str, ReceiptLink]:
    """The ``sales_receipt`` links of these transactions, by CRM transaction id."""
    return {
        crm_id: ReceiptLink.of(row) for crm_id, row in rows.of_kind(session, location_id, KIND, transaction_ids).items()
    }


def find_receipt(session: Session, location_id: str, transaction_id: str) -> ReceiptLink | None:
    row = rows.find(session, location_id, KIND, transaction_id)
    return ReceiptLink.of(row) if row is not None else None


def save_receipt(session: Session, location_id: str, link: ReceiptLink) -> ReceiptLink:
    """Store the record (creating its row the first time), flushed; returns it with its row id."""
    row = rows.find_or_new(session, location_id, KIND, link.crm_id, link.row_id)
    row.qbo_id = link.qbo_id
    row.request_id = link.request_id
    row.sync_token = link.sync_token
    row.data = link.dump()
    session.flush()
    return ReceiptLink.of(row)

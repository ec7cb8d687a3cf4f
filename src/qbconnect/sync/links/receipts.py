"""The link row of a CRM transaction and the QuickBooks sales receipt it became (``Link`` kind ``sales_receipt``).

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
| ``refunds`` | one entry per RefundReceipt: ``qbo_id``, ``amount``, ``cumulative``, ``request_id`` |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.db.models import Link
from qbconnect.domain.crm_models import CrmTransaction
from qbconnect.domain.money import round_money, to_decimal
from qbconnect.sync.lookup import request_id

KIND = "sales_receipt"

BOOKING = "booking"
BOOKED = "booked"
SKIPPED = "skipped"


def receipt_request_id(location_id: str, transaction_id: str, generation: int = 0) -> str:
    """The SalesReceipt create's ``requestid``: the same for every run of the same transaction."""
    return request_id(location_id, KIND, transaction_id, "create", generation)


def refund_request_id(location_id: str, transaction_id: str, cumulative_refunded: Decimal) -> str:
    """A RefundReceipt's ``requestid``, from the cumulative refunded amount: one receipt per refund."""
    return request_id(location_id, KIND, transaction_id, "refund", format(cumulative_refunded, "f"))


def _decimal(value: Any) -> Decimal:
    try:
        return to_decimal(value)
    except ValueError:
        return Decimal(0)


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
    def of(cls, link: Link | None) -> ReceiptState | None:
        if link is None:
            return None
        data = link.data or {}
        return cls(
            state=str(data["state"]) if data.get("state") else None,
            qbo_id=link.qbo_id,
            realm_id=str(data["realm_id"]) if data.get("realm_id") else None,
            refunded=_decimal(data.get("refunded", 0)),
            skip_final=bool(data.get("final", True)),
            txn_status=str(data["txn_status"]) if data.get("txn_status") else None,
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


def receipt_links(session: Session, location_id: str, transaction_ids: Iterable[str]) -> dict[str, Link]:
    """The ``sales_receipt`` links of these transactions, by CRM transaction id."""
    ids = sorted(set(transaction_ids))
    found: dict[str, Link] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = session.execute(
            select(Link).where(Link.location_id == location_id, Link.kind == KIND, Link.crm_id.in_(chunk))
        ).scalars()
        for link in rows:
            found[link.crm_id] = link
    return found


def update_data(link: Link, **changes: Any) -> None:
    """Replace ``link.data`` with a changed copy (the JSON column does not track in-place edits)."""
    link.data = {**(link.data or {}), **changes}

"""QuickBooks objects the sync decides on, as frozen dataclasses parsed from the Accounting API's JSON.

Only the fields a decision reads are typed; ``raw`` keeps the object as QuickBooks sent it for what is
passed on whole (a content hash, a sparse update's SyncToken echo). Amounts become ``Decimal`` exactly as
sent; times become aware UTC datetimes. Field names follow Intuit's schema (``Customer``, ``Invoice``,
``Payment``, ``SalesReceipt``, ``RefundReceipt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain.crm_models import parse_datetime
from qbconnect.domain.money import parse_amount

ZERO = Decimal(0)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    return str(value).strip() or None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _amount(value: Any) -> Decimal:
    return parse_amount(value, ZERO, lenient=True)


def _ref(value: Any) -> str | None:
    return _text(_mapping(value).get("value"))


def _linked(value: Any, txn_type: str) -> tuple[str, ...]:
    """The ids of the ``LinkedTxn`` entries of one type, in order, once each."""
    found: list[str] = []
    for txn in value if isinstance(value, list) else []:
        txn = _mapping(txn)
        txn_id = _text(txn.get("TxnId"))
        if txn.get("TxnType") == txn_type and txn_id and txn_id not in found:
            found.append(txn_id)
    return tuple(found)


def _created(obj: Mapping[str, Any]) -> datetime | None:
    return parse_datetime(_mapping(obj.get("MetaData")).get("CreateTime"))


def _updated(obj: Mapping[str, Any]) -> datetime | None:
    return parse_datetime(_mapping(obj.get("MetaData")).get("LastUpdatedTime"))


@dataclass(frozen=True)
class QboCustomer:
    id: str
    display_name: str | None
    email: str | None  # PrimaryEmailAddr.Address as sent (not normalised)
    active: bool
    deleted: bool  # a CDC answer's ``status: Deleted``
    currency: str | None
    sync_token: str | None
    updated_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> QboCustomer:
        return cls(
            id=_text(obj.get("Id")) or "",
            display_name=_text(obj.get("DisplayName")),
            email=_text(_mapping(obj.get("PrimaryEmailAddr")).get("Address")),
            active=obj.get("Active") is not False,
            deleted=obj.get("status") == "Deleted",
            currency=_ref(obj.get("CurrencyRef")),
            sync_token=_text(obj.get("SyncToken")),
            updated_at=_updated(obj),
            raw=obj,
        )


@dataclass(frozen=True)
class QboInvoice:
    """An Invoice as QuickBooks answered a create, update, void or read.

    ``lines`` stay as QuickBooks sent them (a changed line set is sent whole); ``payment_ids`` are the
    Payments QuickBooks lists as applied to it (``LinkedTxn`` of type Payment)."""

    id: str
    doc_number: str | None
    customer_id: str | None
    total: Decimal
    balance: Decimal
    currency: str | None
    txn_date: str | None
    sync_token: str | None
    created_at: datetime | None
    due_date: str | None = None
    private_note: str | None = None
    bill_email: str | None = None
    total_tax: Decimal | None = None  # TxnTaxDetail.TotalTax, when QuickBooks states it
    global_tax_calculation: str | None = None
    apply_tax_after_discount: bool = False
    lines: tuple[Mapping[str, Any], ...] = ()
    payment_ids: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> QboInvoice:
        tax = _mapping(obj.get("TxnTaxDetail")).get("TotalTax")
        lines = obj.get("Line")
        return cls(
            id=_text(obj.get("Id")) or "",
            doc_number=_text(obj.get("DocNumber")),
            customer_id=_ref(obj.get("CustomerRef")),
            total=_amount(obj.get("TotalAmt")),
            balance=_amount(obj.get("Balance")),
            currency=_ref(obj.get("CurrencyRef")),
            txn_date=_text(obj.get("TxnDate")),
            sync_token=_text(obj.get("SyncToken")),
            created_at=_created(obj),
            due_date=_text(obj.get("DueDate")),
            private_note=_text(obj.get("PrivateNote")),
            bill_email=_text(_mapping(obj.get("BillEmail")).get("Address")),
            total_tax=_amount(tax) if tax is not None else None,
            global_tax_calculation=_text(obj.get("GlobalTaxCalculation")),
            apply_tax_after_discount=obj.get("ApplyTaxAfterDiscount") is True,
            lines=tuple(_mapping(line) for line in lines) if isinstance(lines, list) else (),
            payment_ids=_linked(obj.get("LinkedTxn"), "Payment"),
            raw=obj,
        )

    @property
    def paid(self) -> Decimal:
        """What QuickBooks holds as paid on the invoice: TotalAmt - Balance."""
        return self.total - self.balance


@dataclass(frozen=True)
class QboPayment:
    id: str
    customer_id: str | None
    total: Decimal
    invoice_ids: tuple[str, ...]  # the invoices its lines apply an amount to (LinkedTxn of type Invoice)
    created_at: datetime | None
    sync_token: str | None = None
    private_note: str | None = None
    customer_name: str | None = None  # CustomerRef.name, as QuickBooks fills it
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> QboPayment:
        linked: list[str] = []
        lines = obj.get("Line")
        for line in lines if isinstance(lines, list) else []:
            line = _mapping(line)
            if _amount(line.get("Amount")) > 0:
                linked += [txn_id for txn_id in _linked(line.get("LinkedTxn"), "Invoice") if txn_id not in linked]
        return cls(
            id=_text(obj.get("Id")) or "",
            customer_id=_ref(obj.get("CustomerRef")),
            customer_name=_text(_mapping(obj.get("CustomerRef")).get("name")),
            total=_amount(obj.get("TotalAmt")),
            invoice_ids=tuple(linked),
            created_at=_created(obj),
            sync_token=_text(obj.get("SyncToken")),
            private_note=_text(obj.get("PrivateNote")),
            raw=obj,
        )


@dataclass(frozen=True)
class QboReceipt:
    """A SalesReceipt or RefundReceipt as QuickBooks answered its create."""

    id: str
    total: Decimal
    sync_token: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> QboReceipt:
        return cls(
            id=_text(obj.get("Id")) or "",
            total=_amount(obj.get("TotalAmt")),
            sync_token=_text(obj.get("SyncToken")),
            raw=obj,
        )

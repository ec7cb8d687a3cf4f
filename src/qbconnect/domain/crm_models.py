"""CRM (HighLevel) invoices, orders and transactions as frozen dataclasses, parsed from API JSON.

Parsers accept the shapes of the REST responses (``GET /invoices/{id}``, ``GET /payments/orders/{id}``,
``GET /payments/transactions[/{id}]``) and of the webhook bodies (InvoiceSent, OrderCreate, ...).
Amounts become ``Decimal`` exactly as sent (no rounding here); times become aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain.money import parse_amount

ZERO = Decimal(0)


def _str(value: Any) -> str | None:
    """Text or None; numbers (e.g. ``invoiceNumber: 19``) become their text."""
    if value is None or isinstance(value, bool):
        return None
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    text = text.strip()
    return text or None


def _amount(value: Any, default: Decimal = ZERO) -> Decimal:
    return parse_amount(value, default)


def _optional_amount(value: Any) -> Decimal | None:
    return parse_amount(value, None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 text (``2023-12-12T09:27:42.355Z``) → aware UTC datetime; naive means UTC."""
    text = _str(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: Any) -> date | None:
    """``YYYY-MM-DD`` (or a full timestamp, whose UTC date is taken) → date."""
    text = _str(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        stamp = parse_datetime(text)
        return stamp.date() if stamp else None


@dataclass(frozen=True)
class CrmAddress:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country_code: str | None = None

    @property
    def is_empty(self) -> bool:
        return not any((self.line1, self.line2, self.city, self.state, self.postal_code, self.country_code))


@dataclass(frozen=True)
class CrmContactDetails:
    id: str | None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company_name: str | None = None
    address: CrmAddress | None = None
    first_name: str | None = None
    last_name: str | None = None

    @classmethod
    def from_invoice(cls, data: Mapping[str, Any]) -> CrmContactDetails:
        """From an invoice's ``contactDetails``."""
        address = _mapping(data.get("address"))
        parsed = CrmAddress(
            line1=_str(address.get("addressLine1")),
            line2=_str(address.get("addressLine2")),
            city=_str(address.get("city")),
            state=_str(address.get("state")),
            postal_code=_str(address.get("postalCode")),
            country_code=_str(address.get("countryCode")),
        )
        return cls(
            id=_str(data.get("id")),
            name=_str(data.get("name")),
            email=_str(data.get("email")),
            phone=_str(data.get("phoneNo")),
            company_name=_str(data.get("companyName")),
            address=None if parsed.is_empty else parsed,
        )

    @classmethod
    def from_snapshot(
        cls,
        snapshot: Mapping[str, Any],
        *,
        contact_id: Any = None,
        name: Any = None,
        email: Any = None,
    ) -> CrmContactDetails:
        """From an order's/transaction's ``contactSnapshot`` (camelCase or snake_case keys)."""

        def pick(*keys: str) -> str | None:
            for key in keys:
                text = _str(snapshot.get(key))
                if text:
                    return text
            return None

        first = pick("firstName", "first_name")
        last = pick("lastName", "last_name")
        full = pick("name", "fullName", "full_name") or _str(name)
        if full is None and (first or last):
            full = " ".join(part for part in (first, last) if part)
        address = CrmAddress(
            line1=pick("address1", "address"),
            city=pick("city"),
            state=pick("state"),
            postal_code=pick("postalCode", "postal_code"),
            country_code=pick("country"),
        )
        return cls(
            id=pick("id", "_id") or _str(contact_id),
            name=full,
            email=pick("email") or _str(email),
            phone=pick("phone"),
            company_name=pick("companyName", "company_name"),
            address=None if address.is_empty else address,
            first_name=first,
            last_name=last,
        )


@dataclass(frozen=True)
class CrmTax:
    id: str | None
    name: str
    rate: Decimal  # percent: 8.25 means 8.25 %
    calculation: str = "exclusive"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CrmTax:
        return cls(
            id=_str(data.get("_id")) or _str(data.get("taxId")) or _str(data.get("id")),
            name=_str(data.get("name")) or "",
            rate=_amount(data.get("rate")),
            calculation=_str(data.get("calculation")) or "exclusive",
        )


@dataclass(frozen=True)
class CrmLine:
    name: str
    description: str | None
    product_id: str | None
    price_id: str | None
    qty: Decimal
    unit_price: Decimal
    taxes: tuple[CrmTax, ...] = ()
    tax_inclusive: bool = False

    @classmethod
    def from_invoice_item(cls, data: Mapping[str, Any]) -> CrmLine:
        return cls(
            name=_str(data.get("name")) or "",
            description=_str(data.get("description")),
            product_id=_str(data.get("productId")),
            price_id=_str(data.get("priceId")),
            qty=_amount(data.get("qty"), Decimal(1)),
            unit_price=_amount(data.get("amount")),
            taxes=tuple(CrmTax.from_api(t) for t in _list(data.get("taxes")) if isinstance(t, Mapping)),
            tax_inclusive=bool(data.get("taxInclusive", False)),
        )

    @classmethod
    def from_order_item(cls, data: Mapping[str, Any]) -> CrmLine:
        """From an order's ``items[]`` entry: ``{name, qty, product{_id, taxes}, price{_id, amount}}``."""
        product = _mapping(data.get("product"))
        price = _mapping(data.get("price"))
        taxes = _list(data.get("taxes")) or _list(product.get("taxes"))
        unit = price.get("amount", data.get("amount"))
        return cls(
            name=_str(data.get("name")) or _str(product.get("name")) or "",
            description=_str(data.get("description")),
            product_id=_str(product.get("_id")) or _str(data.get("productId")),
            price_id=_str(price.get("_id")) or _str(data.get("priceId")),
            qty=_amount(data.get("qty"), Decimal(1)),
            unit_price=_amount(unit),
            taxes=tuple(CrmTax.from_api(t) for t in taxes if isinstance(t, Mapping) and not t.get("deleted", False)),
            tax_inclusive=bool(data.get("taxInclusive", price.get("taxInclusive", False))),
        )


@dataclass(frozen=True)
class CrmDiscount:
    type: str  # "percentage" | "fixed"
    value: Decimal
    valid_on_product_ids: tuple[str, ...] = ()

    @property
    def is_percentage(self) -> bool:
        return self.type != "fixed"

    @classmethod
    def from_api(cls, data: Any) -> CrmDiscount | None:
        if not isinstance(data, Mapping):
            return None
        value = _amount(data.get("value"))
        if value <= 0:
            return None
        products = tuple(p for p in (_str(x) for x in _list(data.get("validOnProductIds"))) if p)
        return cls(type=_str(data.get("type")) or "percentage", value=value, valid_on_product_ids=products)


@dataclass(frozen=True)
class CrmInvoice:
    id: str
    location_id: str | None
    status: str
    live_mode: bool
    number: str | None
    currency: str
    contact: CrmContactDetails
    issue_date: date | None
    due_date: date | None
    items: tuple[CrmLine, ...]
    discount: CrmDiscount | None
    total: Decimal
    amount_paid: Decimal
    amount_due: Decimal
    subtotal: Decimal | None
    discount_total: Decimal | None
    tax_total: Decimal | None
    created_at: datetime | None
    updated_at: datetime | None
    name: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CrmInvoice:
        """From ``GET /invoices/{id}`` (or an Invoice* webhook body)."""
        invoice = _mapping(data.get("invoice")) or data
        summary = _mapping(invoice.get("totalSummary"))
        total = _amount(invoice.get("total"))
        paid = _amount(invoice.get("amountPaid"))
        due = _optional_amount(invoice.get("amountDue"))
        return cls(
            id=_str(invoice.get("_id")) or _str(invoice.get("id")) or "",
            location_id=_str(invoice.get("altId")) or _str(invoice.get("locationId")),
            status=_str(invoice.get("status")) or "",
            live_mode=bool(invoice.get("liveMode", True)),
            number=_str(invoice.get("invoiceNumber")),
            currency=(_str(invoice.get("currency")) or "USD").upper(),
            contact=CrmContactDetails.from_invoice(_mapping(invoice.get("contactDetails"))),
            issue_date=parse_date(invoice.get("issueDate")),
            due_date=parse_date(invoice.get("dueDate")),
            items=tuple(
                CrmLine.from_invoice_item(item)
                for item in _list(invoice.get("invoiceItems"))
                if isinstance(item, Mapping)
            ),
            discount=CrmDiscount.from_api(invoice.get("discount")),
            total=total,
            amount_paid=paid,
            amount_due=due if due is not None else total - paid,
            subtotal=_optional_amount(summary.get("subTotal")),
            discount_total=_optional_amount(summary.get("discount")),
            tax_total=_optional_amount(summary.get("tax")),
            created_at=parse_datetime(invoice.get("createdAt")),
            updated_at=parse_datetime(invoice.get("updatedAt")),
            name=_str(invoice.get("name")),
        )


@dataclass(frozen=True)
class CrmTaxLine:
    """One entry of an order's ``taxSummary``."""

    id: str | None
    name: str
    rate: Decimal
    calculation: str
    amount: Decimal


@dataclass(frozen=True)
class CrmSource:
    type: str | None
    sub_type: str | None
    id: str | None
    name: str | None


def _source(data: Mapping[str, Any], nested_key: str, prefix: str) -> CrmSource:
    nested = _mapping(data.get(nested_key))
    return CrmSource(
        type=_str(nested.get("type")) or _str(data.get(f"{prefix}Type")),
        sub_type=_str(nested.get("subType")) or _str(data.get(f"{prefix}SubType")),
        id=_str(nested.get("id")) or _str(data.get(f"{prefix}Id")),
        name=_str(nested.get("name")) or _str(data.get(f"{prefix}Name")),
    )


@dataclass(frozen=True)
class CrmOrder:
    id: str
    location_id: str | None
    contact_id: str | None
    contact: CrmContactDetails
    source: CrmSource
    items: tuple[CrmLine, ...]
    amount: Decimal
    subtotal: Decimal
    discount: Decimal
    tax: Decimal
    shipping: Decimal
    tax_lines: tuple[CrmTaxLine, ...]
    currency: str
    live_mode: bool
    status: str | None
    payment_status: str | None
    coupon_code: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def source_type(self) -> str | None:
        return self.source.type

    @property
    def source_sub_type(self) -> str | None:
        return self.source.sub_type

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CrmOrder:
        """From ``GET /payments/orders/{id}``, an orders list entry, or an OrderCreate/OrderStatusUpdate body."""
        order = _mapping(data.get("order")) or data
        summary = _mapping(order.get("amountSummary"))
        tax_lines = tuple(
            CrmTaxLine(
                id=_str(t.get("_id")),
                name=_str(t.get("name")) or "",
                rate=_amount(t.get("rate")),
                calculation=_str(t.get("calculation")) or "exclusive",
                amount=_amount(t.get("amount")),
            )
            for t in _list(order.get("taxSummary"))
            if isinstance(t, Mapping)
        )
        tax = _optional_amount(summary.get("tax"))
        if tax is None:
            tax = sum((line.amount for line in tax_lines), ZERO)
        coupon = _mapping(order.get("coupon"))
        return cls(
            id=_str(order.get("_id")) or _str(order.get("id")) or "",
            location_id=_str(order.get("altId")) or _str(order.get("locationId")),
            contact_id=_str(order.get("contactId")),
            contact=CrmContactDetails.from_snapshot(
                _mapping(order.get("contactSnapshot")),
                contact_id=order.get("contactId"),
                name=order.get("contactName"),
                email=order.get("contactEmail"),
            ),
            source=_source(order, "source", "source"),
            items=tuple(
                CrmLine.from_order_item(item) for item in _list(order.get("items")) if isinstance(item, Mapping)
            ),
            amount=_amount(order.get("amount")),
            subtotal=_amount(summary.get("subtotal", order.get("subtotal"))),
            discount=_amount(summary.get("discount", order.get("discount"))),
            tax=tax,
            shipping=_amount(summary.get("shipping")),
            tax_lines=tax_lines,
            currency=(_str(order.get("currency")) or "USD").upper(),
            live_mode=bool(order.get("liveMode", True)),
            status=_str(order.get("status")),
            payment_status=_str(order.get("paymentStatus")),
            coupon_code=_str(order.get("couponCode")) or _str(coupon.get("code")),
            created_at=parse_datetime(order.get("createdAt")),
            updated_at=parse_datetime(order.get("updatedAt")),
        )


@dataclass(frozen=True)
class CrmTransaction:
    id: str
    location_id: str | None
    contact_id: str | None
    contact: CrmContactDetails
    amount: Decimal
    amount_refunded: Decimal
    currency: str
    status: str | None
    live_mode: bool
    entity_type: str | None
    entity_id: str | None
    source: CrmSource
    subscription_id: str | None
    charge_id: str | None
    invoice_id: str | None
    payment_provider: str | None
    payment_method_type: str | None  # "card", "us_bank_account", ... (the key of paymentMethod)
    card_brand: str | None
    card_last4: str | None
    fulfilled_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source_type(self) -> str | None:
        return self.source.type

    @property
    def source_sub_type(self) -> str | None:
        return self.source.sub_type

    @property
    def order_id(self) -> str | None:
        """The order this transaction paid, when its entity is an order."""
        return self.entity_id if (self.entity_type or "order") == "order" else None

    @property
    def charged_at(self) -> datetime | None:
        """When the money was taken: ``fulfilledAt`` ("charged timestamp"), else creation time."""
        return self.fulfilled_at or self.created_at

    @property
    def charge_reference(self) -> str:
        """The processor's charge id when known, else the CRM transaction id."""
        return self.charge_id or self.id

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CrmTransaction:
        """From ``GET /payments/transactions/{id}`` or a transactions list entry."""
        txn = _mapping(data.get("transaction")) or data
        method = _mapping(txn.get("paymentMethod"))
        method_type: str | None = None
        brand: str | None = None
        last4: str | None = None
        for key, details in method.items():
            method_type = method_type or _str(key)
            details_map = _mapping(details)
            brand = brand or _str(details_map.get("brand"))
            last4 = last4 or _str(details_map.get("last4"))
        if method_type is None:
            method_type = _str(txn.get("paymentMethod")) if isinstance(txn.get("paymentMethod"), str) else None
        provider = _mapping(txn.get("paymentProvider"))
        status = txn.get("status")
        return cls(
            id=_str(txn.get("_id")) or _str(txn.get("id")) or "",
            location_id=_str(txn.get("altId")) or _str(txn.get("locationId")),
            contact_id=_str(txn.get("contactId")),
            contact=CrmContactDetails.from_snapshot(
                _mapping(txn.get("contactSnapshot")),
                contact_id=txn.get("contactId"),
                name=txn.get("contactName"),
                email=txn.get("contactEmail"),
            ),
            amount=_amount(txn.get("amount")),
            amount_refunded=_amount(txn.get("amountRefunded")),
            currency=(_str(txn.get("currency")) or "USD").upper(),
            status=_str(status) if not isinstance(status, Mapping) else _str(status.get("status")),
            live_mode=bool(txn.get("liveMode", True)),
            entity_type=_str(txn.get("entityType")),
            entity_id=_str(txn.get("entityId")),
            source=_source(txn, "entitySource", "entitySource"),
            subscription_id=_str(txn.get("subscriptionId")),
            charge_id=_str(txn.get("chargeId")),
            invoice_id=_str(txn.get("invoiceId")),
            payment_provider=_str(txn.get("paymentProviderType")) or _str(provider.get("type")),
            payment_method_type=method_type,
            card_brand=brand,
            card_last4=last4,
            fulfilled_at=parse_datetime(txn.get("fulfilledAt")),
            created_at=parse_datetime(txn.get("createdAt")),
            updated_at=parse_datetime(txn.get("updatedAt")),
            meta=dict(_mapping(txn.get("meta"))),
        )

"""Invoices, orders, transactions and subscriptions as HighLevel stores and returns them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from .common import object_id
from .totals import cents, compute_invoice_totals, to_decimal

INVOICE_STATUSES = ("draft", "sent", "payment_processing", "paid", "void", "partially_paid")
SOURCE_TYPES = (
    "funnel",
    "website",
    "invoice",
    "calendar",
    "text2Pay",
    "document_contracts",
    "membership",
    "mobile_app",
    "communities",
    "point_of_sale",
    "manual",
    "form",
    "survey",
    "payment_link",
    "external",
)
SOURCE_SUB_TYPES = (
    "one_step_order_form",
    "two_step_order_form",
    "upsell",
    "tap_to_pay",
    "card_payment",
    "store",
    "contact_view",
    "email_campaign",
    "payments_dashboard",
    "shopify",
    "subscription_view",
    "store_upsell",
    "woocommerce",
    "service",
    "meeting",
    "imported_csv",
    "qr_code",
    "saas_one_time",
    "saas_subscription",
)
# Keys of webhooks/examples/Invoice*.json (the emulator adds ``type``, ``locationId``, ``webhookId``, ``timestamp``).
WEBHOOK_INVOICE_KEYS = (
    "_id",
    "status",
    "liveMode",
    "amountPaid",
    "altId",
    "altType",
    "name",
    "businessDetails",
    "invoiceNumber",
    "currency",
    "contactDetails",
    "issueDate",
    "dueDate",
    "discount",
    "invoiceItems",
    "total",
    "title",
    "amountDue",
    "createdAt",
    "updatedAt",
    "totalSummary",
)


def invoice_items(items: Sequence[Mapping[str, Any]], currency: str) -> list[dict[str, Any]]:
    """Check and store invoice items (InvoiceItemDto: name, currency, amount, qty required)."""
    if not items:
        raise ValueError("an invoice needs at least one item")
    stored: list[dict[str, Any]] = []
    for position, item in enumerate(items):
        for key in ("name", "amount", "qty"):
            if key not in item:
                raise ValueError(f"invoiceItems.{position}.{key} should not be empty")
        qty = to_decimal(item["qty"])
        amount = to_decimal(item["amount"])
        if qty <= 0 or amount < 0:
            raise ValueError(f"invoiceItems.{position}: qty must be positive and amount not negative")
        taxes = []
        for tax in item.get("taxes") or []:
            if "rate" not in tax or "name" not in tax:
                raise ValueError(f"invoiceItems.{position}.taxes: name and rate are required")
            taxes.append(
                {
                    "_id": str(tax.get("_id") or object_id()),
                    "name": str(tax["name"]),
                    "rate": to_decimal(tax["rate"]),
                    "calculation": "exclusive",
                    **({"description": str(tax["description"])} if tax.get("description") else {}),
                    **({"taxId": str(tax["taxId"])} if tax.get("taxId") else {}),
                }
            )
        record: dict[str, Any] = {
            "_id": str(item.get("_id") or object_id()),
            "name": str(item["name"]),
            "currency": str(item.get("currency") or currency),
            "amount": amount,
            "qty": qty,
            "taxes": taxes,
            "type": str(item.get("type") or "one_time"),
            "taxInclusive": bool(item.get("taxInclusive", False)),
        }
        for optional in ("description", "productId", "priceId"):
            if item.get(optional):
                record[optional] = str(item[optional])
        stored.append(record)
    return stored


def invoice_discount(discount: Mapping[str, Any] | None) -> dict[str, Any]:
    if not discount:
        return {"type": "percentage", "value": Decimal(0)}
    kind = discount.get("type", "percentage")
    if kind not in ("percentage", "fixed"):
        raise ValueError("discount.type must be one of the following values: percentage, fixed")
    value = to_decimal(discount.get("value", 0))
    if value < 0 or (kind == "percentage" and value > 100):
        raise ValueError("discount.value is out of range")
    stored: dict[str, Any] = {"type": kind, "value": value}
    if discount.get("validOnProductIds"):
        stored["validOnProductIds"] = [str(p) for p in discount["validOnProductIds"]]
    return stored


def recompute(invoice: dict[str, Any]) -> None:
    """Totals from items, discount and taxes (docs/sandbox.md), then amountDue and paid status."""
    totals = compute_invoice_totals(invoice["invoiceItems"], invoice["discount"])
    invoice["totalSummary"] = {"subTotal": totals.sub_total, "discount": totals.discount, "tax": totals.tax}
    invoice["total"] = totals.total
    invoice["amountDue"] = cents(totals.total - invoice["amountPaid"])
    if invoice["status"] in ("paid", "partially_paid"):
        invoice["status"] = "paid" if invoice["amountDue"] <= 0 else "partially_paid"


def contact_details(contact: Mapping[str, Any]) -> dict[str, Any]:
    address = {"countryCode": contact.get("country") or "US"}
    for source, target in (
        ("address1", "addressLine1"),
        ("city", "city"),
        ("state", "state"),
        ("postalCode", "postalCode"),
    ):
        if contact.get(source):
            address[target] = contact[source]
    details: dict[str, Any] = {
        "id": contact["id"],
        "name": contact.get("name") or "",
        "email": contact.get("email") or "",
        "phoneNo": contact.get("phone") or "",
        "address": address,
        "customFields": [],
    }
    if contact.get("companyName"):
        details["companyName"] = contact["companyName"]
    return details


def invoice_webhook(event_type: str, invoice: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": event_type, "locationId": invoice["altId"]}
    for key in WEBHOOK_INVOICE_KEYS:
        payload[key] = invoice[key]
    return payload


def order_items(items: Sequence[Mapping[str, Any]], currency: str) -> tuple[list[dict[str, Any]], Decimal]:
    """Order items in the OrderCreate example's shape; returns them and the subtotal."""
    if not items:
        raise ValueError("an order needs at least one item")
    stored: list[dict[str, Any]] = []
    subtotal = Decimal("0.00")
    for position, item in enumerate(items):
        if "name" not in item or "amount" not in item:
            raise ValueError(f"items.{position}: name and amount are required")
        qty = to_decimal(item.get("qty", 1))
        amount = to_decimal(item["amount"])
        subtotal += cents(qty * amount)
        stored.append(
            {
                "name": str(item["name"]),
                "qty": qty,
                "product": {
                    "_id": str(item.get("productId") or object_id()),
                    "name": str(item.get("productName") or item["name"]),
                    "availableInStore": True,
                    "taxes": [],
                    "variants": [],
                },
                "price": {
                    "_id": str(item.get("priceId") or object_id()),
                    "name": str(item["name"]),
                    "type": str(item.get("priceType") or "one_time"),
                    "currency": currency,
                    "amount": amount,
                },
            }
        )
    return stored, subtotal


def contact_snapshot(contact: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "locationId",
        "firstName",
        "lastName",
        "email",
        "phone",
        "dnd",
        "source",
        "address1",
        "city",
        "state",
        "postalCode",
        "tags",
        "country",
        "dateAdded",
        "companyName",
    )
    return {k: contact[k] for k in keys if contact.get(k) is not None}


def order_webhook(event_type: str, order: Mapping[str, Any]) -> dict[str, Any]:
    """Shaped like webhooks/examples/OrderCreate.json."""
    keys = (
        "_id",
        "altId",
        "altType",
        "status",
        "taxSummary",
        "fulfillmentStatus",
        "contactId",
        "currency",
        "amount",
        "liveMode",
        "amountSummary",
        "source",
        "createdAt",
        "updatedAt",
        "contactSnapshot",
        "items",
    )
    payload: dict[str, Any] = {"type": event_type, "locationId": order["altId"]}
    for key in keys:
        payload[key] = order[key]
    return payload


def order_list_view(order: Mapping[str, Any]) -> dict[str, Any]:
    """OrderResponseSchema (the list shape: flat source fields, no items)."""
    keys = (
        "_id",
        "altId",
        "altType",
        "contactId",
        "contactName",
        "contactEmail",
        "currency",
        "amount",
        "subtotal",
        "discount",
        "status",
        "paymentStatus",
        "liveMode",
        "totalProducts",
        "sourceType",
        "sourceName",
        "sourceId",
        "sourceMeta",
        "sourceSubType",
        "createdAt",
        "updatedAt",
        "fulfillmentStatus",
        "onetimeProducts",
        "recurringProducts",
    )
    return {k: order[k] for k in keys if order.get(k) is not None}


def transaction_list_view(txn: Mapping[str, Any]) -> dict[str, Any]:
    """TxnResponseSchema (flat entitySource fields)."""
    hidden = ("entitySource", "contactSnapshot", "paymentProvider", "invoiceId", "meta", "markAsTest", "isParent")
    return {k: v for k, v in txn.items() if k not in hidden and v is not None}


def transaction_view(txn: Mapping[str, Any]) -> dict[str, Any]:
    """GetTxnResponseSchema (nested ``entitySource``; flat fields kept too)."""
    return {k: v for k, v in txn.items() if v is not None}


def subscription_list_view(sub: Mapping[str, Any]) -> dict[str, Any]:
    hidden = (
        "entitySource",
        "contactSnapshot",
        "paymentProvider",
        "schedule",
        "recurringProduct",
        "meta",
        "markAsTest",
    )
    return {k: v for k, v in sub.items() if k not in hidden and v is not None}


def subscription_view(sub: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sub.items() if v is not None}

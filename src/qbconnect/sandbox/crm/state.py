"""The CRM emulator's in-memory state and the user actions that change it (each fires its webhooks)."""

from __future__ import annotations

import copy
import random
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from . import billing
from . import contacts as contact_rules
from .common import iso_ms, iso_seconds, jsonable, object_id, short_id
from .custom_page import CustomPage
from .oauth import TokenStore
from .ratelimit import BurstLimiter
from .totals import cents, to_decimal
from .webhooks import (
    MAX_RETRIES,
    DeliveryThread,
    Outbox,
    WebhookEvent,
    WebhookSigner,
    deliver,
    encode_body,
    signed_headers,
)
from .workflows import MarketplaceWorkflows

DND_CHANNELS = ("Call", "Email", "SMS", "WhatsApp", "GMB", "FB")


@dataclass(frozen=True)
class RequestRecord:
    """One API call the emulator answered (control routes under ``/_sandbox`` are not recorded)."""

    method: str
    path: str
    location: str | None
    status: int
    at: datetime


@dataclass
class Location:
    id: str
    name: str
    company_id: str
    country: str
    allow_duplicate_contact: bool
    duplicate_priority: tuple[str, ...] = ("email", "phone")


class CrmSandbox:
    """A HighLevel (LeadConnector) account: locations, contacts, invoices, payments, messages, webhooks."""

    def __init__(
        self,
        *,
        client_id: str = "crm-client",
        client_secret: str = "crm-secret",  # noqa: S107 - the sandbox's own fixed test secret
        webhook_url: str | None = None,
        access_token_ttl: int = 86399,
        rate_limit: int = 100,
        rate_window_seconds: float = 10.0,
        latency: float | tuple[float, float] = 0.0,
        sign_legacy_rsa: bool = False,
        auto_approve: bool = True,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_url = webhook_url
        self.sign_legacy_rsa = sign_legacy_rsa
        self.auto_approve = auto_approve
        self.app_id = f"app-{client_id}"
        self.tokens = TokenStore(client_id, client_secret, access_token_ttl)
        self.limiter = BurstLimiter(rate_limit, rate_window_seconds)
        # Seconds each API answer takes after HighLevel counted the request: fixed, or (min, max) at random.
        self.latency: tuple[float, float] = latency if isinstance(latency, tuple) else (latency, latency)
        self._signer = WebhookSigner()
        self.webhook_public_key: str = self._signer.ed25519_public_key_b64
        self.webhook_public_key_pem: str = self._signer.ed25519_public_key_pem
        self.legacy_rsa_public_key_pem: str = self._signer.rsa_public_key_pem
        self.next_location_id: str | None = None
        self.custom_page = CustomPage()  # the app's custom page, framed by /ui/locations/{id}/integrations
        # Agency (bulk) installs: set ``next_bulk_install`` to location ids and the next install is a
        # Company grant approving them; ``agency_installs`` is what /oauth/installedLocations lists.
        self.next_bulk_install: list[str] | None = None
        self.agency_installs: dict[str, set[str]] = {}
        self.request_log: list[RequestRecord] = []
        self.emitted_webhooks: list[dict[str, Any]] = []
        self.locations: dict[str, Location] = {}
        self.contact_records: dict[str, dict[str, Any]] = {}
        # (location, normalised email or phone) -> contact ids in creation order; kept by apply_contact_fields
        self._contact_index: dict[tuple[str, str, str], list[str]] = {}
        self._contact_seq: dict[str, int] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.message_records: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self._clock_offset = timedelta(0)
        self._invoice_numbers: dict[str, int] = {}
        self._outbox = Outbox()
        self._delivery: DeliveryThread | None = None
        self._http = httpx.Client(timeout=10.0)
        self._flush_lock = threading.Lock()
        self.workflows = MarketplaceWorkflows(self)  # the app's workflow triggers and action (workflows.py)

    # ----- clock -------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward (token expiry, rate windows, timestamps) without sleeping."""
        with self.lock:
            self._clock_offset += timedelta(seconds=seconds)

    def answer_delay(self) -> float:
        """How long the next API answer takes (``latency``), like a real platform's processing time."""
        low, high = self.latency
        return random.uniform(low, high) if high > low else low

    # ----- locations ---------------------------------------------------------------------------------
    def add_location(
        self,
        location_id: str | None = None,
        *,
        name: str = "Demo Location",
        company_id: str = "agency-1",
        country: str = "US",
        allow_duplicate_contact: bool = False,
    ) -> str:
        with self.lock:
            location_id = location_id or short_id()
            self.locations[location_id] = Location(location_id, name, company_id, country, allow_duplicate_contact)
            return location_id

    def location(self, location_id: str) -> Location:
        with self.lock:
            if location_id not in self.locations:
                raise KeyError(f"no location {location_id}")
            return self.locations[location_id]

    def install_location(self) -> str:
        """The location the next Marketplace install grants (``next_location_id`` or the first one)."""
        with self.lock:
            if self.next_location_id:
                self.location(self.next_location_id)
                return self.next_location_id
            if not self.locations:
                raise KeyError("no location exists; add one first")
            return next(iter(self.locations))

    # ----- request log -------------------------------------------------------------------------------
    def record_request(self, method: str, path: str, location: str | None, status: int) -> None:
        with self.lock:
            self.request_log.append(RequestRecord(method, path, location, status, self.now()))

    # ----- contacts ----------------------------------------------------------------------------------
    def new_contact(self, location_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a contact (no duplicate check, no webhook); the caller holds the lock."""
        self.location(location_id)
        stamp = iso_ms(self.now())
        contact: dict[str, Any] = {
            "id": short_id(),
            "locationId": location_id,
            "type": "lead",
            "dnd": False,
            "dndSettings": {},
            "tags": [],
            "customFields": [],
            "source": "public api",
            "dateAdded": stamp,
            "dateUpdated": stamp,
        }
        self._contact_seq[contact["id"]] = len(self._contact_seq)
        self.contact_records[contact["id"]] = contact
        self.apply_contact_fields(contact, fields)
        return contact

    def _index_keys(self, contact: dict[str, Any]) -> list[tuple[str, str, str]]:
        keys = []
        if contact.get("emailLowerCase"):
            keys.append((contact["locationId"], "email", contact["emailLowerCase"]))
        if contact.get("phone"):
            keys.append((contact["locationId"], "phone", contact["phone"]))
        return keys

    def apply_contact_fields(
        self, contact: dict[str, Any], fields: Mapping[str, Any], *, ignore: Iterable[str] = ()
    ) -> None:
        """Change a contact's fields and keep the email/phone lookup index in step (call under the lock)."""
        for key in self._index_keys(contact):
            ids = self._contact_index.get(key, [])
            if contact["id"] in ids:
                ids.remove(contact["id"])
        contact_rules.apply_fields(contact, fields, ignore=ignore)
        for key in self._index_keys(contact):
            ids = self._contact_index.setdefault(key, [])
            ids.append(contact["id"])
            ids.sort(key=self._contact_seq.__getitem__)

    def _first_indexed(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        ids = self._contact_index.get(key)
        return self.contact_records[ids[0]] if ids else None

    def create_contact(self, location_id: str, **fields: Any) -> dict[str, Any]:
        """A contact added in the CRM UI; fires ContactCreate."""
        with self.lock:
            contact = self.new_contact(location_id, fields)
            self.emit("ContactCreate", contact_rules.webhook_payload("ContactCreate", contact))
            return contact_rules.render(contact)

    def contact(self, contact_id: str) -> dict[str, Any]:
        with self.lock:
            if contact_id not in self.contact_records:
                raise KeyError(f"no contact {contact_id}")
            return self.contact_records[contact_id]

    def contacts(self, location_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [contact_rules.render(c) for c in self.contact_records.values() if c["locationId"] == location_id]

    def find_by_email(self, location_id: str, email: str | None) -> dict[str, Any] | None:
        wanted = contact_rules.normalize_email(email)
        if not wanted:
            return None
        with self.lock:
            return self._first_indexed((location_id, "email", wanted))

    def find_by_phone(self, location_id: str, phone: str | None) -> dict[str, Any] | None:
        wanted = contact_rules.normalize_phone(phone)
        if not wanted:
            return None
        with self.lock:
            return self._first_indexed((location_id, "phone", wanted))

    def find_duplicate(
        self, location_id: str, email: str | None, phone: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The existing contact an email/phone points at, in the location's priority order (email first)."""
        location = self.location(location_id)
        for key in location.duplicate_priority:
            found = self.find_by_email(location_id, email) if key == "email" else self.find_by_phone(location_id, phone)
            if found is not None:
                return found, key
        return None, None

    def touch_contact(self, contact: dict[str, Any]) -> None:
        contact["dateUpdated"] = iso_ms(self.now())

    def set_dnd(self, contact_id: str, channel: str, on: bool = True) -> None:
        """Turn Do-Not-Disturb on/off for one channel (``SMS``, ``Email``, …) or ``all``; fires ContactDndUpdate."""
        with self.lock:
            contact = self.contact(contact_id)
            if channel == "all":
                contact["dnd"] = on
            elif channel in DND_CHANNELS:
                settings = dict(contact.get("dndSettings") or {})
                settings[channel] = {"status": "active" if on else "inactive", "message": "", "code": ""}
                contact["dndSettings"] = settings
            else:
                raise ValueError(f"unknown DND channel {channel}")
            self.touch_contact(contact)
            self.emit("ContactDndUpdate", contact_rules.webhook_payload("ContactDndUpdate", contact))

    # ----- invoices ----------------------------------------------------------------------------------
    def create_invoice(
        self,
        location_id: str,
        *,
        contact_id: str,
        items: list[dict[str, Any]],
        discount: dict[str, Any] | None = None,
        currency: str = "USD",
        invoice_number: str | None = None,
        issue_date: str | None = None,
        due_date: str | None = None,
        live_mode: bool = True,
    ) -> dict[str, Any]:
        """A draft invoice made in the CRM; fires InvoiceCreate."""
        with self.lock:
            location = self.location(location_id)
            contact = self.contact(contact_id)
            if contact["locationId"] != location_id:
                raise ValueError("the contact belongs to another location")
            if invoice_number is None:
                number = self._invoice_numbers.get(location_id, 0) + 1
                self._invoice_numbers[location_id] = number
                invoice_number = str(number)
            today = self.now().date().isoformat()
            issue = _date_text(issue_date) if issue_date else today
            stamp = iso_ms(self.now())
            invoice: dict[str, Any] = {
                "_id": object_id(),
                "status": "draft",
                "liveMode": live_mode,
                "amountPaid": Decimal("0.00"),
                "altId": location_id,
                "altType": "location",
                "name": f"Invoice {invoice_number}",
                "businessDetails": {"name": location.name},
                "invoiceNumber": invoice_number,
                "currency": currency,
                "contactDetails": billing.contact_details(contact),
                "issueDate": issue,
                "dueDate": _date_text(due_date) if due_date else issue,
                "discount": billing.invoice_discount(discount),
                "invoiceItems": billing.invoice_items(items, currency),
                "title": "INVOICE",
                "createdAt": stamp,
                "updatedAt": stamp,
                "automaticTaxesEnabled": False,
                "automaticTaxesCalculated": False,
            }
            billing.recompute(invoice)
            self.invoices[invoice["_id"]] = invoice
            self.emit("InvoiceCreate", billing.invoice_webhook("InvoiceCreate", invoice))
            return copy.deepcopy(invoice)

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        with self.lock:
            if invoice_id not in self.invoices:
                raise KeyError(f"no invoice {invoice_id}")
            return self.invoices[invoice_id]

    def _changed(self, invoice: dict[str, Any], event: str) -> dict[str, Any]:
        invoice["updatedAt"] = iso_ms(self.now())
        self.emit(event, billing.invoice_webhook(event, invoice))
        return copy.deepcopy(invoice)

    def send_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice["status"] in ("void", "paid"):
                raise ValueError(f"a {invoice['status']} invoice cannot be sent")
            if invoice["status"] == "draft":
                invoice["status"] = "sent"
            return self._changed(invoice, "InvoiceSent")

    def update_invoice(self, invoice_id: str, **changes: Any) -> dict[str, Any]:
        """Edit items, discount, dates, name or title; totals are recomputed; fires InvoiceUpdate."""
        allowed = {
            "items",
            "invoiceItems",
            "discount",
            "issue_date",
            "issueDate",
            "due_date",
            "dueDate",
            "name",
            "title",
            "live_mode",
            "liveMode",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice["status"] == "void":
                raise ValueError("a void invoice cannot be changed")
            items = changes.get("items", changes.get("invoiceItems"))
            if items is not None:
                invoice["invoiceItems"] = billing.invoice_items(items, invoice["currency"])
            if "discount" in changes:
                invoice["discount"] = billing.invoice_discount(changes["discount"])
            for key, target in (
                ("issue_date", "issueDate"),
                ("issueDate", "issueDate"),
                ("due_date", "dueDate"),
                ("dueDate", "dueDate"),
            ):
                if key in changes:
                    invoice[target] = _date_text(changes[key])
            for key, target in (
                ("name", "name"),
                ("title", "title"),
                ("live_mode", "liveMode"),
                ("liveMode", "liveMode"),
            ):
                if key in changes:
                    invoice[target] = changes[key]
            billing.recompute(invoice)
            if invoice["amountDue"] < 0:
                raise ValueError("the new total is below the amount already paid")
            return self._changed(invoice, "InvoiceUpdate")

    def record_invoice_payment(self, invoice_id: str, amount: Decimal, *, mode: str = "card") -> dict[str, Any]:
        """A payment on an invoice: partially_paid or paid, plus a transaction with entitySourceType "invoice"."""
        amount = cents(to_decimal(amount))
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice["status"] in ("void", "paid"):
                raise ValueError(f"a {invoice['status']} invoice cannot take a payment")
            if amount <= 0 or amount > invoice["amountDue"]:
                raise ValueError(f"the payment must be between 0.01 and the amount due {invoice['amountDue']}")
            invoice["amountPaid"] = cents(invoice["amountPaid"] + amount)
            invoice["amountDue"] = cents(invoice["total"] - invoice["amountPaid"])
            invoice["status"] = "paid" if invoice["amountDue"] <= 0 else "partially_paid"
            contact = self.contact(invoice["contactDetails"]["id"])
            source = {"type": "invoice", "id": invoice["_id"], "name": invoice["name"]}
            self._new_transaction(
                location_id=invoice["altId"],
                contact=contact,
                amount=amount,
                currency=invoice["currency"],
                live_mode=invoice["liveMode"],
                entity_type="invoice",
                entity_id=invoice["_id"],
                source=source,
                provider="stripe" if mode == "card" else "manual",
                card_brand="visa" if mode == "card" else None,
                subscription_id=None,
                invoice_id=invoice["_id"],
            )
            event = "InvoicePaid" if invoice["status"] == "paid" else "InvoicePartiallyPaid"
            return self._changed(invoice, event)

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice["status"] == "void":
                raise ValueError("the invoice is already void")
            invoice["status"] = "void"
            return self._changed(invoice, "InvoiceVoid")

    def delete_invoice(self, invoice_id: str) -> None:
        with self.lock:
            invoice = self.invoice(invoice_id)
            invoice["updatedAt"] = iso_ms(self.now())
            del self.invoices[invoice_id]
            self.emit("InvoiceDelete", billing.invoice_webhook("InvoiceDelete", invoice))

    # ----- orders, transactions, subscriptions -------------------------------------------------------
    def create_order(
        self,
        location_id: str,
        *,
        contact_id: str,
        source_type: str,
        source_sub_type: str | None,
        items: list[dict[str, Any]],
        discount: Decimal = Decimal(0),
        tax: Decimal = Decimal(0),
        shipping: Decimal = Decimal(0),
        currency: str = "USD",
        live_mode: bool = True,
        card_brand: str | None = "visa",
        subscription: bool = False,
    ) -> dict[str, Any]:
        """A paid checkout (order form, store, calendar, membership…): order + succeeded transaction
        (+ subscription). Fires OrderCreate (pending) then OrderStatusUpdate (completed)."""
        if source_type not in billing.SOURCE_TYPES:
            raise ValueError(f"source_type must be one of {', '.join(billing.SOURCE_TYPES)}")
        if source_sub_type is not None and source_sub_type not in billing.SOURCE_SUB_TYPES:
            raise ValueError(f"source_sub_type must be one of {', '.join(billing.SOURCE_SUB_TYPES)}")
        discount, tax, shipping = (cents(to_decimal(v)) for v in (discount, tax, shipping))
        with self.lock:
            self.location(location_id)
            contact = self.contact(contact_id)
            if contact["locationId"] != location_id:
                raise ValueError("the contact belongs to another location")
            stored_items, subtotal = billing.order_items(items, currency)
            if discount > subtotal:
                raise ValueError("the discount is larger than the subtotal")
            amount = subtotal - discount + tax + shipping
            stamp = iso_ms(self.now())
            order_id = object_id()
            source: dict[str, Any] = {
                "type": source_type,
                "id": short_id(),
                "name": _source_name(source_type),
                "meta": {"domain": "sandbox.leadconnectorhq.test", "pageUrl": "/checkout"},
            }
            if source_sub_type:
                source["subType"] = source_sub_type
            tax_summary = []
            if tax:
                tax_summary.append(
                    {
                        "_id": object_id(),
                        "name": "Sales tax",
                        "calculation": "exclusive",
                        "rate": Decimal(0),
                        "amount": tax,
                    }
                )
            recurring = len(stored_items) if subscription else 0
            order: dict[str, Any] = {
                "_id": order_id,
                "altId": location_id,
                "altType": "location",
                "contactId": contact["id"],
                "contactName": contact.get("name") or "",
                "contactEmail": contact.get("email") or "",
                "currency": currency,
                "amount": amount,
                "subtotal": subtotal,
                "discount": discount,
                "status": "pending",
                "paymentStatus": "paid",
                "liveMode": live_mode,
                "totalProducts": len(stored_items),
                "onetimeProducts": len(stored_items) - recurring,
                "recurringProducts": recurring,
                "sourceType": source_type,
                "sourceSubType": source_sub_type,
                "sourceName": source["name"],
                "sourceId": source["id"],
                "sourceMeta": source["meta"],
                "source": source,
                "createdAt": stamp,
                "updatedAt": stamp,
                "fulfillmentStatus": "unfulfilled",
                "amountSummary": {"subtotal": subtotal, "discount": discount, "tax": tax, "shipping": shipping},
                "taxSummary": tax_summary,
                "contactSnapshot": billing.contact_snapshot(contact),
                "items": stored_items,
            }
            self.orders[order_id] = order
            self.emit("OrderCreate", billing.order_webhook("OrderCreate", order))
            provider_subscription_id = None
            if subscription:
                provider_subscription_id = "sub_" + secrets.token_hex(12)
                sub_id = object_id()
                self.subscriptions[sub_id] = {
                    "_id": sub_id,
                    "altId": location_id,
                    "altType": "location",
                    "contactId": contact["id"],
                    "contactName": contact.get("name") or "",
                    "contactEmail": contact.get("email") or "",
                    "contactSnapshot": billing.contact_snapshot(contact),
                    "currency": currency,
                    "amount": amount,
                    "status": "active",
                    "liveMode": live_mode,
                    "entityType": "order",
                    "entityId": order_id,
                    "entitySourceType": source_type,
                    "entitySourceSubType": source_sub_type,
                    "entitySourceName": source["name"],
                    "entitySourceId": source["id"],
                    "entitySourceMeta": source["meta"],
                    "entitySource": source,
                    "subscriptionId": provider_subscription_id,
                    "paymentProviderType": "stripe",
                    "paymentProvider": {"type": "stripe"},
                    "schedule": {
                        "rrule": {"intervalType": "monthly", "interval": 1, "startDate": self.now().date().isoformat()}
                    },
                    "recurringProduct": {"name": stored_items[0]["name"]},
                    "createdAt": stamp,
                    "updatedAt": stamp,
                }
                order["subscriptionId"] = sub_id
            self._new_transaction(
                location_id=location_id,
                contact=contact,
                amount=amount,
                currency=currency,
                live_mode=live_mode,
                entity_type="order",
                entity_id=order_id,
                source=source,
                provider="stripe",
                card_brand=card_brand,
                subscription_id=provider_subscription_id,
                invoice_id=None,
            )
            order["status"] = "completed"
            order["updatedAt"] = iso_ms(self.now())
            self.emit("OrderStatusUpdate", billing.order_webhook("OrderStatusUpdate", order))
            return copy.deepcopy(order)

    def _new_transaction(
        self,
        *,
        location_id: str,
        contact: dict[str, Any],
        amount: Decimal,
        currency: str,
        live_mode: bool,
        entity_type: str,
        entity_id: str,
        source: dict[str, Any],
        provider: str,
        card_brand: str | None,
        subscription_id: str | None,
        invoice_id: str | None,
    ) -> dict[str, Any]:
        stamp = iso_ms(self.now())
        txn_id = object_id()
        txn: dict[str, Any] = {
            "_id": txn_id,
            "altId": location_id,
            "altType": "location",
            "contactId": contact["id"],
            "contactName": contact.get("name") or "",
            "contactEmail": contact.get("email") or "",
            "contactSnapshot": billing.contact_snapshot(contact),
            "currency": currency,
            "amount": amount,
            "amountRefunded": Decimal(0),
            "status": "succeeded",
            "liveMode": live_mode,
            "entityType": entity_type,
            "entityId": entity_id,
            "entitySourceType": source["type"],
            "entitySourceSubType": source.get("subType"),
            "entitySourceName": source.get("name"),
            "entitySourceId": source["id"],
            "entitySourceMeta": source.get("meta"),
            "entitySource": source,
            "subscriptionId": subscription_id,
            "invoiceId": invoice_id,
            "chargeId": "ch_" + secrets.token_hex(12),
            "paymentProviderType": provider,
            "paymentProvider": {"type": provider},
            "paymentMethod": {"card": {"brand": card_brand, "last4": "4242"}} if card_brand else None,
            "fulfilledAt": stamp,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.transactions[txn_id] = txn
        return txn

    def renew_subscription(self, subscription_id: str) -> dict[str, Any]:
        """The next billing cycle charges: a new transaction and NO webhook (HighLevel has no such event)."""
        with self.lock:
            if subscription_id not in self.subscriptions:
                raise KeyError(f"no subscription {subscription_id}")
            sub = self.subscriptions[subscription_id]
            if sub["status"] != "active":
                raise ValueError("the subscription is not active")
            contact = self.contact(sub["contactId"])
            txn = self._new_transaction(
                location_id=sub["altId"],
                contact=contact,
                amount=sub["amount"],
                currency=sub["currency"],
                live_mode=sub["liveMode"],
                entity_type="order",
                entity_id=sub["entityId"],
                source=sub["entitySource"],
                provider=sub["paymentProviderType"],
                card_brand="visa",
                subscription_id=sub["subscriptionId"],
                invoice_id=None,
            )
            sub["updatedAt"] = txn["createdAt"]
            return copy.deepcopy(txn)

    def refund_transaction(self, transaction_id: str, amount: Decimal) -> dict[str, Any]:
        """Refund part or all of a charge. A full refund marks the order ``refunded`` and fires
        OrderStatusUpdate; a partial refund only grows ``amountRefunded`` (no webhook)."""
        amount = cents(to_decimal(amount))
        with self.lock:
            if transaction_id not in self.transactions:
                raise KeyError(f"no transaction {transaction_id}")
            txn = self.transactions[transaction_id]
            left = txn["amount"] - txn["amountRefunded"]
            if amount <= 0 or amount > left:
                raise ValueError(f"the refund must be between 0.01 and {left}")
            txn["amountRefunded"] = cents(txn["amountRefunded"] + amount)
            txn["updatedAt"] = iso_ms(self.now())
            if txn["amountRefunded"] >= txn["amount"]:
                txn["status"] = "refunded"
                order = self.orders.get(txn["entityId"]) if txn["entityType"] == "order" else None
                if order is not None:
                    order["paymentStatus"] = "refunded"
                    order["updatedAt"] = txn["updatedAt"]
                    self.emit("OrderStatusUpdate", billing.order_webhook("OrderStatusUpdate", order))
            return copy.deepcopy(txn)

    # ----- conversations -----------------------------------------------------------------------------
    def messages(self, location_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(m) for m in self.message_records if m["locationId"] == location_id]

    # ----- webhooks ----------------------------------------------------------------------------------
    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Queue one signed webhook; ``payload`` gets ``webhookId`` and ``timestamp``."""
        body_dict = jsonable(payload)
        body_dict["webhookId"] = str(uuid.uuid4())
        body_dict["timestamp"] = iso_seconds(self.now())
        body = encode_body(body_dict)
        headers = signed_headers(self._signer, body, legacy_rsa=self.sign_legacy_rsa)
        self.emitted_webhooks.append(body_dict)
        self._outbox.put(WebhookEvent(body_dict["webhookId"], event_type, body_dict, body, headers))

    def pending_webhooks(self) -> int:
        return len(self._outbox)

    def pending_webhook_events(self) -> list[dict[str, Any]]:
        with self._outbox.lock:
            return [copy.deepcopy(e.payload) for e in self._outbox.events]

    def flush_webhooks(self, *, drop: bool = False, times: int = 1) -> int:
        """Deliver every queued event (one POST each; ``times`` > 1 redelivers the same webhookId).
        ``drop`` loses them instead. Events answered 429 stay queued for a later flush (HighLevel retries
        only 429, at most 6 times); any other answer or no answer ends the event. Returns events handled."""
        with self._flush_lock:
            events = self._outbox.take_all()
            if drop or not events:
                return len(events)
            url = self.webhook_url
            if not url:
                self._outbox.put_back(events)
                return 0
            retry: list[WebhookEvent] = []
            for event in events:
                status: int | None = None
                for _ in range(max(times, 1)):
                    status = deliver(self._http, url, event)
                if status == 429 and event.attempts <= MAX_RETRIES:
                    retry.append(event)
            if retry:
                self._outbox.put_back(retry)
            return len(events)

    def start_webhook_delivery(self, interval: float = 0.2) -> None:
        if self._delivery is None:
            self._delivery = DeliveryThread(self.flush_webhooks, interval)
            self._delivery.start()

    def stop_webhook_delivery(self) -> None:
        if self._delivery is not None:
            self._delivery.stop()
            self._delivery = None

    def close(self) -> None:
        self.stop_webhook_delivery()
        self._http.close()
        self.workflows.close()


def _date_text(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    date.fromisoformat(text[:10])  # raises ValueError when it is not YYYY-MM-DD
    return text[:10]


def _source_name(source_type: str) -> str:
    names: dict[str, str] = {
        "funnel": "Order Form Funnel",
        "website": "Ecom Store",
        "calendar": "Consultation Calendar",
        "membership": "Members Area",
        "payment_link": "Payment Link",
        "form": "Order Form",
    }
    return names.get(source_type, source_type.replace("_", " ").title())

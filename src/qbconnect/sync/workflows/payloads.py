"""The trigger payloads: the facts an event keeps (from the QuickBooks objects the product saw) and the body
sent to a workflow's target URL, in the shape of the trigger's sample (catalogue.py). Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from qbconnect.domain.money import amount, cents

QBO_APP_HOSTS = {"sandbox": "https://app.sandbox.qbo.intuit.com", "production": "https://app.qbo.intuit.com"}
QBO_PAGES = {
    "Invoice": "invoice?txnId=",
    "Payment": "recvpayment?txnId=",
    "Customer": "customerdetail?nameId=",
}


def money(value: Decimal | str | int | None) -> str:
    """An amount as the payloads carry it: a string with two decimals."""
    return f"{cents(amount(value)):.2f}"


def qbo_url(environment: str, entity: str, qbo_id: str) -> str:
    """The record's page in QuickBooks Online."""
    host = QBO_APP_HOSTS.get(environment, QBO_APP_HOSTS["production"])
    return f"{host}/app/{QBO_PAGES[entity]}{qbo_id}"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def event_id(location_id: str, event_key: str) -> str:
    """A stable id for the event (the same on every delivery), so a receiver can tell repeats apart."""
    return "qbc_" + hashlib.sha256(f"{location_id}|{event_key}".encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _ref(node: Any) -> tuple[str, str]:
    if isinstance(node, Mapping):
        return _text(node.get("value")), _text(node.get("name"))
    return "", ""


def _email(obj: Mapping[str, Any], field: str) -> str:
    node = obj.get(field)
    return _text(node.get("Address")).lower() if isinstance(node, Mapping) else ""


def _phone(obj: Mapping[str, Any]) -> str:
    for field in ("PrimaryPhone", "Mobile"):
        node = obj.get(field)
        if isinstance(node, Mapping) and _text(node.get("FreeFormNumber")):
            return _text(node.get("FreeFormNumber"))
    return ""


def currency_of(obj: Mapping[str, Any]) -> str:
    code, _ = _ref(obj.get("CurrencyRef"))
    return code or "USD"


def invoice_facts(invoice: Mapping[str, Any], environment: str) -> dict[str, Any]:
    """The invoice part of a payload, from a QuickBooks Invoice object."""
    invoice_id = _text(invoice.get("Id"))
    return {
        "id": invoice_id,
        "number": _text(invoice.get("DocNumber")),
        "date": _text(invoice.get("TxnDate")),
        "dueDate": _text(invoice.get("DueDate")),
        "total": money(invoice.get("TotalAmt")),
        "balance": money(invoice.get("Balance")),
        "currency": currency_of(invoice),
        "url": qbo_url(environment, "Invoice", invoice_id),
    }


def customer_facts(
    customer_id: str, environment: str, customer: Mapping[str, Any] | None = None, *, name: str = "", email: str = ""
) -> dict[str, Any]:
    """The customer part: from the Customer object when the product has it, else what the transaction named."""
    if customer is not None:
        name = _text(customer.get("DisplayName")) or name
        email = _email(customer, "PrimaryEmailAddr") or email
    return {
        "id": customer_id,
        "name": name,
        "email": email,
        "url": qbo_url(environment, "Customer", customer_id),
    }


def new_customer_facts(customer: Mapping[str, Any], environment: str, created_at: str) -> dict[str, Any]:
    customer_id = _text(customer.get("Id"))
    return {
        **customer_facts(customer_id, environment, customer),
        "phone": _phone(customer),
        "companyName": _text(customer.get("CompanyName")),
        "createdAt": created_at,
    }


def payment_facts(payment: Mapping[str, Any], environment: str, invoice_ids: list[str]) -> dict[str, Any]:
    payment_id = _text(payment.get("Id"))
    return {
        "id": payment_id,
        "reference": _text(payment.get("PaymentRefNum")),
        "date": _text(payment.get("TxnDate")),
        "amount": money(payment.get("TotalAmt")),
        "unapplied": money(payment.get("UnappliedAmt")),
        "currency": currency_of(payment),
        "invoiceIds": list(invoice_ids),
        "url": qbo_url(environment, "Payment", payment_id),
    }


def contact_facts(contact_id: str | None, customer: Mapping[str, Any]) -> dict[str, Any]:
    """The contact part: the linked CRM contact's id (when linked) with the customer's name, email, phone."""
    return {
        "id": contact_id or "",
        "name": _text(customer.get("name")),
        "email": _text(customer.get("email")),
        "phone": _text(customer.get("phone")),
    }


def build(
    trigger_key: str,
    *,
    event_id: str,
    occurred_at: datetime,
    facts: Mapping[str, Any],
    contact_id: str | None,
) -> dict[str, Any]:
    """The body sent to a workflow's target URL: the trigger's sample shape filled with the event's facts.

    ``facts`` holds the record parts (``customer``, ``invoice``, ``payment``, ``overdue``, ``company``);
    the contact is the one linked to the customer when the body is built (a customer's contact may be
    written after the event was seen)."""
    customer = dict(facts.get("customer") or {})
    contact = contact_facts(contact_id, {**customer, "phone": _text(facts.get("contact_phone"))})
    body: dict[str, Any] = {
        "event": {"type": trigger_key, "id": event_id, "occurredAt": iso(occurred_at)},
        "contactId": contact["id"],
        "contact": contact,
        "customer": customer,
    }
    for part in ("invoice", "payment", "overdue"):
        if part in facts:
            body[part] = dict(facts[part])
    body["company"] = dict(facts.get("company") or {})
    return body

"""What the app publishes in HighLevel's workflow builder: its triggers and its action, each with the sample
payload registered with it in the Marketplace (the contract test keeps these, the payloads the app sends and
docs/workflows.md the same).

Amounts are strings with two decimals; dates are ``YYYY-MM-DD``; moments are ISO 8601 UTC; ``url`` fields
open the record in QuickBooks Online. HighLevel uses the sample to offer filters and custom variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INVOICE_PAID = "quickbooks_invoice_paid"
PAYMENT_RECEIVED = "quickbooks_payment_received"
INVOICE_OVERDUE = "quickbooks_invoice_overdue"
CUSTOMER_CREATED = "quickbooks_customer_created"
BALANCE_ACTION = "quickbooks_get_balance"

OVERDUE_STAGES = (1, 7, 30)  # days past the due date, each fired once per invoice


@dataclass(frozen=True)
class TriggerSpec:
    key: str
    name: str
    summary: str
    how_to: str
    sample: dict[str, Any]


_CONTACT = {"id": "nmFmQEsNgz6AVpgLVUJ0", "name": "Kira Garcia", "email": "kira@example.com", "phone": "+15555550123"}
_CUSTOMER = {
    "id": "58",
    "name": "Kira Garcia",
    "email": "kira@example.com",
    "url": "https://app.qbo.intuit.com/app/customerdetail?nameId=58",
}
_COMPANY = {"realmId": "9130357852645026", "name": "Acme Plumbing LLC"}


def _invoice(balance: str) -> dict[str, Any]:
    return {
        "id": "130",
        "number": "1042",
        "date": "2026-02-01",
        "dueDate": "2026-03-03",
        "total": "885.00",
        "balance": balance,
        "currency": "USD",
        "url": "https://app.qbo.intuit.com/app/invoice?txnId=130",
    }


def _event(trigger: str, event_id: str) -> dict[str, Any]:
    return {"type": trigger, "id": event_id, "occurredAt": "2026-03-04T15:20:00Z"}


TRIGGERS: dict[str, TriggerSpec] = {
    spec.key: spec
    for spec in (
        TriggerSpec(
            key=INVOICE_PAID,
            name="QuickBooks invoice paid",
            summary="A QuickBooks invoice is paid in full (its balance reaches 0). Once per invoice.",
            how_to="Start a workflow when an invoice is paid in full, e.g. to thank the customer or tag them.",
            sample={
                "event": _event(INVOICE_PAID, "qbc_1f0c2b7e9a4d5e6f"),
                "contactId": _CONTACT["id"],
                "contact": dict(_CONTACT),
                "customer": dict(_CUSTOMER),
                "invoice": _invoice("0.00"),
                "company": dict(_COMPANY),
            },
        ),
        TriggerSpec(
            key=PAYMENT_RECEIVED,
            name="QuickBooks payment received",
            summary="A payment is recorded in QuickBooks. Once per payment.",
            how_to="Start a workflow when money lands, e.g. to send a receipt or a thank-you SMS.",
            sample={
                "event": _event(PAYMENT_RECEIVED, "qbc_7a3e0d1c5b2f4a98"),
                "contactId": _CONTACT["id"],
                "contact": dict(_CONTACT),
                "customer": dict(_CUSTOMER),
                "payment": {
                    "id": "212",
                    "reference": "CHK-3319",
                    "date": "2026-03-04",
                    "amount": "885.00",
                    "unapplied": "0.00",
                    "currency": "USD",
                    "invoiceIds": ["130"],
                    "url": "https://app.qbo.intuit.com/app/recvpayment?txnId=212",
                },
                "company": dict(_COMPANY),
            },
        ),
        TriggerSpec(
            key=INVOICE_OVERDUE,
            name="QuickBooks invoice overdue",
            summary=(
                "A QuickBooks invoice is past its due date with a balance: once per invoice at 1, 7 and 30 days "
                "overdue (stage). Never for a paid or voided invoice."
            ),
            how_to="Chase an unpaid invoice: filter on stage 1, 7 or 30 and send a reminder SMS or email.",
            sample={
                "event": _event(INVOICE_OVERDUE, "qbc_c42d9e8f0a1b3c57"),
                "contactId": _CONTACT["id"],
                "contact": dict(_CONTACT),
                "customer": dict(_CUSTOMER),
                "invoice": _invoice("885.00"),
                "overdue": {"stage": "7", "daysOverdue": 8, "amount": "885.00"},
                "company": dict(_COMPANY),
            },
        ),
        TriggerSpec(
            key=CUSTOMER_CREATED,
            name="QuickBooks customer created",
            summary="A customer is created in QuickBooks (after the connection). Once per customer.",
            how_to="Welcome a new QuickBooks customer, or add them to a nurture workflow.",
            sample={
                "event": _event(CUSTOMER_CREATED, "qbc_09b8a7c6d5e4f321"),
                "contactId": _CONTACT["id"],
                "contact": dict(_CONTACT),
                "customer": {
                    **_CUSTOMER,
                    "phone": "+15555550123",
                    "companyName": "Garcia Design",
                    "createdAt": "2026-03-04T15:19:42Z",
                },
                "company": dict(_COMPANY),
            },
        ),
    )
}


@dataclass(frozen=True)
class ActionSpec:
    key: str
    name: str
    summary: str
    how_to: str
    sample_request: dict[str, Any]
    sample_response: dict[str, Any]


BALANCE = ActionSpec(
    key=BALANCE_ACTION,
    name="Get QuickBooks balance",
    summary=(
        "The contact's QuickBooks open balance, overdue amount and number of open invoices, for later steps "
        "(as the app last saw QuickBooks: no QuickBooks call per run)."
    ),
    how_to="Add before an If/Else: e.g. only chase when {{quickbooks_get_balance.overdue}} is above 0.",
    # What HighLevel sends to the action's URL (its documented shape: data, extras, meta).
    sample_request={
        "data": {},
        "extras": {"locationId": "ve9EPM428h8vShlRW1KT", "contactId": _CONTACT["id"], "workflowId": "wf_123"},
        "meta": {"key": BALANCE_ACTION, "version": "1.0"},
    },
    # What the app answers (the action's "Response Data"; custom variables reference its keys).
    sample_response={
        "contactId": _CONTACT["id"],
        "found": True,
        "openBalance": "1240.50",
        "overdue": "885.00",
        "openInvoices": 2,
        "overdueInvoices": 1,
        "oldestDueDate": "2026-03-03",
        "currency": "USD",
        "customerIds": ["58"],
        "asOf": "2026-03-04T15:20:00Z",
    },
)

"""Seconds from an event to the other side, through the real path: webhook → service → Huey worker → QuickBooks.

Starts both emulators and the service with its in-process worker (SQLite + SqliteHuey, as `qbconnect serve`),
with the emulators delivering webhooks on their own. For N CRM invoices it measures the time from
"invoice sent" in the CRM to the QuickBooks invoice existing; for N CRM checkouts, from payment to the sales
receipt; for N QuickBooks customers, from creation in QuickBooks to the CRM contact.

    python -m bench latency            # N=15 each
    BENCH_LATENCY=40 python -m bench latency
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from bench._common import bench_stack, write_results
from qbconnect.sandbox.stack import Stack

WEBHOOK_INTERVAL = 0.1  # how often the emulators deliver queued webhooks (the platforms batch too)


def _wait(check: Callable[[], bool], timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the change never reached the other side")
        time.sleep(0.01)
    return time.perf_counter() - start


def _more_than(stack: Stack, realm: str, entity: str, before: int) -> Callable[[], bool]:
    return lambda: len(stack.qbo.entities(realm, entity)) > before


def _contact_with(stack: Stack, location: str, email: str) -> Callable[[], bool]:
    return lambda: any(c.get("email") == email for c in stack.crm.contacts(location))


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 3),
        "max_s": round(ordered[-1], 3),
    }


def _run(stack: Stack, count: int) -> dict[str, dict[str, float]]:
    location = stack.install_crm_location(name="Latency Co")
    realm = stack.connect_quickbooks(location, name="Latency Co LLC", country="US")
    stack.crm.start_webhook_delivery(WEBHOOK_INTERVAL)
    stack.qbo.start_webhook_delivery(WEBHOOK_INTERVAL)
    contact = stack.crm.create_contact(location, firstName="Lee", lastName="Ray", email="lee.ray@example.com")
    invoices: list[float] = []
    receipts: list[float] = []
    contacts: list[float] = []
    for n in range(count):
        invoice = stack.crm.create_invoice(
            location, contact_id=str(contact["id"]), items=[{"name": "Visit", "amount": Decimal("80.00"), "qty": 1}]
        )
        before = len(stack.qbo.entities(realm, "Invoice"))
        stack.crm.send_invoice(invoice["_id"])
        invoices.append(_wait(_more_than(stack, realm, "Invoice", before)))

        before = len(stack.qbo.entities(realm, "SalesReceipt"))
        stack.crm.create_order(
            location,
            contact_id=str(contact["id"]),
            source_type="funnel",
            source_sub_type="two_step_order_form",
            items=[{"name": "Starter kit", "amount": Decimal("49.00"), "qty": 1}],
        )
        receipts.append(_wait(_more_than(stack, realm, "SalesReceipt", before)))

        email = f"new.customer.{n}@example.org"
        stack.qbo.ui_create(
            realm,
            "Customer",
            {"DisplayName": f"New Customer {n}", "GivenName": "New", "PrimaryEmailAddr": {"Address": email}},
        )
        contacts.append(_wait(_contact_with(stack, location, email)))
    return {
        "crm_invoice_sent_to_qbo_invoice": _summary(invoices),
        "crm_payment_to_qbo_sales_receipt": _summary(receipts),
        "qbo_customer_to_crm_contact": _summary(contacts),
    }


def main() -> None:
    count = int(os.environ.get("BENCH_LATENCY", "15"))
    with bench_stack(run_worker=True) as stack:
        results = _run(stack, count)
    write_results("latency", results)
    print(f"{'path':<36}{'n':>4}{'p50 s':>8}{'p95 s':>8}{'max s':>8}")
    for path, row in results.items():
        print(f"{path:<36}{row['n']:>4}{row['p50_s']:>8.3f}{row['p95_s']:>8.3f}{row['max_s']:>8.3f}")
    print(f"(emulators deliver webhooks every {WEBHOOK_INTERVAL}s; the times include that wait)")

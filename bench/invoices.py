"""QuickBooks calls per CRM invoice event, once the customer and items are known (goal: one write).

Runs the whole product on this machine (both emulators + the service, SQLite), connects a US location,
warms the customer and item caches with one invoice, then drives N invoices through
send → edit → extra discount → partial payment → full payment → void, delivering each event's webhook and
running the jobs. The QBO emulator's ``request_log`` counts the calls each event cost.

    python -m bench invoices            # N=20
    BENCH_INVOICES=100 python -m bench invoices
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench._common import bench_stack, write_results
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.engine import clients as job_clients


def _counts(stack: Stack, realm_id: str, start: int) -> tuple[int, int]:
    records = [r for r in stack.qbo.request_log[start:] if r.realm_id == realm_id]
    writes = sum(1 for r in records if r.method == "POST" and r.entity not in (None, "query"))
    return writes, len(records) - writes


def main() -> None:
    count = int(os.environ.get("BENCH_INVOICES", "20"))
    job_clients.qbo_sleep = lambda seconds: None
    with bench_stack() as stack:
        results = _run(stack, count)
    write_results("invoices", results)
    print(f"{'event':<16}{'writes/event':>14}{'reads/event':>13}{'calls/event':>13}{'ms/event':>10}")
    for event, row in results["events"].items():
        print(
            f"{event:<16}{row['writes_per_event']:>14.2f}{row['reads_per_event']:>13.2f}"
            f"{row['calls_per_event']:>13.2f}{row['ms_per_event']:>10.1f}"
        )
    print(f"{count} invoices; first invoice (customer + items created): {results['first_invoice']}")


def _run(stack: Stack, count: int) -> dict[str, Any]:
    location_id = stack.install_crm_location(name="Bench Plumbing")
    realm_id = stack.connect_quickbooks(location_id, name="Bench Plumbing LLC", country="US")
    stack.drain()
    crm = stack.crm
    contact = crm.create_contact(location_id, firstName="Ann", lastName="Lee", email="ann@example.com")
    items = [
        {"name": "Repair", "qty": 2, "amount": "60.00", "taxes": [{"name": "Sales tax", "rate": "8.25"}]},
        {"name": "Call-out fee", "qty": 1, "amount": "35.50"},
    ]

    def settle() -> None:
        stack.deliver_webhooks()
        stack.drain()

    # warm-up: the first invoice creates the customer and the items
    start = len(stack.qbo.request_log)
    first = crm.create_invoice(location_id, contact_id=contact["id"], items=items)
    crm.send_invoice(first["_id"])
    settle()
    writes, reads = _counts(stack, realm_id, start)
    first_invoice = {"writes": writes, "reads": reads}

    events: dict[str, Callable[[str], Any]] = {
        "sent": lambda inv: crm.send_invoice(inv),
        "edited": lambda inv: crm.update_invoice(inv, items=[{**items[0], "qty": 3}, items[1]], due_date="2031-01-31"),
        "discount": lambda inv: crm.update_invoice(inv, discount={"type": "percentage", "value": 10}),
        "partial_paid": lambda inv: crm.record_invoice_payment(inv, Decimal("50.00")),
        "paid": lambda inv: crm.record_invoice_payment(inv, crm.invoice(inv)["amountDue"]),
        "voided": lambda inv: crm.void_invoice(inv),
    }
    totals: dict[str, dict[str, list[float]]] = {name: {"writes": [], "reads": [], "ms": []} for name in events}
    for _ in range(count):
        inv = crm.create_invoice(location_id, contact_id=contact["id"], items=items)["_id"]
        stack.deliver_webhooks()  # InvoiceCreate (a draft: skipped without QuickBooks calls)
        stack.drain()
        for name, act in events.items():
            act(inv)
            start = len(stack.qbo.request_log)
            began = time.perf_counter()
            settle()
            elapsed = (time.perf_counter() - began) * 1000
            writes, reads = _counts(stack, realm_id, start)
            totals[name]["writes"].append(writes)
            totals[name]["reads"].append(reads)
            totals[name]["ms"].append(elapsed)
    return {
        "invoices": count,
        "first_invoice": first_invoice,
        "events": {
            name: {
                "writes_per_event": statistics.mean(values["writes"]),
                "reads_per_event": statistics.mean(values["reads"]),
                "calls_per_event": statistics.mean(values["writes"]) + statistics.mean(values["reads"]),
                "ms_per_event": statistics.mean(values["ms"]),
            }
            for name, values in totals.items()
        },
    }


if __name__ == "__main__":
    main()

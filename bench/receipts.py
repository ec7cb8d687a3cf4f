"""Sales receipts: QuickBooks and CRM calls per checkout, renewal and refund, and the cost of a poll.

Runs the whole product on this machine (both emulators + the service, SQLite), connects a US location,
warms the customer/item/payment-method caches with one checkout, then drives N checkouts (webhooks), N
subscription renewals (found by polling) and N partial refunds (found by polling), counting the calls
each cost in the emulators' request logs. Finally it times a poll that finds nothing new.

    python -m bench receipts            # N=20
    BENCH_RECEIPTS=100 python -m bench receipts
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench._common import bench_stack, write_results
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine import jobs, routing


def main() -> None:
    count = int(os.environ.get("BENCH_RECEIPTS", "20"))
    job_clients.qbo_sleep = lambda seconds: None
    with bench_stack() as stack:
        results = _run(stack, count)
    write_results("receipts", results)
    print(f"{'event':<12}{'qbo writes':>12}{'qbo reads':>11}{'crm calls':>11}{'ms/event':>10}")
    for event, row in results["events"].items():
        print(
            f"{event:<12}{row['qbo_writes']:>12.2f}{row['qbo_reads']:>11.2f}{row['crm_calls']:>11.2f}{row['ms']:>10.1f}"
        )
    quiet = results["quiet_poll"]
    print(f"{count} of each; a poll finding nothing over {quiet['transactions']} transactions: {quiet}")


def _run(stack: Stack, count: int) -> dict[str, Any]:
    location_id = stack.install_crm_location(name="Bench Store")
    realm_id = stack.connect_quickbooks(location_id, name="Bench Store LLC", country="US")
    stack.drain()
    crm = stack.crm
    contact = crm.create_contact(location_id, firstName="Ann", lastName="Lee", email="ann@example.com")

    def checkout() -> dict[str, Any]:
        return crm.create_order(
            location_id,
            contact_id=contact["id"],
            source_type="funnel",
            source_sub_type="one_step_order_form",
            items=[
                {"name": "Course", "amount": "97.00", "productId": "prod-course"},
                {"name": "Workbook", "amount": "19.50", "qty": 2, "productId": "prod-workbook"},
            ],
            tax=Decimal("8.40"),
            subscription=True,
        )

    def poll() -> None:
        with stack.runtime.sessions.begin() as session:
            jobs.enqueue(session, location_id, routing.TRANSACTION_POLL, "all", "bench")
        stack.drain()

    def measure(event: Callable[[], None], settle: Callable[[], None]) -> dict[str, float]:
        event()
        qbo_start, crm_start = len(stack.qbo.request_log), len(crm.request_log)
        began = time.perf_counter()
        settle()
        elapsed = (time.perf_counter() - began) * 1000
        qbo = [r for r in stack.qbo.request_log[qbo_start:] if r.realm_id == realm_id]
        writes = sum(1 for r in qbo if r.method == "POST" and r.entity not in (None, "query"))
        return {
            "qbo_writes": writes,
            "qbo_reads": len(qbo) - writes,
            "crm_calls": len(crm.request_log) - crm_start,
            "ms": elapsed,
        }

    def webhooks() -> None:
        stack.deliver_webhooks()
        stack.drain()

    checkout()  # warm-up: customer, items, payment method, Undeposited Funds
    webhooks()
    rows: dict[str, list[dict[str, float]]] = {"checkout": [], "renewal": [], "refund": []}
    orders = []
    for _ in range(count):
        rows["checkout"].append(measure(lambda: orders.append(checkout()), webhooks))
    subs = {s["entityId"]: sid for sid, s in crm.subscriptions.items()}
    for order in orders:
        rows["renewal"].append(measure(lambda o=order: crm.renew_subscription(subs[o["_id"]]), poll))
    first_txns = [next(t for t in crm.transactions.values() if t["entityId"] == o["_id"]) for o in orders]
    for txn in first_txns:
        rows["refund"].append(measure(lambda t=txn: crm.refund_transaction(t["_id"], Decimal("10.00")), poll))
    quiet = measure(lambda: None, poll)
    receipts = len(stack.qbo.entities(realm_id, "SalesReceipt"))
    refunds = len(stack.qbo.entities(realm_id, "RefundReceipt"))
    assert receipts == 1 + 2 * count and refunds == count, (receipts, refunds)
    return {
        "count": count,
        "events": {
            name: {key: sum(r[key] for r in values) / len(values) for key in values[0]} for name, values in rows.items()
        },
        "quiet_poll": {**quiet, "transactions": len(crm.transactions)},
    }


if __name__ == "__main__":
    main()

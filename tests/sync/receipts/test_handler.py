"""The ``order`` and ``transaction`` handlers through the engine: a CRM checkout becomes one QuickBooks sales
receipt, a refund one refund receipt; each job is enqueued by kind and run by JobRunner against the emulators."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from qbconnect.services.activity_log import headline
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.routing import ORDER, TRANSACTION
from tests.support.engine_harness import jobs_of, run_again, run_job
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)


def checkout(c: Connected, amount: int = 100) -> tuple[str, str]:
    """A paid order-form checkout in the CRM: (order id, transaction id)."""
    crm = c.stack.crm
    contact = crm.find_by_email(c.location_id, "ann@example.com") or crm.create_contact(
        c.location_id, firstName="Ann", lastName="Lee", email="ann@example.com"
    )
    order = crm.create_order(
        c.location_id,
        contact_id=contact["id"],
        source_type="funnel",
        source_sub_type="one_step_order_form",
        items=[{"name": "Course", "amount": amount}],
    )
    [txn] = [t for t in crm.transactions.values() if t["entityId"] == order["_id"]]
    return str(order["_id"]), str(txn["_id"])


def receipts(c: Connected, entity: str = "SalesReceipt") -> list[dict[str, Any]]:
    return c.stack.qbo.entities(c.realm_id, entity)


def test_an_order_queues_its_payment_for_booking(connected: Connected) -> None:
    c = connected
    order_id, txn_id = checkout(c)

    run = run_job(c.stack.runtime, c.location_id, ORDER, order_id)

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    assert [(j.entity_id, j.state) for j in jobs_of(c.stack.runtime, c.location_id, TRANSACTION)] == [
        (txn_id, "pending")
    ]
    assert receipts(c) == []  # the order job only queues; the transaction job books


def test_an_order_payment_becomes_one_sales_receipt(connected: Connected) -> None:
    c = connected
    _, txn_id = checkout(c, amount=100)

    run = run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    [receipt] = receipts(c)
    assert run.activity.crm_id == txn_id and run.activity.qbo_id == receipt["Id"]
    assert "sales receipt" in (run.activity.summary or "") and "created" in (run.activity.summary or "")
    assert Decimal(str(receipt["TotalAmt"])) == Decimal("100.00")
    assert txn_id in str(receipt.get("PrivateNote", ""))

    again = run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)
    assert again.state == "done" and "nothing new to book" in (again.activity.summary or "")  # type: ignore[union-attr]
    assert len(receipts(c)) == 1


def test_a_refund_becomes_one_refund_receipt(connected: Connected) -> None:
    c = connected
    _, txn_id = checkout(c, amount=100)
    run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)
    c.stack.crm.refund_transaction(txn_id, Decimal("40.00"))

    run = run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)

    assert run.state == "done" and run.activity is not None
    assert "Refund of 40.00 → QuickBooks refund receipt" in (run.activity.summary or "")
    [refund] = receipts(c, "RefundReceipt")
    assert Decimal(str(refund["TotalAmt"])) == Decimal("40.00")
    assert len(receipts(c)) == 1  # the sales receipt is not booked twice


def test_a_refund_whose_answer_was_lost_is_replayed_with_the_same_requestid(connected: Connected) -> None:
    c = connected
    _, txn_id = checkout(c, amount=100)
    run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)
    c.stack.crm.refund_transaction(txn_id, Decimal("40.00"))
    c.stack.qbo.inject_fault("lost_response", entity="RefundReceipt", method="POST", count=20)

    first = run_job(c.stack.runtime, c.location_id, TRANSACTION, txn_id)

    assert first.job.state == "pending" and first.activity is not None and first.activity.status == "retrying"
    c.stack.qbo.clear_faults()
    again = run_again(c.stack.runtime, first.job.id)

    assert again.state == "done"
    [refund] = receipts(c, "RefundReceipt")
    assert Decimal(str(refund["TotalAmt"])) == Decimal("40.00")
    posts = [r for r in c.stack.qbo.request_log if r.method == "POST" and r.entity == "RefundReceipt"]
    assert len({r.request_id for r in posts}) == 1 and posts[-1].operation.endswith(":replay")


def test_the_result_reads_as_a_sentence_in_the_sync_log(connected: Connected) -> None:
    c = connected
    crm = c.stack.crm
    contact = crm.create_contact(c.location_id, firstName="Kira", lastName="Garcia", email="kira@example.com")
    order = crm.create_order(
        c.location_id,
        contact_id=contact["id"],
        source_type="funnel",
        source_sub_type="one_step_order_form",
        items=[{"name": "Course", "amount": "885.00"}],
    )
    [txn] = [t for t in crm.transactions.values() if t["entityId"] == order["_id"]]

    run = run_job(c.stack.runtime, c.location_id, TRANSACTION, str(txn["_id"]))

    row = run.activity
    assert row is not None and row.status == "done"
    assert (row.customer, row.customer_email, row.amount, row.currency) == (
        "Kira Garcia",
        "kira@example.com",
        Decimal("885.00"),
        "USD",
    )
    assert (row.qbo_type, row.group_key) == ("SalesReceipt", f"order:{order['_id']}")
    assert headline(row) == (
        f"Order form payment {txn['chargeId']} · Kira Garcia · $885.00 → QuickBooks sales receipt {row.qbo_id}"
    )

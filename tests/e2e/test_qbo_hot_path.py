# ruff: noqa: F811  (pytest fixtures imported by name)
"""No QuickBooks read on the hot path (issue 12): once the customer and the items are known, an invoice's
whole life (sent, edited, extra discount, partial and full payment; another sent and voided, one paid and
voided) and a sales receipt with its refund cost only their writes. Counted on the QuickBooks emulator's
request log by method; the books must still be exact to the cent, with nothing booked twice."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from qbconnect.db.models import InboxEvent
from qbconnect.sandbox.qbo.state import RequestRecord
from qbconnect.sandbox.stack import Stack
from tests.e2e.test_invoice_sync import Books, make_books
from tests.e2e.test_receipts import _order, _poll, _receipt_for, _sync, _txn_of
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

COURSE = "prod_course"  # one CRM product, so its QuickBooks item is known after the first sale


def is_read(record: RequestRecord) -> bool:
    """A metered QuickBooks read: any GET (read, query, CDC, company info, preferences) or a query."""
    return record.method == "GET" or record.operation in ("query", "cdc")


def calls_since(stack: Stack, start: int) -> Counter[str]:
    """QuickBooks requests after ``start``, by ``METHOD entity operation``."""
    return Counter(f"{r.method} {r.entity} {r.operation}" for r in stack.qbo.request_log[start:])


def reads_since(stack: Stack, start: int) -> list[str]:
    return [f"{r.method} {r.entity} {r.operation} {r.path}" for r in stack.qbo.request_log[start:] if is_read(r)]


@pytest.fixture(params=["US", "GB"])
def books(stack: Stack, request: pytest.FixtureRequest) -> Books:
    return make_books(stack, str(request.param))


def _warm_up(books: Books) -> None:
    """One invoice for the customer with the same items: the customer and items are known afterwards."""
    warm = books.invoice()
    books.stack.crm.send_invoice(warm)
    books.settle()
    books.assert_in_step(warm)


def test_invoice_lifecycle_for_a_known_customer_makes_no_quickbooks_read(books: Books) -> None:
    stack, crm = books.stack, books.stack.crm
    _warm_up(books)
    start = len(stack.qbo.request_log)

    inv = books.invoice()
    crm.send_invoice(inv)
    books.settle()
    books.assert_in_step(inv)
    crm.update_invoice(inv, items=[{"name": "Repair", "qty": 3, "amount": "60.00", "taxes": books.tax()}])
    books.settle()
    books.assert_in_step(inv)
    crm.update_invoice(inv, discount={"type": "percentage", "value": 10})
    books.settle()
    books.assert_in_step(inv)
    crm.record_invoice_payment(inv, Decimal("50.00"))
    books.settle()
    books.assert_in_step(inv)
    crm.record_invoice_payment(inv, books.crm_invoice(inv)["amountDue"])
    books.settle()
    paid = books.assert_in_step(inv)
    assert Decimal(str(paid["Balance"])) == 0

    voided = books.invoice()
    crm.send_invoice(voided)
    books.settle()
    crm.void_invoice(voided)
    books.settle()
    paid_then_voided = books.invoice()
    crm.send_invoice(paid_then_voided)
    books.settle()
    crm.record_invoice_payment(paid_then_voided, Decimal("20.00"))
    books.settle()
    crm.void_invoice(paid_then_voided)
    books.settle()

    calls = calls_since(stack, start)
    print(f"\nQuickBooks calls for the lifecycle ({books.country}): {sum(calls.values())} {dict(calls)}")
    assert reads_since(stack, start) == []
    for crm_id in (voided, paid_then_voided):
        qinv = books.qbo_invoice_for(crm_id)
        assert Decimal(str(qinv["TotalAmt"])) == 0 and Decimal(str(qinv["Balance"])) == 0
        assert books.last_row(crm_id).status == "done"
    assert len(books.qbo_invoices()) == 4  # the warm-up and three, none twice
    payments = books.payments()
    assert len(payments) == 3
    assert sorted(Decimal(str(p["TotalAmt"])) for p in payments) == sorted(
        [Decimal("0"), Decimal("50.00"), Decimal(str(paid["TotalAmt"])) - Decimal("50.00")]
    )


def test_sales_receipt_and_refund_for_a_known_customer_make_no_quickbooks_read(connected: Connected) -> None:
    c = connected
    warm = _txn_of(
        c, _order(c, "funnel", "one_step_order_form", items=[{"name": "Course", "amount": 100, "productId": COURSE}])
    )
    _sync(c)  # the customer, the item, the payment method and Undeposited Funds are known afterwards
    start = len(c.stack.qbo.request_log)

    txn = _txn_of(
        c,
        _order(c, "funnel", "one_step_order_form", items=[{"name": "Course", "amount": "149.99", "productId": COURSE}]),
    )
    _sync(c)
    c.stack.crm.refund_transaction(txn["_id"], Decimal("40.00"))
    _poll(c)
    c.stack.crm.refund_transaction(txn["_id"], Decimal("109.99"))  # the rest: a full refund (webhook)
    _sync(c)
    _poll(c)

    calls = calls_since(c.stack, start)
    print(f"\nQuickBooks calls for a sales receipt and two refunds: {sum(calls.values())} {dict(calls)}")
    assert reads_since(c.stack, start) == []
    receipts = c.stack.qbo.entities(c.realm_id, "SalesReceipt")
    assert len(receipts) == 2
    assert [len(_receipt_for(c, t)) for t in (warm, txn)] == [1, 1]
    refunds = c.stack.qbo.entities(c.realm_id, "RefundReceipt")
    assert sorted(Decimal(str(r["TotalAmt"])) for r in refunds) == [Decimal("40.00"), Decimal("109.99")]
    assert calls == Counter({"POST SalesReceipt create": 1, "POST RefundReceipt create": 2})


def test_echoes_of_our_own_creates_ring_nothing_and_our_payment_still_gets_its_review_request(
    stack: Stack,
) -> None:
    """Intuit sends a webhook for the product's own Payment and Customer creates; those echoes ask for no
    change query. A payment the product recorded still gets the review-request check, from what the product
    knows: the partial payment reads nothing, the full one costs the one query that finds the first invoice."""
    books = make_books(stack, "US")
    books.set_settings(review_link="https://g.page/r/acme/review")
    books.settle()  # what connecting queued (the first change query)
    start = len(stack.qbo.request_log)
    inv = books.invoice(email="first.time@example.com")
    stack.crm.send_invoice(inv)
    books.settle()
    stack.crm.record_invoice_payment(inv, Decimal("10.00"))
    books.settle()
    assert stack.crm.messages(books.location_id) == []
    stack.crm.record_invoice_payment(inv, books.crm_invoice(inv)["amountDue"])
    books.settle()
    books.assert_in_step(inv)
    (message,) = stack.crm.messages(books.location_id)
    assert message["to"] == "first.time@example.com"
    reads = Counter(r.split()[1] for r in reads_since(stack, start))
    # A new customer and new items: one change query before creating the customer (what changed since,
    # issue 11) and the item look-ups; then the first-invoice query of the review check. No echo rang.
    assert reads["None"] == 1 and reads["Invoice"] == 1 and set(reads) <= {"None", "Invoice", "Item", "Account"}, reads
    with stack.runtime.sessions() as session:
        outcomes = Counter(
            f"{row.entity_kind}.{row.outcome}" for row in session.query(InboxEvent).filter(InboxEvent.source == "qbo")
        )
    assert outcomes["Payment.own_write"] == 2 and outcomes["Customer.own_write"] == 1, outcomes

"""The ``qbo_payment`` handler through the engine: the payment that leaves a customer's first invoice fully paid
sends one review request through the CRM; a later payment sends nothing. Run by JobRunner against both emulators."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from qbconnect.db.models import ReviewRequest
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.routing import QBO_PAYMENT
from tests.support.engine_harness import JobRun, run_job, set_settings
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

LINK = "https://g.page/r/acme-plumbing/review"


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)


def customer(c: Connected, given: str = "Ann", email: str = "ann@example.com") -> str:
    body = {"GivenName": given, "FamilyName": "Tester", "PrimaryEmailAddr": {"Address": email}}
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def invoice(c: Connected, customer_id: str, amount: str, txn_date: str) -> str:
    item = next(i for i in c.stack.qbo.entities(c.realm_id, "Item") if i["Name"] == "Hours")
    line = {
        "Amount": amount,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
    }
    body = {"CustomerRef": {"value": customer_id}, "TxnDate": txn_date, "Line": [line]}
    return str(c.stack.qbo.ui_create(c.realm_id, "Invoice", body)["Id"])


def pay(c: Connected, customer_id: str, invoice_id: str, amount: str) -> str:
    body = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Payment", body)["Id"])


def sync(c: Connected, payment_id: str) -> JobRun:
    return run_job(c.stack.runtime, c.location_id, QBO_PAYMENT, payment_id)


def messages(c: Connected) -> list[dict[str, Any]]:
    return c.stack.crm.messages(c.location_id)


def review_rows(c: Connected) -> list[ReviewRequest]:
    with c.stack.runtime.sessions() as session:
        return list(session.execute(select(ReviewRequest).where(ReviewRequest.location_id == c.location_id)).scalars())


def test_first_invoice_paid_in_full_sends_one_message_and_a_second_payment_none(connected: Connected) -> None:
    c = connected
    set_settings(c.stack.runtime, c.location_id, review_link=LINK)
    ann = customer(c)
    first = invoice(c, ann, "120.00", "2025-01-10")
    second = invoice(c, ann, "80.00", "2025-02-10")

    run = sync(c, pay(c, ann, first, "120.00"))

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    assert "Review request sent to" in (run.activity.summary or "")
    [message] = messages(c)
    assert message["to"] == "ann@example.com" and LINK in message["body"]
    assert run.activity.crm_id == message["contactId"]
    assert [(r.qbo_customer_id, r.qbo_invoice_id, r.status) for r in review_rows(c)] == [(ann, first, "sent")]

    later = sync(c, pay(c, ann, second, "80.00"))

    assert later.state == "skipped" and later.activity is not None and later.activity.status == "skipped"
    assert "already sent" in (later.activity.summary or "")
    assert len(messages(c)) == 1
    assert [r.status for r in review_rows(c)] == ["sent"]


def test_a_partial_payment_of_the_first_invoice_sends_nothing_yet(connected: Connected) -> None:
    c = connected
    set_settings(c.stack.runtime, c.location_id, review_link=LINK)
    ann = customer(c)
    first = invoice(c, ann, "120.00", "2025-01-10")

    run = sync(c, pay(c, ann, first, "20.00"))

    assert run.state == "skipped" and run.activity is not None
    assert "still has" in (run.activity.summary or "")
    assert messages(c) == [] and review_rows(c) == []


def test_without_a_review_link_nothing_is_read_or_sent(connected: Connected) -> None:
    c = connected
    ann = customer(c)
    payment_id = pay(c, ann, invoice(c, ann, "120.00", "2025-01-10"), "120.00")
    seen = len(c.stack.qbo.request_log)

    run = sync(c, payment_id)

    assert run.state == "skipped" and run.activity is not None and run.activity.status == "skipped"
    assert "Review request not sent" in (run.activity.summary or "")
    assert messages(c) == [] and len(c.stack.qbo.request_log) == seen


def test_the_contact_a_review_request_meets_is_linked_for_every_later_path(connected: Connected) -> None:
    """One customer identity: the customer was never imported (run_job skips the import and the webhook), so
    the review request finds or creates the contact by email, and writes the link every other path reads."""
    from qbconnect.sync.links.customers import linked_contact_id

    c = connected
    set_settings(c.stack.runtime, c.location_id, review_link=LINK)
    ann = customer(c, email="ann.review@example.com")
    with c.stack.runtime.sessions() as session:
        assert linked_contact_id(session, c.location_id, ann) is None
    run = sync(c, pay(c, ann, invoice(c, ann, "75.00", "2025-03-01"), "75.00"))
    assert run.state == "done" and run.activity is not None
    with c.stack.runtime.sessions() as session:
        assert linked_contact_id(session, c.location_id, ann) == run.activity.crm_id

"""Review requests end to end: QuickBooks payment → Intuit webhook → service → job → CRM conversations API."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Activity, InboxEvent, Location, QboConnection, ReviewRequest
from qbconnect.errors import TransientError
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.contacts.handler import enqueue_change_sweeps
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.routing import QBO_PAYMENT
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

LINK = "https://g.page/r/acme-plumbing/review"


# ---------------------------------------------------------------------------------------------- helpers
def set_settings(c: Connected, **settings: Any) -> None:
    with c.stack.runtime.sessions.begin() as session:
        location = session.get(Location, c.location_id)
        assert location is not None
        location.settings = dict(settings)


def customer(c: Connected, given: str, email: str | None = None, phone: str | None = None) -> str:
    body: dict[str, Any] = {"GivenName": given, "FamilyName": "Tester"}
    if email:
        body["PrimaryEmailAddr"] = {"Address": email}
    if phone:
        body["PrimaryPhone"] = {"FreeFormNumber": phone}
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def invoice(c: Connected, customer_id: str, amount: str, txn_date: str) -> str:
    item = next(i for i in c.stack.qbo.entities(c.realm_id, "Item") if i["Name"] == "Hours")
    body = {
        "CustomerRef": {"value": customer_id},
        "TxnDate": txn_date,
        "Line": [
            {
                "Amount": amount,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
            }
        ],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Invoice", body)["Id"])


def pay(c: Connected, customer_id: str, invoice_id: str, amount: str) -> str:
    body = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Payment", body)["Id"])


def run(running: Stack) -> None:
    while running.deliver_webhooks():
        pass
    running.drain()


def messages(c: Connected) -> list[dict[str, Any]]:
    return c.stack.crm.messages(c.location_id)


def review_rows(c: Connected) -> list[ReviewRequest]:
    with c.stack.runtime.sessions() as session:
        return list(session.execute(select(ReviewRequest).where(ReviewRequest.location_id == c.location_id)).scalars())


def payment_activities(c: Connected) -> list[Activity]:
    with c.stack.runtime.sessions() as session:
        return list(
            session.execute(
                select(Activity)
                .where(Activity.location_id == c.location_id, Activity.kind == QBO_PAYMENT)
                .order_by(Activity.id)
            ).scalars()
        )


def qbo_calls(c: Connected, since: int) -> Counter[str]:
    """The company's Accounting API requests since ``since`` (tokens aside), as "METHOD path-kind"."""
    found: Counter[str] = Counter()
    for r in c.stack.qbo.request_log[since:]:
        if r.realm_id == c.realm_id and not r.operation.startswith("token"):
            found[f"{r.method} {r.operation}{' ' + r.entity if r.operation == 'read' else ''}"] += 1
    return found


def kept_changes(c: Connected) -> list[str]:
    """Objects a change query kept that no job took yet."""
    with c.stack.runtime.sessions() as session:
        rows = session.execute(
            select(InboxEvent.event_type).where(InboxEvent.source == "qbo_cdc", InboxEvent.outcome == "kept")
        )
        return list(rows.scalars())


def enqueue_payment(c: Connected, payment_id: str, reason: str = "test") -> None:
    with c.stack.runtime.sessions.begin() as session:
        jobs.enqueue(session, c.location_id, QBO_PAYMENT, payment_id, reason)
    c.stack.drain()


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("webhook_format", ["legacy", "cloudevents"])
def test_first_invoice_paid_in_full_sends_one_review_request(
    connected: Connected,  # noqa: F811
    webhook_format: str,
) -> None:
    c = connected
    c.stack.qbo.webhook_format = webhook_format
    set_settings(c, review_link=LINK)
    ann = customer(c, "Ann", email="ann@example.com")
    first = invoice(c, ann, "120.00", "2025-01-10")
    payment_id = pay(c, ann, first, "120.00")
    run(c.stack)

    sent = messages(c)
    assert len(sent) == 1
    message = sent[0]
    assert message["messageType"] == "TYPE_EMAIL"
    assert message["to"] == "ann@example.com"
    assert f'<a href="{LINK}">{LINK}</a>' in message["body"]
    assert "Hi Ann" in message["body"] and "Acme Plumbing" in message["body"]
    assert message["subject"] == "How did we do, Ann?"
    contact = c.stack.crm.contact(message["contactId"])
    assert contact["email"] == "ann@example.com"

    (row,) = review_rows(c)
    assert (row.status, row.qbo_customer_id, row.qbo_invoice_id, row.qbo_payment_id, row.channel) == (
        "sent",
        ann,
        first,
        payment_id,
        "Email",
    )
    assert row.contact_id == message["contactId"]
    activity = payment_activities(c)[-1]
    assert activity.status == "done"
    assert activity.summary is not None and "Review request sent to Ann Tester by Email" in activity.summary
    assert activity.qbo_id == payment_id and activity.crm_id == message["contactId"]


def test_the_same_webhook_three_times_sends_once(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    ann = customer(c, "Ann", email="ann@example.com")
    payment_id = pay(c, ann, invoice(c, ann, "80.00", "2025-02-01"), "80.00")
    run(c.stack)
    assert len(messages(c)) == 1

    payment_posts = [w for w in c.stack.qbo.delivered_webhooks if b"Payment" in w.body]
    assert payment_posts
    redelivered = payment_posts[-1]
    for _ in range(3):
        response = httpx.post(
            redelivered.url,
            content=redelivered.body,
            headers={"content-type": "application/json", "intuit-signature": redelivered.signature},
        )
        assert response.status_code == 200
        c.stack.drain()
    # The job itself also runs again (as from the CDC sweep, an Update webhook, or Retry): still one.
    for _ in range(3):
        enqueue_payment(c, payment_id, "QuickBooks Payment Update webhook")
    c.stack.qbo.ui_update(c.realm_id, "Payment", {"Id": payment_id, "PrivateNote": "edited"})
    run(c.stack)

    assert len(messages(c)) == 1
    assert [r.status for r in review_rows(c)] == ["sent"]
    later = payment_activities(c)[-1]
    assert later.status == "skipped"
    assert later.summary is not None and "already sent" in later.summary


def test_paying_a_later_invoice_sends_nothing_more(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    ann = customer(c, "Ann", email="ann@example.com")
    first = invoice(c, ann, "50.00", "2025-01-05")
    pay(c, ann, first, "50.00")
    run(c.stack)
    assert len(messages(c)) == 1

    second = invoice(c, ann, "70.00", "2025-03-05")
    pay(c, ann, second, "70.00")
    run(c.stack)
    assert len(messages(c)) == 1


def test_only_the_earliest_invoice_counts_not_the_first_created(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    bob = customer(c, "Bob", email="bob@example.com")
    later = invoice(c, bob, "90.00", "2025-06-01")  # created first, dated later
    earliest = invoice(c, bob, "40.00", "2025-01-15")
    pay(c, bob, later, "90.00")
    run(c.stack)
    assert messages(c) == []
    skipped = payment_activities(c)[-1]
    assert skipped.status == "skipped"
    assert skipped.summary is not None and "not the customer's first" in skipped.summary
    assert review_rows(c) == []

    pay(c, bob, earliest, "40.00")
    run(c.stack)
    (message,) = messages(c)
    assert message["to"] == "bob@example.com"
    assert review_rows(c)[0].qbo_invoice_id == earliest


def test_partial_payment_waits_for_the_full_payment(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    cleo = customer(c, "Cleo", email="cleo@example.com")
    first = invoice(c, cleo, "100.00", "2025-01-20")
    pay(c, cleo, first, "40.00")
    run(c.stack)
    assert messages(c) == []
    waiting = payment_activities(c)[-1]
    assert waiting.status == "skipped"
    assert waiting.summary is not None and "still has 60.00 to pay" in waiting.summary
    assert review_rows(c) == []

    final_payment = pay(c, cleo, first, "60.00")
    run(c.stack)
    assert len(messages(c)) == 1
    assert review_rows(c)[0].qbo_payment_id == final_payment


def test_do_not_disturb_skips_once_and_logs_the_reason(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    contact = c.stack.crm.create_contact(c.location_id, firstName="Dana", email="dana@example.com")
    c.stack.crm.set_dnd(contact["id"], "Email", True)
    dana = customer(c, "Dana", email="dana@example.com")
    payment_id = pay(c, dana, invoice(c, dana, "30.00", "2025-01-02"), "30.00")
    run(c.stack)

    assert messages(c) == []
    (row,) = review_rows(c)
    assert row.status == "skipped" and row.contact_id == contact["id"]
    assert row.detail == "do-not-disturb is on for Email"
    activity = payment_activities(c)[-1]
    assert activity.status == "skipped"
    assert activity.summary is not None and "do-not-disturb is on for Email" in activity.summary

    # Still once: DND off again and the job re-run (Retry) sends nothing.
    c.stack.crm.set_dnd(contact["id"], "Email", False)
    enqueue_payment(c, payment_id)
    assert messages(c) == []


def test_dnd_for_all_channels_blocks_sms_too(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK, review_request_channel="SMS")
    contact = c.stack.crm.create_contact(c.location_id, firstName="Eve", email="eve@example.com", phone="+15550100")
    c.stack.crm.set_dnd(contact["id"], "all", True)
    eve = customer(c, "Eve", email="eve@example.com")
    pay(c, eve, invoice(c, eve, "30.00", "2025-01-02"), "30.00")
    run(c.stack)
    assert messages(c) == []
    assert review_rows(c)[0].detail == "do-not-disturb is on for all channels"


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({}, "no review link set"),
        ({"review_link": LINK, "review_request_enabled": False}, "review requests are turned off"),
    ],
)
def test_off_sends_nothing_and_does_not_use_up_the_request(
    connected: Connected,  # noqa: F811
    settings: dict[str, Any],
    reason: str,
) -> None:
    c = connected
    set_settings(c, **settings)
    fay = customer(c, "Fay", email="fay@example.com")
    pay(c, fay, invoice(c, fay, "25.00", "2025-01-03"), "25.00")
    run(c.stack)
    assert messages(c) == []
    activity = payment_activities(c)[-1]
    assert activity.status == "skipped"
    assert activity.summary == f"Review request not sent: {reason}."
    assert review_rows(c) == []
    assert kept_changes(c) == []  # taken by the skipped run: the Retry below reads the payment afresh

    set_settings(c, review_link=LINK)  # turned on: the sync log's Retry now sends it
    with c.stack.runtime.sessions.begin() as session:
        assert jobs.retry_activity(session, activity.id) is not None
    c.stack.drain()
    assert len(messages(c)) == 1


def test_sms_channel_with_a_custom_template_to_the_existing_contact(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(
        c,
        review_link=LINK,
        review_request_channel="SMS",
        review_message="Thanks {first_name}! Review {business_name}: {review_link}",
    )
    existing = c.stack.crm.create_contact(c.location_id, firstName="Gus", phone="+15550111", email="gus@example.com")
    gus = customer(c, "Gus", email="gus@example.com")
    pay(c, gus, invoice(c, gus, "10.00", "2025-01-04"), "10.00")
    run(c.stack)

    (message,) = messages(c)
    assert message["messageType"] == "TYPE_SMS"
    assert message["contactId"] == existing["id"]
    assert message["body"] == f"Thanks Gus! Review Acme Plumbing: {LINK}"


def test_a_refused_send_is_failed_then_resumed_by_retry(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK, review_request_channel="SMS")
    hal = customer(c, "Hal", email="hal@example.com")  # no phone: HighLevel refuses the SMS
    pay(c, hal, invoice(c, hal, "15.00", "2025-01-06"), "15.00")
    run(c.stack)

    assert messages(c) == []
    (row,) = review_rows(c)
    assert row.status == "failed" and row.detail is not None and "phone" in row.detail
    failed = payment_activities(c)[-1]
    assert failed.status == "failed" and failed.error_category == "permanent"
    assert failed.error_message is not None and "Review request to Hal Tester not sent" in failed.error_message

    c.stack.crm.contact(row.contact_id or "")["phone"] = "+15550122"  # the user adds a phone in the CRM
    with c.stack.runtime.sessions.begin() as session:
        assert jobs.retry_activity(session, failed.id) is not None
    c.stack.drain()
    assert len(messages(c)) == 1
    assert [r.status for r in review_rows(c)] == ["sent"]


def test_a_send_that_never_left_is_retried_by_the_job(
    connected: Connected,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = connected
    set_settings(c, review_link=LINK)
    real_send = CrmClient.send_message
    calls: list[str] = []

    def flaky(self: CrmClient, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["contact_id"])
        if len(calls) == 1:
            raise TransientError("Could not reach HighLevel", code="network", detail="ConnectError")
        return real_send(self, **kwargs)

    monkeypatch.setattr(CrmClient, "send_message", flaky)
    ivy = customer(c, "Ivy", email="ivy@example.com")
    pay(c, ivy, invoice(c, ivy, "20.00", "2025-01-07"), "20.00")
    run(c.stack)
    assert len(calls) == 2
    assert len(messages(c)) == 1
    assert [r.status for r in review_rows(c)] == ["sent"]


def test_an_unconfirmed_send_is_never_repeated(
    connected: Connected,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = connected
    set_settings(c, review_link=LINK)
    calls: list[str] = []

    def timeout(self: CrmClient, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["contact_id"])
        raise TransientError("HighLevel did not answer in time", code="timeout", detail="ReadTimeout")

    monkeypatch.setattr(CrmClient, "send_message", timeout)
    jo = customer(c, "Jo", email="jo@example.com")
    payment_id = pay(c, jo, invoice(c, jo, "20.00", "2025-01-08"), "20.00")
    run(c.stack)
    assert len(calls) == 1  # not retried: the message may be out
    (row,) = review_rows(c)
    assert row.status == "unknown"
    failed = payment_activities(c)[-1]
    assert failed.status == "failed" and failed.error_message is not None
    assert "did not confirm" in failed.error_message

    enqueue_payment(c, payment_id)
    assert len(calls) == 1
    assert payment_activities(c)[-1].status == "skipped"


def test_a_payment_recorded_before_connecting_is_history(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    kim = customer(c, "Kim", email="kim@example.com")
    payment_id = pay(c, kim, invoice(c, kim, "20.00", "2025-01-09"), "20.00")
    c.stack.qbo.flush_webhooks(drop=True)
    created = c.stack.qbo.get(c.realm_id, "Payment", payment_id)["MetaData"]["CreateTime"]
    # Pretend the connection was made a day after the payment.
    when = datetime.fromisoformat(str(created).replace("Z", "+00:00")) + timedelta(days=1)
    with c.stack.runtime.sessions.begin() as session:
        conn = session.execute(select(QboConnection).where(QboConnection.location_id == c.location_id)).scalar_one()
        conn.connected_at = when
    enqueue_payment(c, payment_id)
    assert messages(c) == []
    activity = payment_activities(c)[-1]
    assert activity.summary is not None and "before QuickBooks was connected" in activity.summary


# ---------------------------------------------------------------------------------------------- the doorbell
def test_a_webhook_burst_costs_one_change_query_and_no_read_per_entity(connected: Connected) -> None:  # noqa: F811
    """20 changes in 5 webhook posts for one company: one CDC call covers them all; the customers and payments
    it returned are not read again; only each first-invoice payment costs its first-invoice query."""
    c = connected
    set_settings(c, review_link=LINK)
    payers = []
    for n in range(5):
        payer = customer(c, f"Payer{n}", email=f"payer{n}@example.com")
        payers.append((payer, invoice(c, payer, "100.00", f"2025-01-1{n}")))
    run(c.stack)
    since = len(c.stack.qbo.request_log)

    events = []
    for n, (payer, first) in enumerate(payers):
        pay(c, payer, first, "100.00")
        for k in range(3):
            customer(c, f"New{n}{k}", email=f"new{n}{k}@example.com")
        events.append(c.stack.qbo.flush_webhooks())  # one post per round
    c.stack.drain()

    assert events == [4, 4, 4, 4, 4]
    assert qbo_calls(c, since) == Counter({"GET cdc": 1, "GET query": 5})
    assert sorted(m["to"] for m in messages(c)) == [f"payer{n}@example.com" for n in range(5)]
    emails = {contact.get("email") for contact in c.stack.crm.contacts(c.location_id)}
    assert {f"new{n}{k}@example.com" for n in range(5) for k in range(3)} <= emails


def test_a_payment_seen_only_by_the_safety_sweep_sends_one_review_request(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    ann = customer(c, "Ann", email="ann@example.com")
    first = invoice(c, ann, "75.00", "2025-01-10")
    run(c.stack)
    payment_id = pay(c, ann, first, "75.00")
    assert c.stack.qbo.flush_webhooks(drop=True) > 0  # the Payment webhook never arrives
    since = len(c.stack.qbo.request_log)

    with c.stack.runtime.sessions.begin() as session:
        enqueue_change_sweeps(c.stack.runtime, session, now=utcnow() + timedelta(days=1, minutes=1))
    c.stack.drain()

    (message,) = messages(c)
    assert message["to"] == "ann@example.com"
    assert [(r.status, r.qbo_payment_id, r.qbo_invoice_id) for r in review_rows(c)] == [("sent", payment_id, first)]
    assert qbo_calls(c, since) == Counter({"GET cdc": 1, "GET query": 1})  # the payment is not read again

    with c.stack.runtime.sessions.begin() as session:  # the next day's sweep: still once
        enqueue_change_sweeps(c.stack.runtime, session, now=utcnow() + timedelta(days=2, minutes=2))
    c.stack.drain()
    assert len(messages(c)) == 1


def test_a_partial_payment_seen_through_the_change_query_costs_no_read(connected: Connected) -> None:  # noqa: F811
    c = connected
    set_settings(c, review_link=LINK)
    ann = customer(c, "Ann", email="ann@example.com")
    first = invoice(c, ann, "100.00", "2025-01-10")
    run(c.stack)
    since = len(c.stack.qbo.request_log)

    pay(c, ann, first, "30.00")
    run(c.stack)

    assert qbo_calls(c, since) == Counter({"GET cdc": 1})
    activity = payment_activities(c)[-1]
    assert activity.status == "skipped" and activity.summary is not None
    assert "still has 70.00 to pay" in activity.summary
    assert messages(c) == [] and review_rows(c) == []

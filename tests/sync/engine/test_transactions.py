"""The engine owns the job's transactions (sync/engine/context.py), shown against both emulators on SQLite:

- no transaction is open while a platform answers, for every job kind: at each request a separate sqlite3
  connection must be able to take the database's write lock (``BEGIN IMMEDIATE``, busy timeout 0);
- a requestid recorded before a create is durable before the call: a crash right after it replays, never
  duplicates;
- a crash (any exception but a SyncError) rolls back what was recorded since the last platform call;
- a SyncError keeps what the handler recorded, with the failure;
- a lost lease discards the run's last records and its outcome; what was committed before the platform
  calls stays.
"""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from qbconnect.db.link_model import Link
from qbconnect.db.models import ReviewRequest, SyncJob
from qbconnect.qbo.client import QboClient
from qbconnect.sync.contacts.importer import start_customer_import
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine import registry, routing
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.runner import JobRunner
from tests.support.engine_harness import enqueue, lock_probe, on_request, outcome, run_again, run_job, set_settings
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

REVIEW_LINK = "https://g.page/r/acme-plumbing/review"


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)


# ---- scenarios: the data each kind needs, on both emulators ----------------------------------------------


def crm_contact(c: Connected, email: str = "ann@example.com") -> str:
    crm = c.stack.crm
    found = crm.find_by_email(c.location_id, email)
    return str((found or crm.create_contact(c.location_id, firstName="Ann", lastName="Lee", email=email))["id"])


def sent_invoice(c: Connected) -> str:
    items = [{"name": "Repair", "qty": 2, "amount": "60.00"}]
    invoice_id = str(c.stack.crm.create_invoice(c.location_id, contact_id=crm_contact(c), items=items)["_id"])
    c.stack.crm.send_invoice(invoice_id)
    return invoice_id


def checkout(c: Connected) -> tuple[str, str]:
    order = c.stack.crm.create_order(
        c.location_id,
        contact_id=crm_contact(c),
        source_type="funnel",
        source_sub_type="one_step_order_form",
        items=[{"name": "Course", "amount": 100}],
    )
    [txn] = [t for t in c.stack.crm.transactions.values() if t["entityId"] == order["_id"]]
    return str(order["_id"]), str(txn["_id"])


def qbo_customer(c: Connected, given: str = "Jane", email: str = "jane@example.com", **extra: Any) -> str:
    body = {"GivenName": given, "FamilyName": "Doe", "PrimaryEmailAddr": {"Address": email}, **extra}
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def paid_first_invoice(c: Connected, customer_id: str) -> str:
    item = next(i for i in c.stack.qbo.entities(c.realm_id, "Item") if i["Name"] == "Hours")
    line = {
        "Amount": "120.00",
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
    }
    invoice = c.stack.qbo.ui_create(
        c.realm_id, "Invoice", {"CustomerRef": {"value": customer_id}, "TxnDate": "2025-01-10", "Line": [line]}
    )
    payment = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": "120.00",
        "Line": [{"Amount": "120.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Payment", payment)["Id"])


def invoice_job(c: Connected) -> int:
    invoice_id = sent_invoice(c)
    c.stack.crm.record_invoice_payment(invoice_id, Decimal("50.00"))  # create, then a payment
    return enqueue(c.stack.runtime, c.location_id, routing.INVOICE, invoice_id)


def order_job(c: Connected) -> int:
    order_id, _ = checkout(c)
    return enqueue(c.stack.runtime, c.location_id, routing.ORDER, order_id)


def transaction_job(c: Connected) -> int:
    _, txn_id = checkout(c)
    c.stack.crm.refund_transaction(txn_id, Decimal("30.00"))  # a sales receipt, then a refund receipt
    return enqueue(c.stack.runtime, c.location_id, routing.TRANSACTION, txn_id)


def customer_job(c: Connected) -> int:
    return enqueue(c.stack.runtime, c.location_id, routing.CUSTOMER, qbo_customer(c))


def customer_import_job(c: Connected) -> int:
    c.stack.qbo.seed_customers(c.realm_id, 8)  # written to the CRM by the import's threads
    with c.stack.runtime.sessions.begin() as session:
        job_id = start_customer_import(session, c.location_id, "test")
    assert job_id is not None
    return job_id


def qbo_payment_job(c: Connected) -> int:
    set_settings(c.stack.runtime, c.location_id, review_link=REVIEW_LINK)
    payment_id = paid_first_invoice(c, qbo_customer(c))
    return enqueue(c.stack.runtime, c.location_id, routing.QBO_PAYMENT, payment_id)


def invoice_reconcile_job(c: Connected) -> int:
    sent_invoice(c)  # its webhook was lost: the pass finds it and queues an invoice job
    return enqueue(c.stack.runtime, c.location_id, routing.INVOICE_RECONCILE, "all")


def transaction_poll_job(c: Connected) -> int:
    checkout(c)
    return enqueue(c.stack.runtime, c.location_id, routing.TRANSACTION_POLL, "all")


def qbo_cdc_job(c: Connected) -> int:
    qbo_customer(c)
    return enqueue(c.stack.runtime, c.location_id, routing.QBO_CDC, "all")


SCENARIOS: dict[str, Callable[[Connected], int]] = {
    routing.INVOICE: invoice_job,
    routing.ORDER: order_job,
    routing.TRANSACTION: transaction_job,
    routing.CUSTOMER: customer_job,
    routing.CUSTOMER_IMPORT: customer_import_job,
    routing.QBO_PAYMENT: qbo_payment_job,
    routing.INVOICE_RECONCILE: invoice_reconcile_job,
    routing.TRANSACTION_POLL: transaction_poll_job,
    routing.QBO_CDC: qbo_cdc_job,
}


# ---- (a) no transaction open while a platform answers ------------------------------------------------------


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_no_transaction_is_open_while_a_platform_answers(connected: Connected, kind: str) -> None:
    c = connected
    runtime = c.stack.runtime
    job_id = SCENARIOS[kind](c)
    probe = lock_probe(runtime)

    with probe.watching(runtime):
        state = JobRunner(runtime).run(job_id)
        own_requests = len(probe.requests)
        c.stack.drain()  # and the jobs it queued

    assert state == "done", outcome(runtime, job_id).job.last_error
    assert own_requests > 0, f"the {kind} job made no platform request"
    assert probe.failures == [], f"the database was locked during: {probe.failures}"
    with runtime.sessions() as session:
        states = set(session.execute(select(SyncJob.state).where(SyncJob.location_id == c.location_id)).scalars())
    assert states <= {"done", "skipped"}


def test_the_probe_sees_a_transaction_held_across_a_request(connected: Connected) -> None:
    """The probe itself: with a transaction open in the job's session, the next request is reported."""
    c = connected
    runtime = c.stack.runtime
    probe = lock_probe(runtime)
    session = runtime.sessions()
    try:
        session.execute(select(SyncJob.id)).all()  # BEGIN IMMEDIATE: the write lock is held from here
        with probe.watching(runtime):
            runtime.http.get(f"{c.stack.qbo_url}/nowhere")
        assert len(probe.failures) == 1
    finally:
        session.close()
    with probe.watching(runtime):
        runtime.http.get(f"{c.stack.qbo_url}/nowhere")
    assert len(probe.failures) == 1 and len(probe.requests) == 2


# ---- (b) what a crash, a sync error and a lost lease keep ---------------------------------------------------


def link(c: Connected, kind: str, **match: str) -> Link | None:
    with c.stack.runtime.sessions() as session:
        stmt = select(Link).where(Link.location_id == c.location_id, Link.kind == kind)
        for column, value in match.items():
            stmt = stmt.where(getattr(Link, column) == value)
        return session.execute(stmt).scalar_one_or_none()


def invoice_creates(c: Connected) -> list[tuple[str | None, str]]:
    return [
        (r.request_id, r.operation)
        for r in c.stack.qbo.request_log
        if r.method == "POST" and (r.entity or "").lower() == "invoice" and r.request_id
    ]


def test_a_requestid_recorded_before_a_create_survives_a_crash_right_after_the_call(
    connected: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = connected
    invoice_id = sent_invoice(c)
    original = QboClient.create
    crashes: list[str] = []

    def create_then_crash(self: QboClient, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        created = original(self, entity, body, request_id=request_id)
        if entity == "Invoice" and not crashes:
            crashes.append(request_id)
            raise RuntimeError("the worker died before the answer was recorded")
        return created

    monkeypatch.setattr(QboClient, "create", create_then_crash)

    first = run_job(c.stack.runtime, c.location_id, routing.INVOICE, invoice_id)

    assert first.state == "retry" and first.activity is not None and first.activity.status == "retrying"
    assert "RuntimeError" in (first.activity.error_message or "")
    assert len(c.stack.qbo.entities(c.realm_id, "Invoice")) == 1  # QuickBooks has it
    stored = link(c, "invoice", crm_id=invoice_id)
    assert stored is not None and stored.request_id == crashes[0]  # committed before the call
    assert stored.qbo_id is None  # the answer was never recorded (rolled back with the crash)

    second = run_again(c.stack.runtime, first.job.id)

    assert second.state == "done" and second.activity is not None and second.activity.status == "done"
    [qinv] = c.stack.qbo.entities(c.realm_id, "Invoice")  # no duplicate
    assert second.activity.qbo_id == qinv["Id"]
    [(first_rid, first_op), (replay_rid, replay_op)] = invoice_creates(c)
    assert first_rid == replay_rid == crashes[0]
    assert not first_op.endswith(":replay") and replay_op.endswith(":replay")  # answered from the first create


def crash_after(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The registered handler of ``kind`` runs fully, then the run crashes before the engine's commit."""
    spec = registry.get(kind)

    def crashing(ctx: JobContext) -> Result:
        spec.handler(ctx)
        raise RuntimeError("a bug after the last platform call")

    monkeypatch.setitem(registry.HANDLERS, kind, dataclasses.replace(spec, handler=crashing))


def test_a_crash_rolls_back_what_was_recorded_since_the_last_platform_call(
    connected: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = connected
    qbo_id = qbo_customer(c)
    crash_after(monkeypatch, routing.CUSTOMER)

    crashed = run_job(c.stack.runtime, c.location_id, routing.CUSTOMER, qbo_id)

    assert crashed.state == "retry" and crashed.activity is not None and crashed.activity.status == "retrying"
    assert "a bug after the last platform call" in (crashed.activity.error_message or "")
    assert c.stack.crm.find_by_email(c.location_id, "jane@example.com") is not None  # the CRM call happened
    assert link(c, "customer", qbo_id=qbo_id) is None  # the link written after it was rolled back

    monkeypatch.undo()
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)
    again = run_again(c.stack.runtime, crashed.job.id)

    assert again.state == "done" and again.activity is not None
    assert "contact updated" in (again.activity.summary or "")  # found by email, not created twice
    assert len(c.stack.crm.contacts(c.location_id)) == 1
    stored = link(c, "customer", qbo_id=qbo_id)
    assert stored is not None and stored.crm_id == again.activity.crm_id


def test_a_sync_error_keeps_the_failed_review_request_row(connected: Connected) -> None:
    c = connected
    set_settings(c.stack.runtime, c.location_id, review_link=REVIEW_LINK, review_request_channel="SMS")
    payment_id = paid_first_invoice(c, qbo_customer(c, "Hal", "hal@example.com"))  # no phone: HighLevel refuses

    run = run_job(c.stack.runtime, c.location_id, routing.QBO_PAYMENT, payment_id)

    assert run.state == "failed" and run.activity is not None and run.activity.status == "failed"
    assert "not sent" in (run.activity.error_message or "")
    assert c.stack.crm.messages(c.location_id) == []
    with c.stack.runtime.sessions() as session:
        [row] = session.execute(select(ReviewRequest).where(ReviewRequest.location_id == c.location_id)).scalars()
    assert row.status == "failed"  # recorded after the send failed, kept with the failure (not "sending")
    assert row.detail is not None and "phone" in row.detail


def test_a_sync_error_keeps_the_quickbooks_id_of_a_receipt_booked_with_a_wrong_total(
    connected: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = connected
    _, txn_id = checkout(c)
    original = QboClient.create

    def answer_with_another_total(
        self: QboClient, entity: str, body: dict[str, Any], *, request_id: str
    ) -> dict[str, Any]:
        created = original(self, entity, body, request_id=request_id)
        return {**created, "TotalAmt": "99.00"} if entity == "SalesReceipt" else created

    monkeypatch.setattr(QboClient, "create", answer_with_another_total)

    run = run_job(c.stack.runtime, c.location_id, routing.TRANSACTION, txn_id)

    assert run.state == "failed" and run.activity is not None and run.activity.status == "failed"
    assert "totals 99.00" in (run.activity.error_message or "")
    [receipt] = c.stack.qbo.entities(c.realm_id, "SalesReceipt")
    stored = link(c, "sales_receipt", crm_id=txn_id)
    assert stored is not None and stored.qbo_id == receipt["Id"]  # kept with the failure

    monkeypatch.setattr(QboClient, "create", original)
    again = run_job(c.stack.runtime, c.location_id, routing.TRANSACTION, txn_id)

    assert again.state == "done" and again.activity is not None and again.activity.qbo_id == receipt["Id"]
    assert len(c.stack.qbo.entities(c.realm_id, "SalesReceipt")) == 1
    assert not [
        r for r in c.stack.qbo.request_log if (r.entity or "").lower() == "salesreceipt" and r.method == "POST"
    ][1:]


def test_a_lost_lease_discards_the_last_records_and_the_outcome_but_not_what_preceded_the_calls(
    connected: Connected,
) -> None:
    c = connected
    runtime = c.stack.runtime
    invoice_id = sent_invoice(c)
    job_id = enqueue(runtime, c.location_id, routing.INVOICE, invoice_id)

    def another_worker_takes_the_job(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path.lower().endswith("/invoice"):
            with runtime.sessions.begin() as session:
                session.execute(update(SyncJob).where(SyncJob.id == job_id).values(lease_owner="another-worker"))

    with on_request(runtime, another_worker_takes_the_job):
        state = JobRunner(runtime).run(job_id)

    assert state is None
    lost = outcome(runtime, job_id)
    assert (lost.job.state, lost.job.lease_owner) == ("running", "another-worker")  # no outcome recorded
    assert lost.activity is not None and lost.activity.status not in ("done", "failed", "retrying")
    [qinv] = c.stack.qbo.entities(c.realm_id, "Invoice")
    stored = link(c, "invoice", crm_id=invoice_id)
    assert stored is not None and stored.request_id  # committed before the create: stays
    assert stored.qbo_id is None and stored.content_hash is None  # recorded after the last call: discarded
    assert len(c.stack.qbo.entities(c.realm_id, "Customer")) == 1  # the customer create went before

    with runtime.sessions.begin() as session:  # the other worker died; the sweep makes the job pending again
        session.execute(update(SyncJob).where(SyncJob.id == job_id).values(state="pending", lease_owner=None))
    again = run_again(runtime, job_id)

    assert again.state == "done" and again.activity is not None and again.activity.qbo_id == qinv["Id"]
    assert len(c.stack.qbo.entities(c.realm_id, "Invoice")) == 1
    assert [op.endswith(":replay") for _, op in invoice_creates(c)] == [False, True]

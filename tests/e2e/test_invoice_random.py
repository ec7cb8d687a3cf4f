"""Randomized end to end: random CRM histories over several invoices, webhooks duplicated and shuffled,
QuickBooks faults injected, the worker killed once mid-run — afterwards QuickBooks equals the CRM."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from qbconnect.clock import utcnow
from qbconnect.db.models import SyncJob
from qbconnect.qbo.client import QboClient
from qbconnect.sandbox.crm.webhooks import deliver
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine import jobs
from tests.e2e.test_invoice_sync import Books, make_books
from tests.support.stack_fixtures import stack  # noqa: F401

SEEDS = [3, 11, 29, 42]
INVOICES = 3
STEPS = 12
EMAILS = ("ann@example.com", "bob@example.com")
FAULTS = ("429", "500", "503", "timeout")


class WorkerKilled(BaseException):
    """The worker process died right after QuickBooks accepted a write (before the job committed)."""


def deliver_shuffled(books: Books, rng: random.Random) -> None:
    """Every queued CRM webhook 1-3 times, in random order (HighLevel gives no ordering guarantee)."""
    crm = books.stack.crm
    events = crm._outbox.take_all()
    copies = [event for event in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(copies)
    for event in copies:
        deliver(crm._http, str(crm.webhook_url), event)


def run_some_jobs(books: Books, rng: random.Random) -> None:
    """Inject a fault or two, then run the due jobs (a retry may be left pending for later)."""
    for _ in range(rng.randint(0, 2)):
        books.stack.qbo.inject_fault(rng.choice(FAULTS), realm_id=books.realm_id, latency=0.0)
    books.stack.drain()
    books.stack.qbo.clear_faults()


def recover_from_kill(stack: Stack) -> None:  # noqa: F811
    """What the sweeper does once the dead worker's lease runs out."""
    later = utcnow() + timedelta(seconds=stack.settings.job_lease_seconds + 1)
    with stack.runtime.sessions.begin() as session:
        jobs.sweep(session, now=later, max_attempts=stack.settings.job_max_attempts)
        session.execute(update(SyncJob).where(SyncJob.state == "pending").values(run_after=utcnow()))


def _choices(status: str) -> list[str]:
    if status == "draft":
        return ["send", "send", "edit"]
    if status in ("sent", "partially_paid"):
        return ["edit", "discount", "discount", "partial", "partial", "pay", "void"]
    if status == "paid":
        return ["void", "none", "none"]
    return []


def random_step(books: Books, rng: random.Random, invoices: list[str]) -> None:
    crm = books.stack.crm
    open_ = [i for i in invoices if _choices(crm.invoice(i)["status"])]
    if not open_:
        return
    inv_id = rng.choice(open_)
    inv = crm.invoice(inv_id)
    action = rng.choice(_choices(inv["status"]))
    if action == "send":
        crm.send_invoice(inv_id)
    elif action == "edit":
        qty = rng.choice([1, 2, 3, 5])
        price = Decimal(rng.randint(1000, 20000)) / 100
        items = [
            {"name": "Repair", "qty": qty, "amount": price, "taxes": books.tax()},
            {"name": rng.choice(["Parts", "Call-out fee", "Materials"]), "qty": 1, "amount": Decimal("19.99")},
        ]
        with contextlib.suppress(ValueError):  # the new total would be below what was paid already
            crm.update_invoice(inv_id, items=items)
    elif action == "discount":
        discount: dict[str, Any] = rng.choice(
            [{"type": "percentage", "value": rng.choice([5, 10, 12.5])}, {"type": "fixed", "value": "7.35"}]
        )
        with contextlib.suppress(ValueError):
            crm.update_invoice(inv_id, discount=discount)
    elif action == "partial":
        due = inv["amountDue"]
        if due > Decimal("1.00"):
            crm.record_invoice_payment(inv_id, (due / 3).quantize(Decimal("0.01")))
    elif action == "pay":
        crm.record_invoice_payment(inv_id, inv["amountDue"])
    elif action == "void":
        crm.void_invoice(inv_id)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_histories_converge(stack: Stack, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    rng = random.Random(seed)
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)
    books = make_books(stack, "US" if seed % 2 else "GB")
    invoices = [books.invoice(email=EMAILS[i % len(EMAILS)]) for i in range(INVOICES)]
    for inv_id in invoices:  # every invoice is sent at some point
        books.stack.crm.send_invoice(inv_id) if rng.random() < 0.7 else None

    writes_before_kill = rng.randint(0, 3)
    killed = False
    real_create = QboClient.create

    def create_then_die(self: QboClient, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        result = real_create(self, entity, body, request_id=request_id)
        nonlocal killed, writes_before_kill
        if not killed and entity in ("Invoice", "Payment"):
            writes_before_kill -= 1
            if writes_before_kill < 0:
                killed = True
                raise WorkerKilled()
        return result

    for _step in range(STEPS):
        random_step(books, rng, invoices)
        if rng.random() < 0.6:
            deliver_shuffled(books, rng)
        if not killed:  # armed until it fires once
            monkeypatch.setattr(QboClient, "create", create_then_die)
        try:
            run_some_jobs(books, rng)
        except WorkerKilled:
            recover_from_kill(books.stack)
        monkeypatch.setattr(QboClient, "create", real_create)
    for inv_id in invoices:
        if books.stack.crm.invoice(inv_id)["status"] == "draft":
            books.stack.crm.send_invoice(inv_id)
    deliver_shuffled(books, rng)
    if not killed:
        monkeypatch.setattr(QboClient, "create", create_then_die)
    try:
        books.stack.drain()
    except WorkerKilled:
        recover_from_kill(books.stack)
    monkeypatch.setattr(QboClient, "create", real_create)
    books.stack.drain()
    books.reconcile()  # heals whatever a dropped or failed run left behind
    books.settle()

    assert killed, "the worker was killed once mid-run"
    assert any(r.status in (429, 500, 503, 504) for r in books.stack.qbo.request_log), "faults were injected"
    qbo_invoices = books.qbo_invoices()
    assert len(qbo_invoices) == len(invoices), "exactly one QuickBooks invoice per CRM invoice"
    for inv_id in invoices:
        crm_inv = books.stack.crm.invoice(inv_id)
        qinv = books.qbo_invoice_for(inv_id)
        if crm_inv["status"] == "void":
            assert Decimal(str(qinv["TotalAmt"])) == 0 and Decimal(str(qinv["Balance"])) == 0
            assert "Voided" in str(qinv.get("PrivateNote"))
        else:
            assert Decimal(str(qinv["TotalAmt"])) == crm_inv["total"], inv_id
            assert Decimal(str(qinv["Balance"])) == crm_inv["amountDue"], inv_id
        assert books.last_row(inv_id).status == "done", books.last_row(inv_id).error_message
    emails = [str(c["PrimaryEmailAddr"]["Address"]).lower() for c in books.customers() if c.get("PrimaryEmailAddr")]
    assert sorted(emails) == sorted(set(emails)), "one customer per email"
    live_payments = [p for p in books.stack.qbo.entities(books.realm_id, "Payment") if Decimal(str(p["TotalAmt"])) > 0]
    paid_in_qbo = sum((Decimal(str(p["TotalAmt"])) for p in live_payments), Decimal(0))
    paid_in_crm = sum(
        (books.stack.crm.invoice(i)["amountPaid"] for i in invoices if books.stack.crm.invoice(i)["status"] != "void"),
        Decimal(0),
    )
    assert paid_in_qbo == paid_in_crm

"""A live installation on PostgreSQL + Redis and a mixed stream of real events for it (the chaos and fleet tests).

Both emulators and the service run as real HTTP servers on loopback (the emulators deliver their own signed
webhooks to the service's routes); jobs run in ``qbconnect worker`` processes. :class:`Workload` makes one
connected location's events — CRM invoices sent and paid (fully or in part), CRM order payments, customers
created in QuickBooks — and checks afterwards that each reached the other side exactly once.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from qbconnect.crm.events import parse_event
from qbconnect.db.link_model import Link
from qbconnect.db.models import InboxEvent, SyncJob
from qbconnect.qbo.webhooks import parse_events
from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs, routing
from tests.support.databases import fresh_database, fresh_redis_queue
from tests.support.processes import STRONG_ADMIN, STRONG_SECRET

T = TypeVar("T")


@contextmanager
def postgres_stack(tmp_path: Path, **options: Any) -> Iterator[Stack]:
    """Both emulators and the service (in this process, no worker) on a fresh PostgreSQL database and Redis
    queue, with secrets ``qbconnect serve`` and ``worker`` accept."""
    jobs.set_dispatcher(None)
    with fresh_database("postgresql", tmp_path) as db_url, fresh_redis_queue() as queue_url:
        stack = start_stack(
            database_url=db_url, queue_url=queue_url, secret_key=STRONG_SECRET, admin_token=STRONG_ADMIN, **options
        )
        try:
            yield stack
        finally:
            stack.stop()
            jobs.set_dispatcher(None)


def retry_storage(fn: Callable[[], T], attempts: int = 5) -> T:
    """The test's own reads may meet a cut connection too: retry those (pre-ping reconnects)."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def active_jobs(stack: Stack, *states: str, besides: Collection[str] = ()) -> int:
    """Jobs in ``states`` (pending or running when none are given), those of the kinds ``besides`` left out."""

    def count() -> int:
        with stack.runtime.sessions() as session:
            query = select(SyncJob.id).where(SyncJob.state.in_(states or jobs.ACTIVE_STATES))
            if besides:
                query = query.where(SyncJob.kind.not_in(besides))
            return len(session.execute(query).all())

    return retry_storage(count)


def running_by_pid(stack: Stack) -> dict[int, frozenset[int]]:
    """The running jobs by the process id in their lease owner (``host:pid:thread:job``)."""

    def read() -> dict[int, frozenset[int]]:
        held: dict[int, set[int]] = {}
        with stack.runtime.sessions() as session:
            rows = session.execute(select(SyncJob.id, SyncJob.lease_owner).where(SyncJob.state == "running"))
            for job_id, owner in rows.all():
                if owner:
                    held.setdefault(int(str(owner).rsplit(":", 3)[1]), set()).add(int(job_id))
        return {pid: frozenset(ids) for pid, ids in held.items()}

    return retry_storage(read)


def wait_mid_job(
    stack: Stack,
    workers: Sequence[subprocess.Popen[bytes]],
    more_work: Callable[[], None],
    *,
    besides: frozenset[int] = frozenset(),
    timeout: float = 45.0,
) -> tuple[subprocess.Popen[bytes], frozenset[int]]:
    """Until one of ``workers`` holds a job other than ``besides``; returns that worker and the job ids it holds.

    ``more_work()`` (a new event) is called whenever no job is waiting, at most every 2 s, so there is always
    work to be caught doing."""
    deadline = time.monotonic() + timeout
    next_event = time.monotonic() + 2.0
    while True:
        held = running_by_pid(stack)
        for worker in workers:
            assert worker.poll() is None, f"worker {worker.pid} died by itself"
            if held.get(worker.pid, frozenset()) - besides:
                return worker, held[worker.pid]
        assert time.monotonic() < deadline, f"no worker took a job in {timeout}s"
        if time.monotonic() > next_event and active_jobs(stack, "pending") == 0:
            more_work()
            next_event = time.monotonic() + 2.0
        time.sleep(0.02)


def wait_until_idle(stack: Stack, timeout: float = 60.0, *, periodic_kinds: Collection[str] = ()) -> None:
    """No webhook left in either emulator's outbox and no job pending or running, twice in a row. Jobs of
    ``periodic_kinds`` (what periodic passes on a short interval keep queuing) do not count."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert time.monotonic() < deadline, (
            f"not idle after {timeout}s: {stack.crm.pending_webhooks()} CRM and "
            f"{stack.qbo.pending_webhooks()} QuickBooks webhooks, {active_jobs(stack, besides=periodic_kinds)} jobs"
        )
        idle = (
            stack.crm.pending_webhooks() == 0
            and stack.qbo.pending_webhooks() == 0
            and active_jobs(stack, besides=periodic_kinds) == 0
        )
        quiet = quiet + 1 if idle else 0
        time.sleep(0.5)


@dataclass
class Workload:
    """One connected location's events, made in the emulators as a user would, and what they must become."""

    stack: Stack
    location_id: str
    realm_id: str
    invoices: dict[str, Decimal] = field(default_factory=dict)  # CRM invoice id → amount paid in the CRM
    payments: int = 0
    orders: list[str] = field(default_factory=list)  # CRM order ids
    customers: dict[str, str] = field(default_factory=dict)  # QuickBooks customer id → email

    @classmethod
    def connect(cls, stack: Stack, name: str) -> Workload:
        """A new CRM location with the app installed, connected to a new QuickBooks company of its own."""
        location_id = stack.install_crm_location(name=name)
        realm_id = stack.connect_quickbooks(location_id, name=f"{name} LLC", country="US")
        return cls(stack, location_id, realm_id)

    @property
    def events(self) -> int:
        return len(self.invoices) + len(self.orders) + len(self.customers)

    # ---- the event stream ----
    def contact(self, n: int) -> str:
        email = f"payer{n}@example.com"
        found = self.stack.crm.find_by_email(self.location_id, email)
        created = found or self.stack.crm.create_contact(
            self.location_id, firstName="Payer", lastName=f"Number{n}", email=email
        )
        return str(created["id"])

    def send_invoice(self, n: int) -> str:
        created = self.stack.crm.create_invoice(
            self.location_id,
            contact_id=self.contact(n % 3),
            items=[
                {"name": "Repair", "qty": 2, "amount": f"{40 + n}.25"},
                {"name": "Call-out fee", "qty": 1, "amount": "35.50"},
            ],
            currency="USD",
        )
        invoice_id = str(created["_id"])
        self.stack.crm.send_invoice(invoice_id)
        self.invoices[invoice_id] = Decimal(0)
        return invoice_id

    def pay_invoice(self, invoice_id: str, *, full: bool) -> None:
        due = Decimal(str(self.stack.crm.invoice(invoice_id)["amountDue"]))
        amount = due if full else Decimal("20.00")
        self.stack.crm.record_invoice_payment(invoice_id, amount)
        self.invoices[invoice_id] += amount
        self.payments += 1

    def pay_first_unpaid(self, *, full: bool) -> None:
        unpaid = [inv for inv, paid in self.invoices.items() if paid == 0]
        if unpaid:
            self.pay_invoice(unpaid[0], full=full)

    def order_payment(self, n: int | None = None) -> None:
        n = len(self.orders) if n is None else n
        order = self.stack.crm.create_order(
            self.location_id,
            contact_id=self.contact(n % 3),
            source_type="funnel",
            source_sub_type="one_step_order_form",
            items=[{"name": f"Course {n}", "amount": 10 + n}],
        )
        self.orders.append(str(order["_id"]))

    def quickbooks_customer(self, n: int) -> None:
        email = f"bookkeeping{n}@example.com"
        body = {"DisplayName": f"Walk-in Customer {n}", "GivenName": "Walk", "PrimaryEmailAddr": {"Address": email}}
        created = self.stack.qbo.ui_create(self.realm_id, "Customer", body)
        self.customers[str(created["Id"])] = email

    def wave(self, start: int) -> None:
        """Mixed events: two invoices sent, one earlier invoice paid, two order payments, two QB customers."""
        for n in range(start, start + 2):
            self.send_invoice(n)
            self.order_payment(n)
            self.quickbooks_customer(n)
        if sum(paid == 0 for paid in self.invoices.values()) > 2:
            self.pay_first_unpaid(full=start % 4 == 0)

    # ---- afterwards ----
    def assert_exactly_once(self) -> None:
        """Each CRM invoice is one QuickBooks invoice with the CRM's total and balance and its payments once;
        each order payment one sales receipt of its amount; each QuickBooks customer one CRM contact; nothing
        twice on either side."""
        stack = self.stack
        with stack.runtime.sessions() as session:
            links = list(session.execute(select(Link).where(Link.location_id == self.location_id)).scalars())

        qbo_invoices = stack.qbo.entities(self.realm_id, "Invoice")
        assert len(qbo_invoices) == len(self.invoices), "a QuickBooks invoice is missing or duplicated"
        invoice_links = {link.crm_id: link.qbo_id for link in links if link.kind == "invoice"}
        for invoice_id, paid in self.invoices.items():
            crm = stack.crm.invoice(invoice_id)
            mine = [q for q in qbo_invoices if f"(CRM id {invoice_id})" in str(q.get("PrivateNote", ""))]
            assert len(mine) == 1, f"{invoice_id}: {len(mine)} QuickBooks invoices"
            assert invoice_links.get(invoice_id) == mine[0]["Id"]
            assert Decimal(str(mine[0]["TotalAmt"])) == Decimal(str(crm["total"]))
            assert (
                Decimal(str(mine[0]["Balance"])) == Decimal(str(crm["amountDue"])) == Decimal(str(crm["total"])) - paid
            )
        qbo_payments = stack.qbo.entities(self.realm_id, "Payment")
        assert len(qbo_payments) == self.payments
        assert sum(Decimal(str(p["TotalAmt"])) for p in qbo_payments) == sum(self.invoices.values())

        receipts = stack.qbo.entities(self.realm_id, "SalesReceipt")
        assert len(receipts) == len(self.orders), "a sales receipt is missing or duplicated"
        for order_id in self.orders:
            transactions = [t for t in stack.crm.transactions.values() if t["entityId"] == order_id]
            assert len(transactions) == 1
            mine = [r for r in receipts if transactions[0]["_id"] in str(r.get("PrivateNote", ""))]
            assert len(mine) == 1, f"order {order_id}: {len(mine)} sales receipts"
            assert Decimal(str(mine[0]["TotalAmt"])) == Decimal(str(transactions[0]["amount"]))

        contacts = stack.crm.contacts(self.location_id)
        emails = Counter(str(c.get("email") or "").lower() for c in contacts if c.get("email"))
        assert [email for email, count in emails.items() if count > 1] == []
        customer_links = {link.qbo_id: link.crm_id for link in links if link.kind == "customer"}
        by_email = {str(c.get("email") or "").lower(): c for c in contacts}
        for qbo_id, email in self.customers.items():
            assert email in by_email, f"QuickBooks customer {qbo_id} ({email}) has no CRM contact"
            assert customer_links.get(qbo_id) == by_email[email]["id"]
        qbo_emails = Counter(
            str((c.get("PrimaryEmailAddr") or {}).get("Address") or "").lower()
            for c in stack.qbo.entities(self.realm_id, "Customer")
        )
        assert [email for email, count in qbo_emails.items() if email and count > 1] == []


def assert_every_event_done(stack: Stack, at_least: int, *, periodic_kinds: Collection[str] = ()) -> None:
    """No job failed or left over; no inbox event left unprocessed (every job an event asked for finished after
    it arrived); at least ``at_least`` events queued jobs; no event stored twice. Jobs of ``periodic_kinds``
    (what periodic passes keep queuing) may still be pending or running; none of any kind may have failed."""
    with stack.runtime.sessions() as session:
        job_rows = list(session.execute(select(SyncJob)).scalars())
        inbox = list(session.execute(select(InboxEvent)).scalars())
    unfinished = [
        (job.kind, job.entity_id, job.state, job.last_error)
        for job in job_rows
        if job.state not in ("done", "skipped") and not (job.kind in periodic_kinds and job.state in jobs.ACTIVE_STATES)
    ]
    assert unfinished == []
    finished: dict[tuple[str, str], list[Any]] = {}
    for job in job_rows:
        finished.setdefault((job.kind, job.entity_id), []).append(job.finished_at)
    queued = [row for row in inbox if row.outcome == "queued"]
    assert len(queued) >= at_least
    for row in queued:
        requests = _requests_of(row)
        assert requests, f"inbox row {row.id} ({row.event_type}) asks for no job"
        for kind, entity_id in requests:
            ends = [end for end in finished.get((kind, entity_id), []) if end is not None and end >= row.received_at]
            assert ends, f"inbox row {row.id} ({row.event_type}): {kind} {entity_id} never finished after it"
    assert len({(row.source, row.event_id) for row in inbox}) == len(inbox)


def _requests_of(row: InboxEvent) -> list[tuple[str, str]]:
    """The (job kind, entity id) pairs an inbox row asked for, from its kept body."""
    body = row.body.encode()
    if row.source == "crm":
        return [(r.kind, r.entity_id) for r in routing.jobs_for_crm_event(parse_event(body))]
    events = [e for e in parse_events(body) if e.event_id == row.event_id]
    return [(r.kind, r.entity_id) for e in events for r in routing.jobs_for_qbo_event(e)]

"""Chaos on PostgreSQL + Redis: real webhooks keep arriving while the worker is killed and the database cut.

Both emulators and the service run as real HTTP servers on loopback (the emulators deliver their own signed
webhooks to the service's routes); jobs run in a separate ``qbconnect worker`` process, the production
entry point, talking to the emulators over HTTP. While a stream of mixed events arrives — CRM invoices
sent and paid (fully or in part), CRM order payments, customers created in QuickBooks — the worker is
killed with SIGKILL twice (each time mid-job, restarted at once) and every PostgreSQL connection of the
service is terminated once. Afterwards, when everything is idle:

- each CRM invoice is exactly one QuickBooks invoice with the CRM's total and balance, its payments once;
- each order payment is exactly one sales receipt of the right amount;
- each QuickBooks customer is exactly one CRM contact;
- no inbox event is left unprocessed (every job its event asked for finished after it arrived) and no job
  failed; nothing is duplicated on either side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from qbconnect.crm.events import parse_event
from qbconnect.db.link_model import Link
from qbconnect.db.models import InboxEvent, SyncJob
from qbconnect.qbo.webhooks import parse_events
from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs, routing
from qbconnect.worker import Queue
from tests.support.databases import PG_ADMIN_URL, fresh_database, fresh_redis_queue

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SECRET = "chaos-secret-key-0123456789abcdef-0123456789"
ADMIN = "chaos-admin-token-0123456789abcdef-012345678"
WORKER_SETTINGS = (
    "database_url",
    "queue_url",
    "public_url",
    "secret_key",
    "admin_token",
    "qbo_client_id",
    "qbo_client_secret",
    "qbo_api_base",
    "qbo_auth_url",
    "qbo_token_url",
    "qbo_revoke_url",
    "qbo_webhook_verifier_token",
    "crm_api_base",
    "crm_client_id",
    "crm_client_secret",
    "crm_auth_url",
)
T = TypeVar("T")


@dataclass
class Chaos:
    stack: Stack
    location_id: str
    realm_id: str
    database: str
    workdir: Path
    worker: subprocess.Popen[bytes] | None = None
    invoices: dict[str, Decimal] = field(default_factory=dict)  # CRM invoice id → amount paid in the CRM
    payments: int = 0
    orders: list[str] = field(default_factory=list)  # CRM order ids
    customers: dict[str, str] = field(default_factory=dict)  # QuickBooks customer id → email
    kills: int = 0

    # ---- the worker process ----
    def start_worker(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("QBCONNECT_")}
        for name in WORKER_SETTINGS:
            value = getattr(self.stack.settings, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                env[f"QBCONNECT_{name.upper()}"] = str(value)
        env.update(
            QBCONNECT_JOB_LEASE_SECONDS="3",
            QBCONNECT_SWEEP_INTERVAL_SECONDS="0.5",
            QBCONNECT_WORKER_THREADS="2",
            QBCONNECT_LOG_JSON="true",
            PYTHONUNBUFFERED="1",  # its log survives the SIGKILL
        )
        log = open(self.workdir / f"worker-{time.time_ns()}.log", "wb")  # noqa: SIM115
        # cwd: a folder of its own, so no .env file of the checkout is read.
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "qbconnect.cli", "worker"], cwd=self.workdir, env=env, stdout=log, stderr=log
        )

    def wait_mid_job(self, *, besides: frozenset[int] = frozenset(), timeout: float = 45.0) -> frozenset[int]:
        """Until the current worker process holds a job (its pid is in the lease owner) other than
        ``besides``; returns the ids it holds. New order payments keep arriving meanwhile whenever no job is
        waiting, so there is always work to be caught doing."""
        assert self.worker is not None
        owner = f"%:{self.worker.pid}:%"

        def running_here() -> frozenset[int]:
            with self.stack.runtime.sessions() as session:
                held = session.execute(
                    select(SyncJob.id).where(SyncJob.state == "running", SyncJob.lease_owner.like(owner))
                ).scalars()
                return frozenset(held)

        deadline = time.monotonic() + timeout
        next_event = time.monotonic() + 2.0
        while not (held := retry_storage(running_here)) - besides:
            assert self.worker.poll() is None, "the worker died by itself"
            assert time.monotonic() < deadline, f"the worker took no job in {timeout}s"
            if time.monotonic() > next_event and self.active_jobs("pending") == 0:
                self.order_payment(len(self.orders))
                next_event = time.monotonic() + 2.0
            time.sleep(0.02)
        return held

    def kill_worker_mid_job(self, *, besides: frozenset[int] = frozenset()) -> None:
        """SIGKILL the worker while it holds a job (not one of ``besides``), then start a new one at once."""
        self.wait_mid_job(besides=besides)
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=10)
        self.kills += 1
        self.start_worker()

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGINT)
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(timeout=10)

    # ---- the database ----
    def cut_database(self) -> int:
        """Terminate every connection to the service's database (the worker's and the web server's)."""
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()) AS t"
                    ),
                    {"name": self.database},
                ).scalar_one()
        finally:
            admin.dispose()
        return int(killed)

    def active_jobs(self, *states: str) -> int:
        def count() -> int:
            with self.stack.runtime.sessions() as session:
                rows = session.execute(select(SyncJob.id).where(SyncJob.state.in_(states or ("pending", "running"))))
                return len(rows.all())

        return retry_storage(count)

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

    def order_payment(self, n: int) -> None:
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
        unpaid = [inv for inv, paid in self.invoices.items() if paid == 0]
        if len(unpaid) > 2:
            self.pay_invoice(unpaid[0], full=start % 4 == 0)

    # ---- settling ----
    def wait_until_idle(self, timeout: float = 60.0) -> None:
        """No webhook left in either emulator's outbox and no job pending or running, twice in a row."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            assert time.monotonic() < deadline, (
                f"not idle after {timeout}s: {self.stack.crm.pending_webhooks()} CRM and "
                f"{self.stack.qbo.pending_webhooks()} QuickBooks webhooks, {self.active_jobs()} jobs"
            )
            idle = (
                self.stack.crm.pending_webhooks() == 0
                and self.stack.qbo.pending_webhooks() == 0
                and self.active_jobs() == 0
            )
            quiet = quiet + 1 if idle else 0
            time.sleep(0.5)


def retry_storage(fn: Callable[[], T], attempts: int = 5) -> T:
    """The test's own reads may meet the connection cut too: retry those (pre-ping reconnects)."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    jobs.set_dispatcher(None)
    with fresh_database("postgresql", tmp_path) as db_url, fresh_redis_queue() as queue_url:
        stack = start_stack(database_url=db_url, queue_url=queue_url, secret_key=SECRET, admin_token=ADMIN)
        try:
            location_id = stack.install_crm_location(name="Chaos Plumbing")
            realm_id = stack.connect_quickbooks(location_id, name="Chaos Plumbing LLC", country="US")
            stack.drain()  # the customer import that connecting starts, before any chaos
            Queue(stack.runtime).install()  # from here on, jobs are handed to Redis for the worker process
            state = Chaos(stack, location_id, realm_id, db_url.rsplit("/", 1)[1], tmp_path)
            state.start_worker()
            stack.crm.start_webhook_delivery(interval=0.1)
            stack.qbo.start_webhook_delivery(interval=0.1)
            try:
                yield state
            finally:
                state.stop_worker()
        finally:
            stack.stop()
            jobs.set_dispatcher(None)


def test_events_survive_killed_workers_and_a_cut_database(chaos: Chaos) -> None:
    stack = chaos.stack
    chaos.wave(0)
    chaos.kill_worker_mid_job()  # first kill
    chaos.wave(2)
    held_at_cut = chaos.wait_mid_job()
    assert chaos.cut_database() > 0, "no connection to cut"  # the new worker's, mid-job, and the web's
    chaos.wave(4)
    chaos.kill_worker_mid_job(besides=held_at_cut)  # second kill, once the cut worker took new work
    chaos.wave(6)
    for invoice_id, paid in list(chaos.invoices.items()):
        if paid == 0:
            chaos.pay_invoice(invoice_id, full=True)
            break
    chaos.wait_until_idle()

    assert chaos.kills == 2 and chaos.worker is not None and chaos.worker.poll() is None
    assert len(chaos.invoices) == 8 and len(chaos.orders) >= 8 and len(chaos.customers) == 8
    assert chaos.payments >= 3

    with stack.runtime.sessions() as session:
        links = list(session.execute(select(Link).where(Link.location_id == chaos.location_id)).scalars())
        job_rows = list(session.execute(select(SyncJob)).scalars())
        inbox = list(session.execute(select(InboxEvent)).scalars())

    # Every CRM invoice: exactly one QuickBooks invoice, with the CRM's total and balance.
    qbo_invoices = stack.qbo.entities(chaos.realm_id, "Invoice")
    assert len(qbo_invoices) == len(chaos.invoices), "a QuickBooks invoice is missing or duplicated"
    invoice_links = {link.crm_id: link.qbo_id for link in links if link.kind == "invoice"}
    for invoice_id, paid in chaos.invoices.items():
        crm = stack.crm.invoice(invoice_id)
        mine = [q for q in qbo_invoices if f"(CRM id {invoice_id})" in str(q.get("PrivateNote", ""))]
        assert len(mine) == 1, f"{invoice_id}: {len(mine)} QuickBooks invoices"
        assert invoice_links.get(invoice_id) == mine[0]["Id"]
        assert Decimal(str(mine[0]["TotalAmt"])) == Decimal(str(crm["total"]))
        assert Decimal(str(mine[0]["Balance"])) == Decimal(str(crm["amountDue"])) == Decimal(str(crm["total"])) - paid
    # Each CRM invoice payment: one QuickBooks payment (none twice).
    qbo_payments = stack.qbo.entities(chaos.realm_id, "Payment")
    assert len(qbo_payments) == chaos.payments
    assert sum(Decimal(str(p["TotalAmt"])) for p in qbo_payments) == sum(chaos.invoices.values())

    # Every order payment: exactly one sales receipt of its amount.
    receipts = stack.qbo.entities(chaos.realm_id, "SalesReceipt")
    assert len(receipts) == len(chaos.orders), "a sales receipt is missing or duplicated"
    for order_id in chaos.orders:
        transactions = [t for t in stack.crm.transactions.values() if t["entityId"] == order_id]
        assert len(transactions) == 1
        mine = [r for r in receipts if transactions[0]["_id"] in str(r.get("PrivateNote", ""))]
        assert len(mine) == 1, f"order {order_id}: {len(mine)} sales receipts"
        assert Decimal(str(mine[0]["TotalAmt"])) == Decimal(str(transactions[0]["amount"]))

    # Every QuickBooks customer: exactly one CRM contact; no contact and no customer twice.
    contacts = stack.crm.contacts(chaos.location_id)
    emails = Counter(str(c.get("email") or "").lower() for c in contacts if c.get("email"))
    assert [email for email, count in emails.items() if count > 1] == []
    customer_links = {link.qbo_id: link.crm_id for link in links if link.kind == "customer"}
    by_email = {str(c.get("email") or "").lower(): c for c in contacts}
    for qbo_id, email in chaos.customers.items():
        assert email in by_email, f"QuickBooks customer {qbo_id} ({email}) has no CRM contact"
        assert customer_links.get(qbo_id) == by_email[email]["id"]
    qbo_emails = Counter(
        str((c.get("PrimaryEmailAddr") or {}).get("Address") or "").lower()
        for c in stack.qbo.entities(chaos.realm_id, "Customer")
    )
    assert [email for email, count in qbo_emails.items() if email and count > 1] == []

    # No inbox event left unprocessed: every job an event asked for ran to the end after it arrived.
    assert {job.state for job in job_rows} <= {"done", "skipped"}, [
        (job.kind, job.entity_id, job.state, job.last_error) for job in job_rows if job.state not in ("done", "skipped")
    ]
    finished: dict[tuple[str, str], list[Any]] = {}
    for job in job_rows:
        finished.setdefault((job.kind, job.entity_id), []).append(job.finished_at)
    queued = [row for row in inbox if row.outcome == "queued"]
    assert len(queued) >= len(chaos.invoices) + len(chaos.orders) + len(chaos.customers)
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

"""Metered QuickBooks reads per company for a reference month, with time moved forward.

Intuit meters every Accounting API read (GET, query, CDC); the free Builder tier gives the whole app 500,000 a
month across all companies. This bench runs the product (both emulators + the service, SQLite, jobs run by
``Stack.drain``) through one calendar month of a reference company, moving one simulated clock shared by the
product (``qbconnect.clock.utcnow`` and the QuickBooks token clock), the QuickBooks emulator (``clock``) and the
CRM emulator (``advance_clock``), and running the worker's periodic passes (``Ticker.tick``) every simulated
hour. The reference month (issue 12):

- 100 CRM invoices sent, each paid in full in the CRM three days later (100 payments);
- 50 CRM checkouts (sales receipts), 5 of them partly refunded two days later (found by the payments check);
- 20 customers created in QuickBooks (each becomes a CRM contact);
- 20 payments recorded in QuickBooks (on invoices made in QuickBooks for those customers);
- the daily safety sweep, and every other periodic pass at its own cadence.

The CRM sales are for customers already known (the 30 imported when QuickBooks was connected, on the day
before the month). Intuit's webhooks are delivered 3 simulated minutes after each change (Intuit batches them
every 1-5 minutes). Reads are counted by the product (``qbo_read_counts`` for the month) and cross-checked with
the QuickBooks emulator's request record.

    python -m bench budget
    BENCH_BUDGET_SCALE=0.1 python -m bench budget      # a tenth of the events (a quick look)
    BENCH_BUDGET_DAYS=2 BENCH_BUDGET_SCALE=0.02 python -m bench budget   # the smoke test's size
    BENCH_PLATFORM_LATENCY=0 python -m bench budget    # emulators answering at once (read counts are the same)
"""

from __future__ import annotations

import calendar
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import qbconnect.clock
import qbconnect.qbo.tokens
from bench._common import bench_stack, latency_note, platform_options, write_results
from qbconnect.connections.read_budget import company_reads, month_of
from qbconnect.sandbox.stack import Stack
from qbconnect.worker import Ticker

FREE_TIER = 500_000  # Intuit's Builder tier: metered reads a month for the whole app
GOAL = 300  # issue 12: reads per company-month
DAYS = int(os.environ.get("BENCH_BUDGET_DAYS", "30"))  # fewer only for a quick look: not a month then
KNOWN_CUSTOMERS = 30
ITEMS = [{"name": "Repair", "qty": 1, "amount": "120.00"}, {"name": "Call-out fee", "qty": 1, "amount": "35.50"}]
CHECKOUT = [{"name": "Course", "amount": "97.00", "productId": "prod-course"}]
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class SimClock:
    """One simulated "now" for the product and both emulators; only ever moves forward.

    The product reads time through ``qbconnect.clock.utcnow`` (and the QuickBooks token source's own
    ``datetime.now``); both look ``datetime`` up in their module at call time, so swapping that name for a
    class whose ``now`` adds :attr:`offset` moves every reader, defaults captured at import included.
    Rate limiters keep real time (they pace real requests)."""

    def __init__(self, start: datetime) -> None:
        self.offset = start - datetime.now(UTC)
        self._crm_advance: Callable[[float], None] | None = None

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def seconds(self) -> float:
        """A monotonic-like reading for the worker's ticker."""
        return (self.now() - _EPOCH).total_seconds()

    def advance_to(self, moment: datetime) -> None:
        step = moment - self.now()
        if step > timedelta(0):
            self.offset += step
            if self._crm_advance is not None:
                self._crm_advance(step.total_seconds())

    @contextmanager
    def installed(self, stack: Stack) -> Iterator[SimClock]:
        clock = self

        class _Datetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return datetime.now(tz) + clock.offset

        modules = (qbconnect.clock, qbconnect.qbo.tokens)
        saved = [m.datetime for m in modules]  # type: ignore[attr-defined]
        for module in modules:
            module.datetime = _Datetime  # type: ignore[attr-defined]
        stack.qbo.clock = self.now
        stack.crm.advance_clock(self.offset.total_seconds())
        self._crm_advance = stack.crm.advance_clock
        try:
            yield self
        finally:
            for module, original in zip(modules, saved, strict=True):
                module.datetime = original  # type: ignore[attr-defined]
            self._crm_advance = None


@dataclass(order=True)
class Event:
    at: datetime
    kind: str = field(compare=False)
    act: Callable[[], None] = field(compare=False)


def month_start(now: datetime) -> datetime:
    """The first day of the next calendar month that has at least :data:`DAYS` days."""
    year, month = now.year, now.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if calendar.monthrange(year, month)[1] >= DAYS:
            return datetime(year, month, 1, tzinfo=UTC)


def main() -> dict[str, Any]:
    scale = float(os.environ.get("BENCH_BUDGET_SCALE", "1"))
    latency = os.environ.get("BENCH_PLATFORM_LATENCY", "1") != "0"
    with bench_stack(**platform_options(latency=latency)) as stack:
        results = _run(stack, scale)
    results["latency"] = latency_note(latency=latency)
    write_results("budget", results)
    _print(results)
    return results


class _Month:
    """The reference company and what happened to it, driven event by event."""

    def __init__(self, stack: Stack, clock: SimClock, scale: float) -> None:
        self.stack, self.clock, self.scale = stack, clock, scale
        self.rng = random.Random(12)
        self.ticker = Ticker(stack.runtime, interval=3600)
        self.reads_by_cause: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.location_id = ""
        self.realm_id = ""
        self.contacts: list[str] = []
        self.qbo_customers: list[str] = []

    # ---- driving ------------------------------------------------------------------------------------
    def _reads(self) -> int:
        return sum(1 for r in self.stack.qbo.request_log if r.realm_id == self.realm_id and r.kind == "read")

    def settle(self, cause: str) -> None:
        """Deliver the CRM's webhooks, run the jobs; Intuit's webhooks 3 minutes later, run the jobs."""
        before = self._reads()
        stack = self.stack
        for _ in range(10):
            stack.crm.flush_webhooks()
            stack.drain()
            self.clock.advance_to(self.clock.now() + timedelta(minutes=3))
            delivered = 0
            while stack.qbo.flush_webhooks():
                delivered += 1
            stack.drain()
            if not delivered and not stack.crm.pending_webhooks():
                break
        self.reads_by_cause[cause] += self._reads() - before

    def tick(self) -> None:
        """The worker's periodic passes (sweeps, reconciliation, payment checks, keep-alive) at ``now``."""
        self.ticker.tick(now=self.clock.seconds())
        self.settle("periodic passes (safety sweep)")

    def run(self, events: list[Event], end: datetime) -> None:
        next_tick = self.clock.now()
        for event in sorted(events):
            while next_tick <= event.at:
                self.clock.advance_to(next_tick)
                self.tick()
                next_tick += timedelta(hours=1)
            self.clock.advance_to(event.at)
            event.act()
            self.events[event.kind] += 1
            self.settle(event.kind)
        while next_tick < end:
            self.clock.advance_to(next_tick)
            self.tick()
            next_tick += timedelta(hours=1)

    # ---- the company --------------------------------------------------------------------------------
    def connect(self) -> None:
        """The day before the month: connect a company with :data:`KNOWN_CUSTOMERS` customers (imported as
        contacts), then one invoice and one checkout so that the items and the payment method are known."""
        stack = self.stack
        self.realm_id = stack.qbo.add_company(name="Budget Plumbing LLC", country="US")
        stack.qbo.seed_customers(self.realm_id, KNOWN_CUSTOMERS)
        self.location_id = stack.install_crm_location(name="Budget Plumbing")
        stack.connect_quickbooks(self.location_id, realm_id=self.realm_id)
        self.settle("connecting (import)")
        self.contacts = [str(c["id"]) for c in stack.crm.contacts(self.location_id)]
        self.send_invoice(0)()
        self.settle("warm-up")
        self.checkout(0)()
        self.settle("warm-up")

    def send_invoice(self, n: int, paid_at: list[str] | None = None) -> Callable[[], None]:
        def act() -> None:
            contact = self.contacts[n % len(self.contacts)]
            invoice = self.stack.crm.create_invoice(self.location_id, contact_id=contact, items=ITEMS)
            self.stack.crm.send_invoice(invoice["_id"])
            if paid_at is not None:
                paid_at.append(invoice["_id"])

        return act

    def pay_invoice(self, ids: list[str], n: int) -> Callable[[], None]:
        def act() -> None:
            invoice_id = ids[n]
            self.stack.crm.record_invoice_payment(invoice_id, self.stack.crm.invoice(invoice_id)["amountDue"])

        return act

    def checkout(self, n: int, orders: list[str] | None = None) -> Callable[[], None]:
        def act() -> None:
            order = self.stack.crm.create_order(
                self.location_id,
                contact_id=self.contacts[n % len(self.contacts)],
                source_type="funnel",
                source_sub_type="one_step_order_form",
                items=CHECKOUT,
            )
            if orders is not None:
                orders.append(order["_id"])

        return act

    def refund(self, orders: list[str], n: int) -> Callable[[], None]:
        def act() -> None:
            txn = next(t for t in self.stack.crm.transactions.values() if t["entityId"] == orders[n])
            self.stack.crm.refund_transaction(txn["_id"], Decimal("10.00"))

        return act

    def qbo_customer(self, n: int) -> Callable[[], None]:
        def act() -> None:
            body = {
                "GivenName": "New",
                "FamilyName": f"Client {n}",
                "DisplayName": f"New Client {n}",
                "PrimaryEmailAddr": {"Address": f"new.client.{n}@example.org"},
            }
            self.qbo_customers.append(str(self.stack.qbo.ui_create(self.realm_id, "Customer", body)["Id"]))

        return act

    def qbo_payment(self, n: int) -> Callable[[], None]:
        """An invoice made in QuickBooks for a customer created there, then paid there."""

        def act() -> None:
            qbo = self.stack.qbo
            customer = {"value": self.qbo_customers[n % len(self.qbo_customers)]}
            item = next(i for i in qbo.entities(self.realm_id, "Item") if i.get("Type") == "Service")
            line = {
                "Amount": 80,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1, "UnitPrice": 80},
            }
            invoice = qbo.ui_create(self.realm_id, "Invoice", {"CustomerRef": customer, "Line": [line]})
            linked = {"Amount": 80, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
            qbo.ui_create(self.realm_id, "Payment", {"CustomerRef": customer, "TotalAmt": 80, "Line": [linked]})

        return act

    def schedule(self, start: datetime) -> list[Event]:
        """The reference month's events at business hours, spread over :data:`DAYS` days."""

        def at(day: float, hour: int) -> datetime:
            day = min(max(int(day), 0), DAYS - 1)
            return start + timedelta(days=day, hours=hour, minutes=self.rng.randrange(0, 60))

        def count(n: int) -> int:
            return max(1, round(n * self.scale))

        events: list[Event] = []
        invoices: list[str] = []
        sent = count(100)
        for i in range(sent):
            day = i * (DAYS - 4) / sent
            events.append(Event(at(day, 9 + i % 8), "CRM invoice sent", self.send_invoice(i + 1, invoices)))
            events.append(Event(at(day + 3, 9 + (i + 3) % 8), "CRM invoice paid", self.pay_invoice(invoices, i)))
        orders: list[str] = []
        checkouts = count(50)
        for j in range(checkouts):
            events.append(Event(at(j * (DAYS - 3) / checkouts, 9 + j % 8), "CRM checkout", self.checkout(j, orders)))
        for k in range(count(5)):
            events.append(
                Event(at(k * 5 * (DAYS - 3) / checkouts + 2, 15), "CRM partial refund", self.refund(orders, k * 5))
            )
        new_customers = count(20)
        for m in range(new_customers):
            events.append(Event(at(m * (DAYS - 6) / new_customers, 10), "QuickBooks customer", self.qbo_customer(m)))
        for p in range(count(20)):
            events.append(Event(at(p * (DAYS - 6) / new_customers + 5, 16), "QuickBooks payment", self.qbo_payment(p)))
        return events


def _run(stack: Stack, scale: float) -> dict[str, Any]:
    start = month_start(datetime.now(UTC))
    clock = SimClock(start - timedelta(days=1) + timedelta(hours=9))
    with clock.installed(stack):
        month = _Month(stack, clock, scale)
        month.connect()
        setup_reads = dict(month.reads_by_cause)
        month.reads_by_cause.clear()
        events = month.schedule(start)
        clock.advance_to(start)
        log_start = len(stack.qbo.request_log)
        end = start + timedelta(days=DAYS)
        month.run(events, end)
        clock.advance_to(end - timedelta(seconds=1))
        with stack.runtime.sessions() as session:
            counted = company_reads(session, month_of(start), month.realm_id)
        records = [r for r in stack.qbo.request_log[log_start:] if r.realm_id == month.realm_id]
        qbo_reads = [r for r in records if r.kind == "read"]
        cdc_runs = _cdc_runs(stack, month.location_id, start)
    total = sum(counted.values())
    return {
        "month": month_of(start),
        "days": DAYS,
        "scale": scale,
        "events": dict(month.events),
        "reads_counted_by_product": total,
        "reads_by_kind": counted,
        "reads_seen_by_emulator": len(qbo_reads),
        "emulator_reads_by_operation": dict(Counter(_operation(r) for r in qbo_reads)),
        "reads_by_cause": dict(month.reads_by_cause),
        "writes": sum(1 for r in records if r.kind == "write"),
        "qbo_429": sum(1 for r in records if r.status == 429),
        "change_queries": cdc_runs,
        "setup_reads": setup_reads,
        "companies_on_free_tier": FREE_TIER // total if total else None,
        "goal_reads": GOAL,
    }


def _operation(record: Any) -> str:
    """``GET cdc``, ``POST Invoice create``: a QuickBooks request by method, entity and operation."""
    return " ".join(part for part in (record.method, record.entity, record.operation) if part)


def _cdc_runs(stack: Stack, location_id: str, since: datetime) -> dict[str, int]:
    """Change-query jobs of the month by what asked for them (a webhook or the safety sweep)."""
    from sqlalchemy import select

    from qbconnect.db.models import SyncJob
    from qbconnect.sync.engine.routing import QBO_CDC

    with stack.runtime.sessions() as session:
        reasons = session.execute(
            select(SyncJob.reason).where(
                SyncJob.location_id == location_id, SyncJob.kind == QBO_CDC, SyncJob.created_at >= since
            )
        ).scalars()
        return dict(Counter("safety sweep" if "periodic" in (r or "") else "webhook" for r in reasons))


def _print(r: dict[str, Any]) -> None:
    total = r["reads_counted_by_product"]
    print(f"reference month {r['month']} ({r['days']} days, scale {r['scale']:g}); {r['latency']}")
    print(f"events: {r['events']}")
    print(f"{'measure':<44}{'figure':>10}{'limit':>12}{'ratio':>9}{'goal':>10}")
    share = total / FREE_TIER
    print(f"{'QuickBooks reads per company-month':<44}{total:>10}{FREE_TIER:>12,}{share:>9.5f}{'<= 300':>10}")
    fit = r["companies_on_free_tier"]
    fits = f"{fit:,}" if fit is not None else "all"
    print(f"{'companies that fit the free tier':<44}{fits:>10}{'':>12}{'':>9}{'>= 1,600':>10}")
    print(f"{'reads per company-month / goal':<44}{total / GOAL:>10.2f}")
    print(f"by kind (product): {r['reads_by_kind']}; seen by the emulator: {r['reads_seen_by_emulator']}")
    print(f"by operation (emulator): {r['emulator_reads_by_operation']}")
    print(f"by cause: {r['reads_by_cause']}")
    print(f"change queries: {r['change_queries']}; writes: {r['writes']}; 429s: {r['qbo_429']}")
    print(f"before the month (connecting, warm-up): {r['setup_reads']}")


if __name__ == "__main__":
    main()

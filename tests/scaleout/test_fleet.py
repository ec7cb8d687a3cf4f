"""A fleet on PostgreSQL + Redis: one web process, three worker processes, five companies, one worker killed.

The production layout of docs/deploy.md, for real: ``qbconnect serve --no-worker`` (the web role: webhooks
in, jobs out to Redis) and three ``qbconnect worker`` processes share one PostgreSQL database and one Redis.
Both emulators run in this process and deliver their own signed webhooks to the web process. Five CRM
locations, each connected to a QuickBooks company of its own, get a mixed stream of events (CRM invoices sent
and paid, CRM order payments, customers created in QuickBooks: tests/support/workload.py). One worker is
SIGKILLed while it runs a job and is not restarted. The periodic passes run on short intervals
(``QBCONNECT_RECONCILE_INTERVAL_SECONDS``), so many of their intervals pass during the run. Afterwards:

- exactly-once results on both emulators for every location, and every inbox event's jobs finished;
- no budget exceeded in any window, from the emulators' own request logs: at most 500 requests in any 60 s
  per QuickBooks company and 100 in any 10 s per CRM location, no 429 and nothing in QuickBooks' throttle log;
- every periodic pass ran once per interval across the fleet: each run is a ``ticker.periodic`` log line of
  the process that won the interval's claim (``worker.py::PassClaims``); no (pass, interval) appears twice,
  and, for passes whose interval spans many ticks, none is missing from the first run until the run went idle.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import SyncJob
from qbconnect.sandbox.server import free_port
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.engine import registry, routing
from qbconnect.worker import PassClaims
from tests.support import processes
from tests.support.workload import (
    Workload,
    assert_every_event_done,
    postgres_stack,
    running_by_pid,
    wait_mid_job,
    wait_until_idle,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LOCATIONS = 5
WORKERS = 3
SWEEP_SECONDS = 0.5  # each process's tick: lease sweep, then the periodic passes it wins
RECONCILE_SECONDS = 4.0  # the reconciliation passes' interval (also caps the QuickBooks change-check pass's)
# The same settings for the stack (which computes the expected intervals) and, through it, every process.
SETTINGS = {
    "sweep_interval_seconds": SWEEP_SECONDS,
    "reconcile_interval_seconds": RECONCILE_SECONDS,
    "job_lease_seconds": 3.0,  # a killed worker's job runs elsewhere soon
    "qbo_cdc_debounce_seconds": 2.0,  # a QuickBooks webhook's change query runs 2 s later, not 30 s
    "worker_threads": 2,
}
# What the periodic passes queue every few seconds here: never idle, so the run's end does not wait for them.
# (A queue slot lost with the killed worker is re-sent by the sweep once a job has waited a minute untouched;
# with a pass queuing jobs every 4 s, one of them may always be waiting for the next slot.)
PERIODIC_KINDS = (routing.INVOICE_RECONCILE, routing.TRANSACTION_POLL)
QBO_BUDGET = (500, 60.0)  # requests, seconds: per QuickBooks company
CRM_BUDGET = (100, 10.0)  # per CRM location


@dataclass
class Fleet:
    stack: Stack
    works: list[Workload]
    workdir: Path
    web: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    port = free_port()
    with postgres_stack(tmp_path, service_port=port, settings_overrides=SETTINGS) as stack:
        works = [Workload.connect(stack, f"Fleet Company {n}") for n in range(LOCATIONS)]
        stack.drain()  # the customer imports that connecting starts
        # The web role moves to a `qbconnect serve` process at the same address (the emulators' webhook URLs).
        next(server for server in stack.servers if server.base_url == stack.service_url).stop()
        env = stack.process_env(QBCONNECT_LOG_JSON="true", PYTHONUNBUFFERED="1")  # logs survive a SIGKILL
        started: list[subprocess.Popen[bytes]] = []
        try:
            web = processes.start(
                ["serve", "--no-worker", "--no-migrate", "--port", str(port)], env, tmp_path, probes=False
            )
            started.append(web)
            workers = [processes.start(["worker", "--no-migrate"], env, tmp_path, probes=False) for _ in range(WORKERS)]
            started.extend(workers)
            processes.wait_for(lambda: processes.ready(port, web), "the web process is ready")
            processes.wait_for(lambda: bool(periodic_runs(tmp_path)), "a worker's ticker ran")
            stack.crm.start_webhook_delivery(interval=0.1)
            stack.qbo.start_webhook_delivery(interval=0.1)
            yield Fleet(stack, works, tmp_path, web, workers)
        finally:
            for proc in started:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)


def test_a_fleet_with_a_killed_worker_keeps_results_budgets_and_schedules(fleet: Fleet) -> None:
    stack, works = fleet.stack, fleet.works
    began = time.time()
    for work in works:
        work.wave(0)
    victim, _ = wait_mid_job(stack, fleet.workers, works[0].order_payment)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = utcnow()
    orphans = running_by_pid(stack).get(victim.pid, frozenset())
    assert orphans, "the killed worker held no job when it died"
    survivors = [worker for worker in fleet.workers if worker is not victim]
    for work in works:
        work.wave(2)
    for work in works:
        work.pay_first_unpaid(full=True)
    wait_until_idle(stack, timeout=90, periodic_kinds=PERIODIC_KINDS)
    idle_wall = time.time()

    assert all(worker.poll() is None for worker in survivors) and fleet.web.poll() is None
    for worker in survivors:
        assert processes.stop(worker, signal.SIGTERM) == 0
    assert processes.stop(fleet.web, signal.SIGTERM) in (0, -signal.SIGTERM)

    # Exactly once on both sides; the killed worker's jobs were finished by another one.
    for work in works:
        assert len(work.invoices) == 4 and len(work.orders) >= 4 and len(work.customers) == 4
        assert work.payments == 2
        work.assert_exactly_once()
    assert_every_event_done(stack, at_least=sum(work.events for work in works), periodic_kinds=PERIODIC_KINDS)
    with stack.runtime.sessions() as session:
        taken_over = session.execute(
            select(SyncJob.kind, SyncJob.state, SyncJob.finished_at).where(SyncJob.id.in_(orphans))
        ).all()
    assert len(taken_over) == len(orphans)
    for kind, state, end in taken_over:
        waiting = kind in PERIODIC_KINDS and state == "pending"  # a periodic pass's job waiting its turn
        assert waiting or (state in ("done", "skipped") and end is not None and end > killed_at), (kind, state)

    # No budget exceeded in any window, from the emulators' own logs.
    assert stack.qbo.throttle_log == []
    assert [r for r in stack.qbo.request_log if r.status == 429] == []
    assert [r for r in stack.crm.request_log if r.status == 429] == []
    for work in works:
        qbo_times = [r.at for r in stack.qbo.request_log if r.realm_id == work.realm_id]
        crm_times = [r.at for r in stack.crm.request_log if r.location == work.location_id]
        assert qbo_times and crm_times, "a company or location saw no API call"
        assert busiest_window(qbo_times, QBO_BUDGET[1]) <= QBO_BUDGET[0]
        assert busiest_window(crm_times, CRM_BUDGET[1]) <= CRM_BUDGET[0]

    # Every periodic pass once per interval across the fleet (the killed worker's log counts too).
    runs = periodic_runs(fleet.workdir)
    twice = [(hook, number, ran_by) for (hook, number), ran_by in runs.items() if len(ran_by) > 1]
    assert twice == [], "periodic passes run more than once in an interval"
    expected = {hook.name: hook.every_seconds(stack.runtime) for hook in registry.PERIODIC}
    ran = {hook for hook, _ in runs}
    assert ran == set(expected)
    for name, every in expected.items():
        numbers = {number for hook, number in runs if hook == name}
        assert min(numbers) <= PassClaims.interval(every, began), f"{name} did not run before the events began"
        if every >= 4 * SWEEP_SECONDS:  # several ticks of every live worker fall in each interval
            missing = set(range(min(numbers), PassClaims.interval(every, idle_wall))) - numbers
            assert missing == set(), f"{name} did not run in intervals {sorted(missing)}"
    assert len({n for ran_by in runs.values() for n in ran_by}) > 1, "one process ran every pass"


def periodic_runs(workdir: Path) -> dict[tuple[str, int], list[int]]:
    """(pass, interval number) → the worker processes (numbered by log file) that logged running it."""
    runs: dict[tuple[str, int], list[int]] = {}
    for process, path in enumerate(sorted(workdir.glob("worker-*.log"))):
        for line in path.read_text().splitlines():
            if '"ticker.periodic"' not in line:
                continue
            record = json.loads(line)
            runs.setdefault((str(record["hook"]), int(record["interval"])), []).append(process)
    return runs


def busiest_window(times: Iterable[datetime], seconds: float) -> int:
    """The most requests in any window of ``seconds`` (sliding over the requests' own times)."""
    ordered = sorted(times)
    most = first = 0
    for last, at in enumerate(ordered):
        while (at - ordered[first]).total_seconds() >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_busiest_window_counts_a_sliding_window() -> None:
    times = [datetime(2027, 1, 1, 0, 0, s, tzinfo=UTC) for s in (0, 1, 9, 10, 11, 12, 30)]
    assert busiest_window(times, 10.0) == 4  # 9, 10, 11, 12 (10 s after 0 and 1 those have left the window)
    assert busiest_window(times, 60.0) == 7
    assert busiest_window([], 10.0) == 0

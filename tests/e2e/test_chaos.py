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

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from qbconnect.sandbox.stack import Stack
from qbconnect.worker import Queue
from tests.support import processes
from tests.support.databases import PG_ADMIN_URL
from tests.support.workload import (
    Workload,
    assert_every_event_done,
    postgres_stack,
    wait_mid_job,
    wait_until_idle,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@dataclass
class Chaos:
    stack: Stack
    work: Workload
    workdir: Path
    worker: subprocess.Popen[bytes] | None = None
    kills: int = 0

    # ---- the worker process ----
    def start_worker(self) -> None:
        env = self.stack.process_env(
            QBCONNECT_JOB_LEASE_SECONDS="3",
            QBCONNECT_SWEEP_INTERVAL_SECONDS="0.5",
            QBCONNECT_WORKER_THREADS="2",
            QBCONNECT_LOG_JSON="true",
            PYTHONUNBUFFERED="1",  # its log survives the SIGKILL
        )
        # cwd: a folder of its own, so no .env file of the checkout is read.
        self.worker = processes.start(["worker"], env, self.workdir, probes=False)

    def wait_mid_job(self, *, besides: frozenset[int] = frozenset()) -> frozenset[int]:
        """Until the current worker process holds a job other than ``besides``; returns the ids it holds."""
        assert self.worker is not None
        return wait_mid_job(self.stack, [self.worker], self.work.order_payment, besides=besides)[1]

    def kill_worker_mid_job(self, *, besides: frozenset[int] = frozenset()) -> None:
        """SIGKILL the worker while it holds a job (not one of ``besides``), then start a new one at once."""
        self.wait_mid_job(besides=besides)
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(timeout=10)
        self.kills += 1
        self.start_worker()

    def stop_worker(self) -> None:
        if self.worker is not None:
            processes.stop(self.worker, signal.SIGINT, timeout=15)

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
                    {"name": make_url(self.stack.settings.database_url).database},
                ).scalar_one()
        finally:
            admin.dispose()
        return int(killed)


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    with postgres_stack(tmp_path) as stack:
        work = Workload.connect(stack, "Chaos Plumbing")
        stack.drain()  # the customer import that connecting starts, before any chaos
        Queue(stack.runtime).install()  # from here on, jobs are handed to Redis for the worker process
        state = Chaos(stack, work, tmp_path)
        state.start_worker()
        stack.crm.start_webhook_delivery(interval=0.1)
        stack.qbo.start_webhook_delivery(interval=0.1)
        try:
            yield state
        finally:
            state.stop_worker()


def test_events_survive_killed_workers_and_a_cut_database(chaos: Chaos) -> None:
    work = chaos.work
    work.wave(0)
    chaos.kill_worker_mid_job()  # first kill
    work.wave(2)
    held_at_cut = chaos.wait_mid_job()
    assert chaos.cut_database() > 0, "no connection to cut"  # the new worker's, mid-job, and the web's
    work.wave(4)
    chaos.kill_worker_mid_job(besides=held_at_cut)  # second kill, once the cut worker took new work
    work.wave(6)
    work.pay_first_unpaid(full=True)
    wait_until_idle(chaos.stack)

    assert chaos.kills == 2 and chaos.worker is not None and chaos.worker.poll() is None
    assert len(work.invoices) == 8 and len(work.orders) >= 8 and len(work.customers) == 8
    assert work.payments >= 3

    work.assert_exactly_once()
    assert_every_event_done(chaos.stack, at_least=work.events)

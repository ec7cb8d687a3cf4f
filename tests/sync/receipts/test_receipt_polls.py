"""The periodic hook: one TRANSACTION_POLL job per syncing location, each at its own interval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.db.link_model import Link
from qbconnect.db.models import Location, QboConnection, SyncJob
from qbconnect.runtime import Runtime, build_runtime
from qbconnect.sync.engine import jobs, routing
from qbconnect.sync.engine.registry import PERIODIC
from qbconnect.sync.kinds import load_handlers
from qbconnect.sync.links import receipts as links
from qbconnect.sync.receipts.discovery import enqueue_due_polls
from tests.conftest import make_settings
from tests.support.databases import fresh_database


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    with fresh_database("sqlite", tmp_path) as url:
        runtime = build_runtime(make_settings(url, f"sqlite:///{tmp_path / 'queue.db'}"))
        jobs.set_dispatcher(None)
        yield runtime
        runtime.close()


def _location(session: Session, location_id: str, *, connected: bool = True, **settings: Any) -> None:
    session.add(Location(id=location_id, name=location_id, settings=settings, state={}))
    if connected:
        realm = f"realm-{location_id}"
        session.add(QboConnection(location_id=location_id, realm_id=realm, active_realm_id=realm, status="connected"))
    session.flush()


def _polls(session: Session) -> list[str]:
    rows = session.execute(select(SyncJob.location_id).where(SyncJob.kind == routing.TRANSACTION_POLL)).scalars()
    return sorted(rows)


def test_each_syncing_location_is_polled_at_its_own_interval(sqlite_runtime: Runtime) -> None:
    now = utcnow()
    with sqlite_runtime.sessions.begin() as session:
        _location(session, "fast", transaction_poll_minutes=1)
        _location(session, "slow", transaction_poll_minutes=30)
        _location(session, "off", sync_sales_receipts=False)
        _location(session, "unconnected", connected=False)
        assert sorted(enqueue_due_polls(session, now=now)) == ["fast", "slow"]
    with sqlite_runtime.sessions.begin() as session:
        # the jobs ran and finished; a job's creation time is the location's last poll
        for job in session.execute(select(SyncJob)).scalars():
            job.state, job.active_key = "done", None
        assert enqueue_due_polls(session, now=now + timedelta(seconds=30)) == []
        assert enqueue_due_polls(session, now=now + timedelta(minutes=2)) == ["fast"]
    with sqlite_runtime.sessions.begin() as session:
        assert sorted(enqueue_due_polls(session, now=now + timedelta(minutes=31))) == ["fast", "slow"]
        # fast's poll from minute 2 is still pending: asking again joins it instead of adding one
        assert _polls(session) == ["fast", "fast", "slow", "slow"]


def test_a_pending_poll_is_not_queued_twice(sqlite_runtime: Runtime) -> None:
    now = utcnow()
    with sqlite_runtime.sessions.begin() as session:
        _location(session, "loc", transaction_poll_minutes=1)
        enqueue_due_polls(session, now=now)
        enqueue_due_polls(session, now=now + timedelta(minutes=5))
        assert _polls(session) == ["loc"]


def test_uninstalled_locations_are_not_polled(sqlite_runtime: Runtime) -> None:
    with sqlite_runtime.sessions.begin() as session:
        _location(session, "gone")
        location = session.get(Location, "gone")
        assert location is not None
        location.crm_status = "uninstalled"
        assert enqueue_due_polls(session) == []


def test_the_hook_is_registered_with_the_worker() -> None:
    load_handlers()
    hooks = [hook for hook in PERIODIC if hook.name == "transaction_poll"]
    assert len(hooks) == 1


def test_receipt_links_are_found_in_batches(sqlite_runtime: Runtime) -> None:
    with sqlite_runtime.sessions.begin() as session:
        for n in range(3):
            session.add(Link(location_id="loc", kind=links.KIND, crm_id=f"t{n}", data={}))
        session.add(Link(location_id="other", kind=links.KIND, crm_id="t0", data={}))
        session.add(Link(location_id="loc", kind="invoice", crm_id="t1", data={}))
        session.flush()
        found = links.receipt_links(session, "loc", ["t0", "t1", "t9"])
        assert sorted(found) == ["t0", "t1"]
        assert all(link.crm_id == crm_id for crm_id, link in found.items())

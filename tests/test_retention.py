"""Keep less: inbox events and sync-log history go after their retention periods (the ticker prunes);
SQLite database and queue files are private to their owner."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.migrate import upgrade
from qbconnect.db.models import Activity, InboxEvent, SyncJob
from qbconnect.db.session import make_engine, ping
from qbconnect.retention import prune
from qbconnect.runtime import Runtime
from qbconnect.worker import Ticker, build_huey


def _seed(runtime: Runtime) -> None:
    now = utcnow()
    old_inbox, old_history = now - timedelta(days=31), now - timedelta(days=91)
    with runtime.sessions.begin() as session:
        for event_id, received in (("old-1", old_inbox), ("old-2", old_inbox), ("new", now - timedelta(days=29))):
            session.add(
                InboxEvent(source="crm", event_id=event_id, event_type="InvoiceSent", body="{}", received_at=received)
            )
        for entity, status, at in (
            ("done-old", "done", old_history),
            ("failed-old", "failed", old_history),
            ("retrying-old", "retrying", old_history),
            ("done-recent", "done", now - timedelta(days=89)),
        ):
            session.add(
                Activity(
                    location_id="loc-1",
                    kind="invoice",
                    entity_id=entity,
                    direction="crm_to_qbo",
                    status=status,
                    created_at=at,
                    updated_at=at,
                )
            )
        for entity, state, active, finished in (
            ("done-old", "done", None, old_history),
            ("pending-old", "pending", "loc-1|invoice|pending-old", None),
            ("done-recent", "done", None, now - timedelta(days=1)),
        ):
            session.add(
                SyncJob(
                    location_id="loc-1",
                    kind="invoice",
                    entity_id=entity,
                    state=state,
                    active_key=active,
                    created_at=old_history,
                    finished_at=finished,
                )
            )


def _left(runtime: Runtime) -> tuple[list[str], list[str], list[str]]:
    with runtime.sessions() as session:
        inbox = sorted(session.execute(select(InboxEvent.event_id)).scalars())
        activity = sorted(session.execute(select(Activity.entity_id)).scalars())
        jobs = sorted(session.execute(select(SyncJob.entity_id)).scalars())
    return inbox, activity, jobs


KEPT = (["new"], ["done-recent", "retrying-old"], ["done-recent", "pending-old"])


def test_prune_deletes_what_is_past_its_retention_period(runtime: Runtime) -> None:
    _seed(runtime)
    pruned = prune(runtime, batch_rows=1)  # several batches, one transaction each
    assert (pruned.inbox_events, pruned.activity, pruned.jobs) == (2, 2, 1)
    assert _left(runtime) == KEPT
    assert prune(runtime).inbox_events == 0


def test_retention_periods_are_settings(runtime: Runtime) -> None:
    _seed(runtime)
    runtime.settings.inbox_retention_days = 60
    runtime.settings.activity_retention_days = 365
    assert prune(runtime) == type(prune(runtime))(0, 0, 0)


def test_the_ticker_prunes_once_per_interval(runtime: Runtime) -> None:
    _seed(runtime)
    ticker = Ticker(runtime, interval=60)
    ticker.tick(now=1000.0)
    assert _left(runtime) == KEPT
    with runtime.sessions.begin() as session:
        session.add(
            InboxEvent(
                source="crm",
                event_id="late",
                event_type="InvoiceSent",
                body="{}",
                received_at=utcnow() - timedelta(days=40),
            )
        )
    ticker.tick(now=1001.0)  # within QBCONNECT_RETENTION_INTERVAL_SECONDS: not yet
    assert "late" in _left(runtime)[0]
    ticker.tick(now=1000.0 + runtime.settings.retention_interval_seconds)
    assert "late" not in _left(runtime)[0]


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the usual default, under which files came out 0644
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_database_and_queue_files_are_created_owner_only(tmp_path: Path, open_umask: None) -> None:
    database = tmp_path / "data" / "qbconnect.db"
    upgrade(f"sqlite:///{database}")  # migrations are what creates the file on first start
    engine = make_engine(f"sqlite:///{database}")
    ping(engine)
    assert _mode(database) == 0o600
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        assert _mode(wal) == 0o600
    engine.dispose()
    queue = tmp_path / "queue" / "qbconnect-queue.db"
    huey = build_huey(f"sqlite:///{queue}")
    huey.pending_count()
    assert _mode(queue) == 0o600

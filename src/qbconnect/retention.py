"""Keep less: processed inbox events and old sync-log history are deleted after their retention periods.

- Inbox events (``QBCONNECT_INBOX_RETENTION_DAYS``, default 30): an event is processed once intake has
  stored its job (jobs read the source's current state, not the body), so every event older than the
  period goes. A redelivery after that is harmless: jobs are level-triggered.
- Sync log (``QBCONNECT_ACTIVITY_RETENTION_DAYS``, default 90): activity rows not changed for that long,
  unless still pending/running/retrying, and finished jobs of that age.

The worker's ticker calls :func:`prune_if_due` on every tick; it prunes at most once per
``QBCONNECT_RETENTION_INTERVAL_SECONDS``, in batches of one short transaction each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import InstrumentedAttribute

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, Base, InboxEvent, SyncJob
from qbconnect.runtime import Runtime

log = structlog.get_logger(__name__)

BATCH_ROWS = 1000
ACTIVE_ACTIVITY = ("pending", "running", "retrying")
_LAST_RUN_KEY = "retention"


@dataclass(frozen=True)
class Pruned:
    inbox_events: int
    activity: int
    jobs: int


def prune(runtime: Runtime, *, now: datetime | None = None, batch_rows: int = BATCH_ROWS) -> Pruned:
    """Delete what is past its retention period; returns how many rows went from each table."""
    now = now or utcnow()
    settings = runtime.settings
    inbox_cutoff = now - timedelta(days=settings.inbox_retention_days)
    activity_cutoff = now - timedelta(days=settings.activity_retention_days)
    return Pruned(
        inbox_events=_delete_batches(
            runtime, InboxEvent, InboxEvent.id, InboxEvent.received_at < inbox_cutoff, batch_rows
        ),
        activity=_delete_batches(
            runtime,
            Activity,
            Activity.id,
            (Activity.updated_at < activity_cutoff) & Activity.status.not_in(ACTIVE_ACTIVITY),
            batch_rows,
        ),
        jobs=_delete_batches(
            runtime,
            SyncJob,
            SyncJob.id,
            SyncJob.active_key.is_(None) & (SyncJob.finished_at < activity_cutoff),
            batch_rows,
        ),
    )


def _delete_batches(
    runtime: Runtime,
    model: type[Base],
    key: InstrumentedAttribute[Any],
    condition: ColumnElement[bool],
    batch_rows: int,
) -> int:
    total = 0
    while True:
        with runtime.sessions.begin() as session:
            ids = list(session.execute(select(key).where(condition).order_by(key).limit(batch_rows)).scalars())
            if ids:
                session.execute(delete(model).where(key.in_(ids)).execution_options(synchronize_session=False))
        total += len(ids)
        if len(ids) < batch_rows:
            return total


def prune_if_due(runtime: Runtime, last_run: dict[str, float], now: float) -> None:
    """Called from the ticker (monotonic ``now``); never raises."""
    last = last_run.get(_LAST_RUN_KEY)
    if last is not None and now - last < runtime.settings.retention_interval_seconds:
        return
    last_run[_LAST_RUN_KEY] = now
    try:
        pruned = prune(runtime)
    except Exception:
        log.exception("retention.prune_failed")
        return
    if pruned.inbox_events or pruned.activity or pruned.jobs:
        log.info("retention.pruned", inbox_events=pruned.inbox_events, activity=pruned.activity, jobs=pruned.jobs)

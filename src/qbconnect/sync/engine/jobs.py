"""The job table: enqueue (coalescing), claim (lease), finish, heartbeat and sweep.

All job queries live here. A job is one pending/running unit of work per (location, kind, entity); the
``active_key`` unique column makes that a database fact. Enqueue writes in the caller's transaction and
hands the job id to the queue only after that transaction commits.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, event, func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, ActivityAttempt, SyncJob

Dispatcher = Callable[[int, datetime | None], None]
_PENDING_DISPATCH = "qbconnect.jobs_to_dispatch"
_dispatcher: Dispatcher | None = None

ACTIVE_STATES = ("pending", "running")


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    """Install the function that hands a committed job id to the queue (Huey in production)."""
    global _dispatcher
    _dispatcher = dispatcher


def dispatch_now(job_id: int, eta: datetime | None = None) -> None:
    if _dispatcher is not None:
        _dispatcher(job_id, eta)


@event.listens_for(Session, "after_commit")
def _dispatch_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the jobs are not committed yet
    pending: dict[int, datetime | None] = session.info.pop(_PENDING_DISPATCH, {})
    for job_id, eta in pending.items():
        dispatch_now(job_id, eta)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was rolled back: jobs enqueued before it are still to be dispatched
    session.info.pop(_PENDING_DISPATCH, None)


def dispatch_after_commit(session: Session, job_id: int, eta: datetime | None = None) -> None:
    session.info.setdefault(_PENDING_DISPATCH, {})[job_id] = eta


def take_dispatches(session: Session) -> dict[int, datetime | None]:
    """Take over the hand-off of the jobs enqueued in ``session`` (the caller dispatches them after commit,
    e.g. after answering a webhook; a lost hand-off is re-sent by :func:`sweep`)."""
    pending: dict[int, datetime | None] = session.info.pop(_PENDING_DISPATCH, {})
    return pending


def active_key(location_id: str, kind: str, entity_id: str) -> str:
    return f"{location_id}|{kind}|{entity_id}"


DIRECTIONS: dict[str, str] = {}  # kind -> direction, filled by the handler registry


def enqueue(
    session: Session,
    location_id: str,
    kind: str,
    entity_id: str,
    reason: str,
    *,
    delay: float = 0.0,
) -> int:
    """Ask for the entity to be synced. Coalesces into the one active job of that entity.

    - no active job: a new pending job and its sync-log row (dispatched after commit);
    - a pending job: nothing new (the pending run will read the latest state anyway);
    - a running job: it is flagged to run once more when it finishes, so the latest state is never missed.

    One upsert on the ``active_key`` unique index decides between the three, atomically on both databases
    (no read before the write, no retry on a race): webhook intake calls this on its hot path.
    """
    session.flush()  # the session's own pending changes first (e.g. a finished job giving up its key)
    connection = session.connection()
    now = utcnow()
    run_after = now + timedelta(seconds=delay)
    job = {
        "location_id": location_id,
        "kind": kind,
        "entity_id": entity_id,
        "active_key": active_key(location_id, kind, entity_id),
        "state": "pending",
        "reason": reason,
        "attempts": 0,
        "rerun": False,
        "run_after": run_after,
        "created_at": now,
        "updated_at": now,
    }
    job_id, activity_id = connection.execute(_upsert_job(connection.dialect.name), job).one()
    if activity_id is not None:  # an active job already existed: coalesced
        _forget_loaded_job(session, job_id)
        return int(job_id)
    activity = {
        "location_id": location_id,
        "job_id": job_id,
        "kind": kind,
        "entity_id": entity_id,
        "direction": DIRECTIONS.get(kind, "internal"),
        "status": "pending",
        "reason": reason,
        "created_at": now,
    }
    activity_id = connection.execute(_INSERT_ACTIVITY, activity).scalar_one()
    connection.execute(_LINK_ACTIVITY, {"job": job_id, "activity": activity_id})
    dispatch_after_commit(session, int(job_id), run_after if delay > 0 else None)
    return int(job_id)


# Enqueue's statements are built once (webhook intake runs them for every event).
_JOBS = cast(Table, SyncJob.__table__)
_INSERT_ACTIVITY = sa_insert(cast(Table, Activity.__table__)).returning(Activity.__table__.c.id)
_LINK_ACTIVITY = update(_JOBS).where(_JOBS.c.id == bindparam("job")).values(activity_id=bindparam("activity"))


@functools.cache
def _upsert_job(dialect: str) -> Any:
    """Insert a pending job, or coalesce into the entity's active one (flagging a running one to run again);
    returns (id, activity_id): a NULL activity_id means the job is new."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(_JOBS)
    running = _JOBS.c.state == "running"
    return stmt.on_conflict_do_update(
        index_elements=[_JOBS.c.active_key],
        set_={
            "rerun": case((running, True), else_=_JOBS.c.rerun),
            "reason": case((running, stmt.excluded.reason), else_=_JOBS.c.reason),
        },
    ).returning(_JOBS.c.id, _JOBS.c.activity_id)


def _forget_loaded_job(session: Session, job_id: int) -> None:
    """A job row the upsert changed may be loaded in this session: its attributes are re-read on next use."""
    loaded = session.identity_map.get(identity_key(SyncJob, job_id))
    if loaded is not None:
        session.expire(loaded)


def claim(session: Session, job_id: int, owner: str, lease_seconds: float) -> SyncJob | None:
    """Lease a due pending job for ``owner``. Returns None when it is not claimable (taken, not due, done)."""
    now = utcnow()
    result = session.execute(
        update(SyncJob)
        .where(SyncJob.id == job_id, SyncJob.state == "pending", SyncJob.run_after <= now)
        .values(
            state="running",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=SyncJob.attempts + 1,
            rerun=False,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    job = session.get(SyncJob, job_id, populate_existing=True)
    if job is not None and job.activity_id is not None:
        activity = session.get(Activity, job.activity_id)
        if activity is not None:
            activity.status = "running"
            activity.attempts = job.attempts
    return job


def fair_order(due: Iterable[str], running: Mapping[str, int], served: Mapping[str, float]) -> list[str]:
    """The order in which locations with due work are served: fewest jobs running first (a fleet-wide fact,
    read from the job table), then the location served least recently (``served``: location -> when this
    runner last took one of its jobs; never served comes first), then by id. So a location with a long backlog
    takes one turn per round instead of the whole queue, and a location that had nothing to do is served as
    soon as its job is due."""
    never = float("-inf")
    return sorted(set(due), key=lambda loc: (running.get(loc, 0), served.get(loc, never), loc))


CLAIM_ROUNDS = 5


def claim_next(
    session: Session,
    owner: Callable[[int], str],
    lease_seconds: float,
    *,
    served: Mapping[str, float] | None = None,
) -> SyncJob | None:
    """Lease the next due pending job, taking locations in :func:`fair_order`; None when nothing is due.

    Within a location, the job due first goes first. On PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED``, so
    concurrent claimers take different jobs without waiting on each other; on SQLite the transaction holds the
    write lock (taken before "now" is read), which serialises claimers. ``owner(job_id)`` names the lease.

    A queue slot must not be spent while a job is due (that job would wait for the sweep). A row skipped as
    locked may be held by an enqueue coalescing into it rather than by a claimer, and another transaction may
    have committed a due job meanwhile: so when no unlocked due job was found, a fresh look for any due job
    decides, and that job is taken with a compare-and-set that waits for whoever holds it.
    """
    session.connection()  # SQLite: BEGIN IMMEDIATE now, so "now" is read under the write lock
    skip_locked = session.get_bind().dialect.name == "postgresql"
    for _ in range(CLAIM_ROUNDS):
        now = utcnow()
        due_locations = list(
            session.execute(
                select(SyncJob.location_id).where(SyncJob.state == "pending", SyncJob.run_after <= now).distinct()
            ).scalars()
        )
        if not due_locations:
            return None
        running = {
            location_id: int(n)
            for location_id, n in session.execute(
                select(SyncJob.location_id, func.count())
                .where(SyncJob.state == "running", SyncJob.location_id.in_(due_locations))
                .group_by(SyncJob.location_id)
            ).all()
        }
        for location_id in fair_order(due_locations, running, served or {}):
            pick = (
                select(SyncJob.id)
                .where(SyncJob.state == "pending", SyncJob.location_id == location_id, SyncJob.run_after <= now)
                .order_by(SyncJob.run_after, SyncJob.id)
                .limit(1)
            )
            job_id = session.execute(pick.with_for_update(skip_locked=True) if skip_locked else pick).scalar()
            if job_id is not None and (job := claim(session, job_id, owner(job_id), lease_seconds)) is not None:
                return job
        still_due = session.execute(
            select(SyncJob.id)
            .where(SyncJob.state == "pending", SyncJob.run_after <= utcnow())
            .order_by(SyncJob.run_after, SyncJob.id)
            .limit(1)
        ).scalar()
        if still_due is None:
            return None
        job = claim(session, still_due, owner(still_due), lease_seconds)  # waits for a lock holder, re-checks
        if job is not None:
            return job
    return None


def hand_back(session: Session, owner_prefix: str) -> list[int]:
    """A stopping worker gives its running jobs back: pending again, due now, lease released, this attempt not
    counted (it was interrupted, not failed), and handed to the queue after commit. Returns their ids."""
    now = utcnow()
    held = session.execute(
        select(SyncJob).where(SyncJob.state == "running", SyncJob.lease_owner.startswith(owner_prefix, autoescape=True))
    ).scalars()
    returned: list[int] = []
    for job in held:
        job.state = "pending"
        job.lease_owner = None
        job.lease_expires_at = None
        job.run_after = now
        job.attempts = max(0, job.attempts - 1)
        job.last_error = "its worker was stopped; handed back to run again"
        if job.activity_id is not None:
            activity = session.get(Activity, job.activity_id)
            if activity is not None and activity.status == "running":
                activity.status = "pending"
                activity.attempts = job.attempts
        dispatch_after_commit(session, job.id)
        returned.append(job.id)
    return returned


def heartbeat(session: Session, job_id: int, owner: str, lease_seconds: float) -> bool:
    result = session.execute(
        update(SyncJob)
        .where(SyncJob.id == job_id, SyncJob.lease_owner == owner, SyncJob.state == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


@dataclass(frozen=True)
class Finish:
    """How a run ended. ``state`` is done|skipped|failed|retry."""

    state: str
    summary: str | None = None
    error: str | None = None
    error_category: str | None = None
    retry_in: float = 0.0
    crm_id: str | None = None
    qbo_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # Result's readable-title fields
    fault_code: str | None = None
    intuit_tid: str | None = None  # or the CRM's trace id
    http_status: int | None = None
    attempt: AttemptRecord | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """What the runner saw of one run: when, how long, what was asked (summary only)."""

    started_at: datetime
    duration_ms: int
    request_summary: str


READABLE_FIELDS = (
    "label",
    "number",
    "customer",
    "customer_email",
    "amount",
    "currency",
    "qbo_type",
    "crm_url",
    "group_key",
)


class LeaseLostError(RuntimeError):
    """The job's lease expired and was taken over: this run's writes must be discarded."""


def finish(session: Session, job_id: int, owner: str, outcome: Finish) -> SyncJob:
    """Record the outcome in the caller's transaction; raises LeaseLostError if another worker took over."""
    job = session.execute(
        select(SyncJob).where(SyncJob.id == job_id, SyncJob.lease_owner == owner, SyncJob.state == "running")
    ).scalar_one_or_none()
    if job is None:
        raise LeaseLostError(f"job {job_id} is no longer leased by {owner}")
    now = utcnow()
    activity = session.get(Activity, job.activity_id) if job.activity_id else None
    if activity is not None:
        activity.attempts = job.attempts
        activity.crm_id = outcome.crm_id or activity.crm_id
        activity.qbo_id = outcome.qbo_id or activity.qbo_id
        if outcome.summary:
            activity.summary = outcome.summary
        activity.error_message = outcome.error
        activity.error_category = outcome.error_category
        activity.fault_code = outcome.fault_code
        activity.intuit_tid = outcome.intuit_tid
        activity.status = "retrying" if outcome.state == "retry" else outcome.state
        for name in READABLE_FIELDS:
            if outcome.details.get(name) is not None:
                setattr(activity, name, outcome.details[name])
        if outcome.attempt is not None:
            session.add(
                ActivityAttempt(
                    activity_id=activity.id,
                    attempt=job.attempts,
                    started_at=outcome.attempt.started_at,
                    duration_ms=outcome.attempt.duration_ms,
                    request_summary=outcome.attempt.request_summary,
                    outcome=outcome.state,
                    http_status=outcome.http_status,
                    fault_code=outcome.fault_code,
                    intuit_tid=outcome.intuit_tid,
                    message=outcome.error or outcome.summary,
                )
            )
        if outcome.state in ("done", "failed"):
            close_problems(session, activity, now)
    job.lease_owner = None
    job.lease_expires_at = None
    job.last_error = outcome.error
    job.error_category = outcome.error_category
    if outcome.state == "retry":
        job.state = "pending"
        job.run_after = now + timedelta(seconds=outcome.retry_in)
        dispatch_after_commit(session, job.id, job.run_after)
        return job
    job.state = outcome.state
    job.finished_at = now
    job.active_key = None
    if job.rerun:
        # Something changed while we ran: exactly one more run, as a new job (and a new sync-log row).
        session.flush()
        enqueue(session, job.location_id, job.kind, job.entity_id, job.reason or "changed while syncing")
    return job


def close_problems(session: Session, activity: Activity, now: datetime) -> int:
    """A run of a record ended: its earlier failed rows are no longer open problems (a success closes them;
    a newer failure replaces them, so each record has one open problem at most)."""
    result = session.execute(
        update(Activity)
        .where(
            Activity.location_id == activity.location_id,
            Activity.kind == activity.kind,
            Activity.entity_id == activity.entity_id,
            Activity.id != activity.id,
            Activity.status.in_(("failed", "retried")),
            Activity.resolved_at.is_(None),
        )
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d] where d = min(cap, base * 2**(attempt-1))."""
    rng = rng or random.Random()
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return rng.uniform(ceiling / 2, ceiling)


def sweep(
    session: Session,
    *,
    now: datetime | None = None,
    grace_seconds: float = 60.0,
    max_attempts: int,
    waiting_slots: int | None = None,
) -> list[int]:
    """Re-queue jobs whose lease expired (worker died) and due pending jobs whose queue task was lost.

    A pending job counts as lost when it has been due and untouched for ``grace_seconds``; it is touched, so a
    long backlog is looked at once per grace period. A queue task is a slot to run whichever job is due next
    (:func:`claim_next`), not a particular job: when the number of slots waiting in the queue is known
    (``waiting_slots``), only the due jobs beyond those slots are re-sent (at most the lost ones), so a backlog
    waiting its fair turn is not sent twice. A duplicate slot is harmless anyway (it claims nothing when
    nothing is due)."""
    now = now or utcnow()
    expired = session.execute(
        select(SyncJob).where(SyncJob.state == "running", SyncJob.lease_expires_at < now)
    ).scalars()
    requeue: list[int] = []
    for job in expired:
        job.lease_owner = None
        job.lease_expires_at = None
        if job.attempts >= max_attempts:
            _fail_abandoned(session, job, now)
            continue
        job.state = "pending"
        job.run_after = now
        job.last_error = "the worker running this job stopped; running it again"
        requeue.append(job.id)
    lost = session.execute(
        select(SyncJob).where(
            SyncJob.state == "pending",
            SyncJob.run_after <= now - timedelta(seconds=grace_seconds),
            SyncJob.updated_at <= now - timedelta(seconds=grace_seconds),
        )
    ).scalars()
    stale = list(lost)
    for job in stale:
        job.updated_at = now
    resend = len(stale)
    if waiting_slots is not None and stale:
        due = session.scalar(
            select(func.count()).select_from(SyncJob).where(SyncJob.state == "pending", SyncJob.run_after <= now)
        )
        resend = min(resend, max(0, int(due or 0) - waiting_slots - len(requeue)))
    requeue.extend(job.id for job in stale[:resend])
    for job_id in requeue:
        dispatch_after_commit(session, job_id)
    return requeue


def _fail_abandoned(session: Session, job: SyncJob, now: datetime) -> None:
    job.state = "failed"
    job.finished_at = now
    job.active_key = None
    job.error_category = "transient"
    job.last_error = "the job stopped its worker too many times and was given up"
    if job.activity_id:
        activity = session.get(Activity, job.activity_id)
        if activity is not None:
            activity.status = "failed"
            activity.error_category = job.error_category
            activity.error_message = job.last_error


def retry_activity(session: Session, activity_id: int) -> int | None:
    """The sync log's Retry button: enqueue the entity again. Returns the job id, None if not retryable."""
    activity = session.get(Activity, activity_id)
    if activity is None or activity.status not in ("failed", "skipped"):
        return None
    activity.status = "retried"
    return enqueue(
        session, activity.location_id, activity.kind, activity.entity_id, "retry requested from the sync log"
    )


def counts_by_state(session: Session, location_id: str | None = None) -> dict[str, int]:
    stmt = select(SyncJob.state, func.count()).group_by(SyncJob.state)
    if location_id:
        stmt = stmt.where(SyncJob.location_id == location_id)
    return {state: int(n) for state, n in session.execute(stmt).all()}


def reenqueue_failed(session: Session, location_id: str, *, categories: Iterable[str], reason: str) -> int:
    """After a reconnect: run again whatever failed for lack of a working connection."""
    failed = session.execute(
        select(SyncJob).where(
            SyncJob.location_id == location_id,
            SyncJob.state == "failed",
            SyncJob.error_category.in_(list(categories)),
        )
    ).scalars()
    keys: set[tuple[str, str]] = set()
    for job in failed:
        keys.add((job.kind, job.entity_id))
    for kind, entity_id in keys:
        enqueue(session, location_id, kind, entity_id, reason)
    return len(keys)

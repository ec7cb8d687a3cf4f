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


@dataclass(frozen=True)
class Lease:
    """A job just leased: what running it needs (the row itself is not loaded)."""

    id: int
    kind: str
    location_id: str
    entity_id: str
    attempts: int
    reason: str | None


def lease(session: Session, job_id: int, owner: str, lease_seconds: float) -> Lease | None:
    """Lease a due pending job for ``owner``: a compare-and-set that returns what running the job needs, and
    its sync-log row marked running (two statements built once). None when it is not claimable (taken, not
    due, done)."""
    session.flush()  # the session's own pending changes first, as an ORM statement would
    connection = session.connection()
    now = utcnow()
    params = {"p_job": job_id, "p_now": now, "p_owner": owner, "p_expires": now + timedelta(seconds=lease_seconds)}
    row = connection.execute(_LEASE, params).first()
    if row is None:
        return None
    _forget_loaded_job(session, job_id)
    if row.activity_id is not None:
        connection.execute(_MARK_RUNNING, {"p_activity": row.activity_id, "p_attempts": row.attempts})
        _forget_loaded(session, Activity, row.activity_id)
    return Lease(row.id, row.kind, row.location_id, row.entity_id, row.attempts, row.reason)


def claim(session: Session, job_id: int, owner: str, lease_seconds: float) -> SyncJob | None:
    """:func:`lease`, returning the leased row loaded in ``session``. None when it is not claimable."""
    leased = lease(session, job_id, owner, lease_seconds)
    return None if leased is None else session.get(SyncJob, leased.id, populate_existing=True)


def _forget_loaded(session: Session, model: type[Activity], row_id: int) -> None:
    loaded = session.identity_map.get(identity_key(model, row_id))
    if loaded is not None:
        session.expire(loaded)


_ACTIVITIES = cast(Table, Activity.__table__)
_LEASE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("p_job"), _JOBS.c.state == "pending", _JOBS.c.run_after <= bindparam("p_now"))
    .values(
        state="running",
        lease_owner=bindparam("p_owner"),
        lease_expires_at=bindparam("p_expires"),
        attempts=_JOBS.c.attempts + 1,
        rerun=False,
        updated_at=bindparam("p_now"),
    )
    .returning(
        _JOBS.c.id,
        _JOBS.c.kind,
        _JOBS.c.location_id,
        _JOBS.c.entity_id,
        _JOBS.c.attempts,
        _JOBS.c.reason,
        _JOBS.c.activity_id,
    )
)
_MARK_RUNNING = (
    update(_ACTIVITIES)
    .where(_ACTIVITIES.c.id == bindparam("p_activity"))
    .values(status="running", attempts=bindparam("p_attempts"))
)


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
) -> Lease | None:
    """Lease the next due pending job, taking locations in :func:`fair_order`; None when nothing is due.

    Within a location, the job due first goes first. On PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED``, so
    concurrent claimers take different jobs without waiting on each other; on SQLite the transaction holds the
    write lock (taken before "now" is read), which serialises claimers. ``owner(job_id)`` names the lease.

    A queue slot must not be spent while a job is due (that job would wait for the sweep). A row skipped as
    locked may be held by an enqueue coalescing into it rather than by a claimer, and another transaction may
    have committed a due job meanwhile: so when no unlocked due job was found, a fresh look for any due job
    decides, and that job is taken with a compare-and-set that waits for whoever holds it.

    Every statement is built once: this runs for every queue slot.
    """
    session.flush()
    connection = session.connection()  # SQLite: BEGIN IMMEDIATE now, so "now" is read under the write lock
    pick = _PICK_SKIP_LOCKED if connection.dialect.name == "postgresql" else _PICK
    for _ in range(CLAIM_ROUNDS):
        now = utcnow()
        # One statement: per location with active jobs, how many are due and how many running.
        active = connection.execute(_ACTIVE_BY_LOCATION, {"p_now": now}).all()
        due_locations = [location_id for location_id, due, _ in active if due]
        if not due_locations:
            return None
        running = {location_id: int(n) for location_id, due, n in active if due and n}
        for location_id in fair_order(due_locations, running, served or {}):
            job_id = connection.execute(pick, {"p_location": location_id, "p_now": now}).scalar()
            if job_id is not None and (job := lease(session, job_id, owner(job_id), lease_seconds)) is not None:
                return job
        still_due = connection.execute(_STILL_DUE, {"p_now": utcnow()}).scalar()
        if still_due is None:
            return None
        job = lease(session, still_due, owner(still_due), lease_seconds)  # waits for a lock holder, re-checks
        if job is not None:
            return job
    return None


_ACTIVE_BY_LOCATION = (
    select(
        _JOBS.c.location_id,
        func.count(case(((_JOBS.c.state == "pending") & (_JOBS.c.run_after <= bindparam("p_now")), 1))),
        func.count(case((_JOBS.c.state == "running", 1))),
    )
    .where(_JOBS.c.state.in_(ACTIVE_STATES))
    .group_by(_JOBS.c.location_id)
)
_PICK = (
    select(_JOBS.c.id)
    .where(
        _JOBS.c.state == "pending",
        _JOBS.c.location_id == bindparam("p_location"),
        _JOBS.c.run_after <= bindparam("p_now"),
    )
    .order_by(_JOBS.c.run_after, _JOBS.c.id)
    .limit(1)
)
_PICK_SKIP_LOCKED = _PICK.with_for_update(skip_locked=True)
_STILL_DUE = (
    select(_JOBS.c.id)
    .where(_JOBS.c.state == "pending", _JOBS.c.run_after <= bindparam("p_now"))
    .order_by(_JOBS.c.run_after, _JOBS.c.id)
    .limit(1)
)


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


def finish(session: Session, job_id: int, owner: str, outcome: Finish) -> None:
    """Record the outcome in the caller's transaction; raises LeaseLostError if another worker took over.

    Statements built once, no row loaded: the leased job read, its sync-log row, the attempt, for a run that
    ended the record its earlier open problems closed, and last the job's own compare-and-set — so the job row,
    which webhook intake may be coalescing into, stays locked only until the commit that follows it; that
    statement returns whether a change arrived during the run (``rerun``), atomically with ending it."""
    session.flush()  # what the handler recorded first, as an ORM statement would
    connection = session.connection()
    leased = connection.execute(_LEASED_JOB, {"p_job": job_id, "p_owner": owner}).first()
    if leased is None:
        raise LeaseLostError(f"job {job_id} is no longer leased by {owner}")
    now = utcnow()
    if leased.activity_id is not None:
        _record_outcome(session, leased.activity_id, leased.attempts, outcome, now)
    params = {"p_job": job_id, "p_owner": owner, "p_error": outcome.error, "p_category": outcome.error_category}
    if outcome.state == "retry":
        run_after = now + timedelta(seconds=outcome.retry_in)
        job = connection.execute(_FINISH_RETRY, {**params, "p_run_after": run_after}).first()
    else:
        job = connection.execute(_FINISH_END, {**params, "p_state": outcome.state, "p_now": now}).first()
    if job is None:
        raise LeaseLostError(f"job {job_id} is no longer leased by {owner}")
    _forget_loaded_job(session, job_id)
    if outcome.state == "retry":
        dispatch_after_commit(session, job_id, run_after)
    elif job.rerun:
        # Something changed while we ran: exactly one more run, as a new job (and a new sync-log row).
        enqueue(session, job.location_id, job.kind, job.entity_id, job.reason or "changed while syncing")


def _record_outcome(session: Session, activity_id: int, attempts: int, outcome: Finish, now: datetime) -> None:
    """The run's outcome on its sync-log row (the row is not loaded), the attempt, and for a run that ended
    the record its earlier open problems closed. Nothing when the row is gone (pruned)."""
    connection = session.connection()
    values: dict[str, Any] = {
        "p_activity": activity_id,
        "p_attempts": attempts,
        "p_error_message": outcome.error,
        "p_error_category": outcome.error_category,
        "p_fault_code": outcome.fault_code,
        "p_intuit_tid": outcome.intuit_tid,
        "p_status": "retrying" if outcome.state == "retry" else outcome.state,
        # kept as they were unless this run says otherwise
        "p_crm_id": outcome.crm_id or None,
        "p_qbo_id": outcome.qbo_id or None,
        "p_summary": outcome.summary or None,
        **{f"p_{name}": outcome.details.get(name) for name in READABLE_FIELDS},
    }
    record = connection.execute(_RECORD_OUTCOME, values).first()
    _forget_loaded(session, Activity, activity_id)
    if record is None:
        return
    if outcome.attempt is not None:
        connection.execute(
            _INSERT_ATTEMPT,
            {
                "activity_id": activity_id,
                "attempt": attempts,
                "started_at": outcome.attempt.started_at,
                "duration_ms": outcome.attempt.duration_ms,
                "request_summary": outcome.attempt.request_summary,
                "outcome": outcome.state,
                "http_status": outcome.http_status,
                "fault_code": outcome.fault_code,
                "intuit_tid": outcome.intuit_tid,
                "message": outcome.error or outcome.summary,
            },
        )
    if outcome.state in ("done", "failed"):
        _close_problems(session, record.location_id, record.kind, record.entity_id, activity_id, now)


_LEASED = (_JOBS.c.id == bindparam("p_job"), _JOBS.c.lease_owner == bindparam("p_owner"), _JOBS.c.state == "running")
_LEASED_JOB = select(_JOBS.c.activity_id, _JOBS.c.attempts).where(*_LEASED)
_FINISHED = (
    _JOBS.c.rerun,
    _JOBS.c.location_id,
    _JOBS.c.kind,
    _JOBS.c.entity_id,
    _JOBS.c.reason,
)
# What ending a run (a retry or an end) writes to the job row besides its new state.
_RELEASED: dict[str, Any] = {
    "lease_owner": None,
    "lease_expires_at": None,
    "last_error": bindparam("p_error"),
    "error_category": bindparam("p_category"),
}
_FINISH_RETRY = (
    update(_JOBS)
    .where(*_LEASED)
    .values(
        **_RELEASED,
        state="pending",
        run_after=bindparam("p_run_after"),
    )
    .returning(*_FINISHED)
)
_FINISH_END = (
    update(_JOBS)
    .where(*_LEASED)
    .values(
        **_RELEASED,
        state=bindparam("p_state"),
        finished_at=bindparam("p_now"),
        active_key=None,
    )
    .returning(*_FINISHED)
)
_KEPT_UNLESS_GIVEN = ("crm_id", "qbo_id", "summary", *READABLE_FIELDS)
_RECORD_OUTCOME = (
    update(_ACTIVITIES)
    .where(_ACTIVITIES.c.id == bindparam("p_activity"))
    .values(
        attempts=bindparam("p_attempts"),
        error_message=bindparam("p_error_message"),
        error_category=bindparam("p_error_category"),
        fault_code=bindparam("p_fault_code"),
        intuit_tid=bindparam("p_intuit_tid"),
        status=bindparam("p_status"),
        **{
            name: func.coalesce(bindparam(f"p_{name}", type_=_ACTIVITIES.c[name].type), _ACTIVITIES.c[name])
            for name in _KEPT_UNLESS_GIVEN
        },
    )
    .returning(_ACTIVITIES.c.location_id, _ACTIVITIES.c.kind, _ACTIVITIES.c.entity_id)
)
_INSERT_ATTEMPT = sa_insert(cast(Table, ActivityAttempt.__table__))


def close_problems(session: Session, activity: Activity, now: datetime) -> int:
    """A run of a record ended: its earlier failed rows are no longer open problems (a success closes them;
    a newer failure replaces them, so each record has one open problem at most)."""
    return _close_problems(session, activity.location_id, activity.kind, activity.entity_id, activity.id, now)


def _close_problems(
    session: Session, location_id: str, kind: str, entity_id: str, activity_id: int, now: datetime
) -> int:
    params = {"p_location": location_id, "p_kind": kind, "p_entity": entity_id, "p_activity": activity_id, "p_now": now}
    result = session.connection().execute(_CLOSE_PROBLEMS, params)
    return int(getattr(result, "rowcount", 0) or 0)


_CLOSE_PROBLEMS = (
    update(_ACTIVITIES)
    .where(
        _ACTIVITIES.c.location_id == bindparam("p_location"),
        _ACTIVITIES.c.kind == bindparam("p_kind"),
        _ACTIVITIES.c.entity_id == bindparam("p_entity"),
        _ACTIVITIES.c.id != bindparam("p_activity"),
        _ACTIVITIES.c.status.in_(("failed", "retried")),
        _ACTIVITIES.c.resolved_at.is_(None),
    )
    .values(resolved_at=bindparam("p_now"))
)


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

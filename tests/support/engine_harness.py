"""Running one job through the engine against the emulators, and watching the database lock while platforms answer.

- :func:`run_job` enqueues a job of a registered kind and runs it once with :class:`JobRunner` (the public
  entry point a worker uses), then returns the job, its sync-log row and the state it ended in.
- :class:`LockProbe` is an httpx request hook for the runtime's HTTP client: at every platform request a
  separate sqlite3 connection tries ``BEGIN IMMEDIATE`` with busy timeout 0 against the database file and
  records a failure when the write lock is held (on SQLite every transaction of the product takes it).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select, update

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, Location, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.runner import JobRunner


@dataclass
class JobRun:
    state: str | None  # what JobRunner.run returned (None: not claimed, or the lease was lost)
    job: SyncJob
    activity: Activity | None


def enqueue(runtime: Runtime, location_id: str, kind: str, entity_id: str, reason: str = "test") -> int:
    with runtime.sessions.begin() as session:
        return jobs.enqueue(session, location_id, kind, entity_id, reason)


def outcome(runtime: Runtime, job_id: int, state: str | None = None) -> JobRun:
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        assert job is not None
        activity = session.get(Activity, job.activity_id) if job.activity_id else None
        session.expunge_all()
    return JobRun(state=state, job=job, activity=activity)


def run_again(runtime: Runtime, job_id: int) -> JobRun:
    """Run the job now (a pending retry is made due at once)."""
    with runtime.sessions.begin() as session:
        due = update(SyncJob).where(SyncJob.id == job_id, SyncJob.state == "pending").values(run_after=utcnow())
        session.execute(due)
    return outcome(runtime, job_id, JobRunner(runtime).run(job_id))


def run_job(runtime: Runtime, location_id: str, kind: str, entity_id: str, reason: str = "test") -> JobRun:
    """Enqueue a job of ``kind`` for ``entity_id`` and run it once through the engine."""
    return run_again(runtime, enqueue(runtime, location_id, kind, entity_id, reason))


def jobs_of(runtime: Runtime, location_id: str, kind: str) -> list[SyncJob]:
    with runtime.sessions() as session:
        found = list(
            session.execute(
                select(SyncJob).where(SyncJob.location_id == location_id, SyncJob.kind == kind).order_by(SyncJob.id)
            ).scalars()
        )
        session.expunge_all()
    return found


def set_settings(runtime: Runtime, location_id: str, **values: Any) -> None:
    with runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        assert location is not None
        location.settings = {**(location.settings or {}), **values}


@dataclass
class LockProbe:
    """At each request, may another connection take SQLite's write lock? Failures name the request.

    Each try uses busy timeout 0. A lock taken by another thread's short unit of work (the contact import
    records from several threads) is let go within milliseconds, so a refused try is repeated a few times;
    a transaction held open across this very request is never let go while the request waits here, so it
    fails every try.
    """

    db_path: str
    tries: int = 40
    pause: float = 0.005
    requests: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def free(self) -> bool:
        for attempt in range(self.tries):
            connection = sqlite3.connect(self.db_path, timeout=0, isolation_level=None)
            try:
                connection.execute("PRAGMA busy_timeout=0")
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            finally:
                connection.close()
            if attempt + 1 < self.tries:
                time.sleep(self.pause)  # only reached while the lock is held
        return False

    def __call__(self, request: httpx.Request) -> None:
        name = f"{request.method} {request.url.path}"
        held = not self.free()
        with self._lock:
            self.requests.append(name)
            if held:
                self.failures.append(name)

    def watching(self, runtime: Runtime) -> AbstractContextManager[None]:
        return on_request(runtime, self)


def lock_probe(runtime: Runtime) -> LockProbe:
    path = runtime.engine.url.database
    assert runtime.engine.dialect.name == "sqlite" and path, "the lock probe needs a SQLite database file"
    return LockProbe(path)


@contextmanager
def on_request(runtime: Runtime, hook: Callable[[httpx.Request], None]) -> Iterator[None]:
    """Run ``hook`` at every request the runtime's HTTP client sends (in the sending thread)."""
    hooks = runtime.http.event_hooks
    previous = list(hooks.get("request", []))
    runtime.http.event_hooks = {**hooks, "request": [*previous, hook]}
    try:
        yield
    finally:
        runtime.http.event_hooks = {**runtime.http.event_hooks, "request": previous}

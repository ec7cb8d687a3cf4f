"""The job worker: Huey carries slots to run jobs; a ticker thread sweeps leases and runs periodic passes.

``SqliteHuey`` on one machine, ``RedisHuey`` when ``QBCONNECT_QUEUE_URL`` is ``redis://…``. The job table is
the truth. A queue task is a *slot*: it runs whichever due job comes next, taken fairly between locations
(``jobs.claim_next``), so one location's backlog cannot hold up the others. One slot is sent per job that
becomes due; a slot lost in a crash is re-sent by the sweep.

Fleet-safety: the lease (``jobs.claim``) and the fair claim are database facts; each periodic pass runs once per
interval across every process sharing the queue (:class:`PassClaims`); the lease sweep and retention run in
every process (both are idempotent). SIGTERM lets running jobs finish for ``QBCONNECT_SHUTDOWN_GRACE_SECONDS``
and hands back the ones still running (:class:`JobConsumer`).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import structlog
from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy.engine import make_url

from qbconnect.db.session import create_private_file
from qbconnect.retention import prune_if_due
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs, registry
from qbconnect.sync.engine.runner import JobRunner, process_identity

log = structlog.get_logger(__name__)


def build_huey(queue_url: str) -> Huey:
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("qbconnect", url=queue_url, results=False, utc=True)
    url = make_url(queue_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError(f"QBCONNECT_QUEUE_URL must be a SQLite path URL or redis://…, got {queue_url!r}")
    create_private_file(url.database)
    return SqliteHuey("qbconnect", filename=url.database, results=False, utc=True)


class Queue:
    """Huey plus the one task it runs: ``run_job(job_id)``, a slot that runs the next due job fairly.

    The task keeps its name and argument (the job whose hand-off sent it, for the log) so that tasks queued
    by an older release still run."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.huey = build_huey(runtime.settings.resolved_queue_url)
        self.runner = JobRunner(runtime)
        self._task = self.huey.task(name="run_job")(self._run_job)

    def _run_job(self, job_id: int) -> None:
        self.runner.run_next()

    def dispatch(self, job_id: int, eta: datetime | None = None) -> None:
        if eta is not None:
            self._task.schedule(args=(job_id,), eta=eta)
        else:
            self._task(job_id)

    def install(self) -> None:
        jobs.set_dispatcher(self.dispatch)

    def ping(self) -> None:
        self.huey.pending_count()

    def waiting_slots(self) -> int:
        return int(self.huey.pending_count())

    def hand_back(self) -> list[int]:
        """Give back the jobs this process still holds (pending again, re-sent); see ``jobs.hand_back``."""
        with self.runtime.sessions.begin() as session:
            returned = jobs.hand_back(session, process_identity())
        if returned:
            log.warning("worker.handed_back", jobs=returned)
        return returned


class PassClaims:
    """Once per interval across the fleet: a pass's interval is numbered (wall-clock seconds // interval) and
    the first process to write that number's key into the queue's shared store (``put_if_empty``: HSETNX in
    Redis, a unique insert in the SQLite queue) runs it; every other process sees the key and skips."""

    PREFIX = "qbconnect:periodic:"

    def __init__(self, huey: Huey) -> None:
        self.storage = huey.storage
        self._seen: dict[str, int] = {}  # pass -> last interval number this process saw claimed

    @staticmethod
    def interval(every_seconds: float, wall: float) -> int:
        """The number of the interval ``wall`` (seconds since the epoch) falls in."""
        return int(wall // every_seconds)

    def claim(self, name: str, every_seconds: float, wall: float) -> bool:
        number = self.interval(every_seconds, wall)
        if self._seen.get(name) == number:
            return False
        self._seen[name] = number
        won = bool(self.storage.put_if_empty(f"{self.PREFIX}{name}:{number}", str(wall).encode()))
        if won:  # keys from before the previous interval are no longer needed (a host a little behind may
            for old in (number - 2, number - 3):  # still ask about the previous one: that key stays)
                self.storage.delete_data(f"{self.PREFIX}{name}:{old}")
        return won


class Ticker(threading.Thread):
    """Sweeps expired leases and lost slots, and runs the periodic passes, until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        interval: float | None = None,
        queue: Queue | None = None,
        claims: PassClaims | None = None,
    ) -> None:
        super().__init__(name="qbconnect-ticker", daemon=True)
        self.runtime = runtime
        self.interval = interval or runtime.settings.sweep_interval_seconds
        self.queue = queue
        if claims is None:
            claims = PassClaims(queue.huey if queue is not None else build_huey(runtime.settings.resolved_queue_url))
        self.claims = claims
        self.stopped = threading.Event()
        self._last_run: dict[str, float] = {}

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.tick()

    def tick(self, now: float | None = None, *, wall: float | None = None) -> list[str]:
        """One round: sweep, retention, then the periodic passes this process won. Returns those passes.

        ``now`` is monotonic (retention's interval, per process); ``wall`` numbers the fleet-wide intervals."""
        now = now if now is not None else time.monotonic()
        wall = wall if wall is not None else time.time()
        try:
            waiting = self.queue.waiting_slots() if self.queue is not None else None
            with self.runtime.sessions.begin() as session:
                jobs.sweep(session, max_attempts=self.runtime.settings.job_max_attempts, waiting_slots=waiting)
        except Exception:
            log.exception("ticker.sweep_failed")
        prune_if_due(self.runtime, self._last_run, now)
        ran: list[str] = []
        for hook in registry.PERIODIC:
            try:
                every = hook.every_seconds(self.runtime)
                if not self.claims.claim(hook.name, every, wall):
                    continue
            except Exception:
                log.exception("ticker.claim_failed", hook=hook.name)
                continue
            ran.append(hook.name)
            # one line per pass run, fleet-wide: which process ran which interval (tests/scaleout/test_fleet.py)
            log.info("ticker.periodic", hook=hook.name, interval=PassClaims.interval(every, wall), every_seconds=every)
            try:
                with self.runtime.sessions.begin() as session:
                    hook.fn(self.runtime, session)
            except Exception:
                log.exception("ticker.periodic_failed", hook=hook.name)
        return ran

    def stop(self) -> None:
        self.stopped.set()


class JobConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer with a bounded, lossless stop.

    SIGTERM (and ``stop(graceful=True)``) stops taking slots and lets running jobs finish for the queue
    runtime's ``shutdown_grace_seconds``; SIGINT stops at once. Either way the jobs this process still holds
    are then handed back (pending again, re-sent to the queue) so another worker runs them now instead of
    after their lease expires."""

    def __init__(self, queue: Queue, *, threads: int, in_process: bool) -> None:
        super().__init__(
            queue.huey,
            workers=threads,
            worker_type="thread",
            periodic=False,
            initial_delay=0.05,
            backoff=1.5,
            max_delay=0.5,
            check_worker_health=True,
            graceful_signal="TERM",
            shutdown_timeout=queue.runtime.settings.shutdown_grace_seconds,
        )
        self.queue = queue
        self.in_process = in_process
        self.handed_back: list[int] = []

    def _set_signal_handlers(self) -> None:
        if not self.in_process:  # inside ``serve`` the web server owns the signals
            super()._set_signal_handlers()

    def stop(self, graceful: bool = False) -> None:
        super().stop(graceful=graceful)
        try:
            self.handed_back = self.queue.hand_back()
        except Exception:
            log.exception("worker.hand_back_failed")  # their leases expire and the sweep re-queues them


def start_consumer(queue: Queue, *, threads: int, in_process: bool) -> JobConsumer:
    consumer = JobConsumer(queue, threads=threads, in_process=in_process)
    if in_process:
        consumer.start()
    return consumer

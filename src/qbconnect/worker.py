"""The job worker: Huey carries job ids; a ticker thread sweeps leases and runs periodic reconciliation.

``SqliteHuey`` on one machine, ``RedisHuey`` when ``QBCONNECT_QUEUE_URL`` is ``redis://…``. The job table is
the truth: a Huey task lost in a crash is re-queued by the sweeper.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from qbconnect.runtime import Runtime
from qbconnect.sync import jobs
from qbconnect.sync.engine.runner import JobRunner

log = structlog.get_logger(__name__)


def build_huey(queue_url: str) -> Huey:
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("qbconnect", url=queue_url, results=False, utc=True)
    url = make_url(queue_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError(f"QBCONNECT_QUEUE_URL must be a SQLite path URL or redis://…, got {queue_url!r}")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("qbconnect", filename=url.database, results=False, utc=True)


@dataclass(frozen=True)
class Periodic:
    """A periodic hook: ``fn(session)`` enqueues whatever needs a look (reconciliation, polling)."""

    name: str
    every_seconds: Callable[[Runtime], float]
    fn: Callable[[Runtime, Session], None]


PERIODIC: list[Periodic] = []


def register_periodic(name: str, every_seconds: Callable[[Runtime], float]) -> Callable[..., Any]:
    def decorate(fn: Callable[[Runtime, Session], None]) -> Callable[[Runtime, Session], None]:
        PERIODIC.append(Periodic(name=name, every_seconds=every_seconds, fn=fn))
        return fn

    return decorate


class Queue:
    """Huey plus the one task it runs: ``run_job(job_id)``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.huey = build_huey(runtime.settings.resolved_queue_url)
        self.runner = JobRunner(runtime)
        self._task = self.huey.task(name="run_job")(self._run_job)

    def _run_job(self, job_id: int) -> None:
        self.runner.run(job_id)

    def dispatch(self, job_id: int, eta: datetime | None = None) -> None:
        if eta is not None:
            self._task.schedule(args=(job_id,), eta=eta)
        else:
            self._task(job_id)

    def install(self) -> None:
        jobs.set_dispatcher(self.dispatch)

    def ping(self) -> None:
        self.huey.pending_count()


class Ticker(threading.Thread):
    """Sweeps expired leases and lost tasks, and runs the periodic hooks, until stopped."""

    def __init__(self, runtime: Runtime, *, interval: float | None = None) -> None:
        super().__init__(name="qbconnect-ticker", daemon=True)
        self.runtime = runtime
        self.interval = interval or runtime.settings.sweep_interval_seconds
        self.stopped = threading.Event()
        self._last_run: dict[str, float] = {}

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.tick()

    def tick(self, now: float | None = None) -> None:
        import time

        now = now if now is not None else time.monotonic()
        try:
            with self.runtime.sessions.begin() as session:
                jobs.sweep(session, max_attempts=self.runtime.settings.job_max_attempts)
        except Exception:
            log.exception("ticker.sweep_failed")
        for hook in PERIODIC:
            last = self._last_run.get(hook.name)
            if last is not None and now - last < hook.every_seconds(self.runtime):
                continue
            self._last_run[hook.name] = now
            try:
                with self.runtime.sessions.begin() as session:
                    hook.fn(self.runtime, session)
            except Exception:
                log.exception("ticker.periodic_failed", hook=hook.name)

    def stop(self) -> None:
        self.stopped.set()


class InProcessConsumer(Consumer):  # type: ignore[misc]
    """A Huey consumer that runs inside ``qbconnect serve`` (no signal handlers: not the main thread)."""

    def _set_signal_handlers(self) -> None:
        return None


def start_consumer(queue: Queue, *, threads: int, in_process: bool) -> Consumer:
    cls = InProcessConsumer if in_process else Consumer
    consumer = cls(
        queue.huey,
        workers=threads,
        worker_type="thread",
        periodic=False,
        initial_delay=0.05,
        backoff=1.5,
        max_delay=0.5,
        check_worker_health=True,
    )
    if in_process:
        consumer.start()
    return consumer

"""Group commit for HighLevel deliveries: the ones that arrive together are stored in one transaction.

Each delivery used to be its own transaction on one of eight threads, all queued on one writer (SQLite has
one; PostgreSQL's share one location's rows): BEGIN, the location's status, the inserts and COMMIT for each,
and a thread switch per delivery. Here a writer thread takes every delivery waiting (up to
:data:`MAX_BATCH`), stores them with :func:`intake.intake_crm_many` (one BEGIN and COMMIT, one status read
per location), answers each route, then hands the batch's jobs to the queue. Under a burst the batches grow
by themselves; one delivery alone is stored at once.

The route waits for its answer at most its deadline (``web/webhooks.py``). A delivery given up on before a
writer took it is not stored (its route has answered 429, and HighLevel retries it); one given up on while
being stored may still commit, which is harmless (the retry is then "duplicate").

Writer threads start when deliveries arrive and stop after :data:`IDLE_SECONDS` without any: one for SQLite
(one writer at a time), :data:`POSTGRESQL_WRITERS` for PostgreSQL (a slow commit does not hold the others).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import structlog

from qbconnect.crm.events import CrmEvent
from qbconnect.db.session import sqlite_file
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import intake

log = structlog.get_logger(__name__)

MAX_BATCH = 64
IDLE_SECONDS = 2.0
POSTGRESQL_WRITERS = 4


@dataclass(frozen=True)
class _Delivery:
    event: CrmEvent
    body_text: str
    answer: Future[str]


class IntakeWriter:
    """Stores HighLevel deliveries for one web runtime, batching those that arrive together."""

    def __init__(self, runtime: Runtime, *, writers: int | None = None, max_batch: int = MAX_BATCH) -> None:
        self._runtime = runtime
        self._max_writers = writers or (1 if sqlite_file(runtime.settings.database_url) else POSTGRESQL_WRITERS)
        self._max_batch = max_batch
        self._waiting: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._writers: list[threading.Thread] = []
        self._unfinished = 0  # submitted, and not yet stored (or dropped) with its jobs handed off

    def submit(self, event: CrmEvent, body_text: str) -> Future[str]:
        """Queue one delivery; the future gives its outcome, or raises what kept it out of storage."""
        answer: Future[str] = Future()
        with self._lock:
            self._unfinished += 1
            self._waiting.put(_Delivery(event, body_text, answer))
            self._writers = [writer for writer in self._writers if writer.is_alive()]
            if len(self._writers) < self._max_writers:
                writer = threading.Thread(target=self._run, name="qbconnect-intake-writer", daemon=True)
                self._writers.append(writer)
                writer.start()
        return answer

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every delivery queued so far is stored and its jobs handed
        to the queue; True when that happened (used when the service stops)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._unfinished == 0:
                    return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while True:
            try:
                first = self._waiting.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._waiting.empty():
                        if threading.current_thread() in self._writers:
                            self._writers.remove(threading.current_thread())
                        return
                continue
            batch = self._batch(first)
            try:
                self._store([d for d in batch if d.answer.set_running_or_notify_cancel()])
            except Exception:  # a defect: logged, and the writer goes on with the next batch
                log.exception("intake.writer_failed", events=len(batch))
            finally:
                with self._lock:
                    self._unfinished -= len(batch)

    def _batch(self, first: _Delivery) -> list[_Delivery]:
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                batch.append(self._waiting.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[_Delivery]) -> None:
        """Store the deliveries still waited for (one whose route stopped waiting, and answered 429, is left
        to HighLevel's retry), answer each, then hand their jobs to the queue."""
        if not batch:
            return
        try:
            stored = intake.intake_crm_many(self._runtime, [(d.event, d.body_text) for d in batch])
        except Exception as exc:  # intake_crm_many answers per delivery; this is a defect, kept per delivery too
            log.exception("intake.writer_failed", events=len(batch))
            for delivery in batch:
                delivery.answer.set_exception(exc)
            return
        for delivery, result in zip(batch, stored.results, strict=True):
            if isinstance(result, Exception):
                delivery.answer.set_exception(result)
            else:
                delivery.answer.set_result(result)
        intake.hand_off(stored.dispatches)

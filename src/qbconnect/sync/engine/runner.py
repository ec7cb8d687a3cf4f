"""Runs one job: lease it, call its handler, record the outcome (done, retry, failed, skipped)."""

from __future__ import annotations

import os
import random
import socket
import threading

import structlog

from qbconnect.errors import ErrorCategory, SyncError
from qbconnect.runtime import Runtime
from qbconnect.sync import jobs, registry
from qbconnect.sync.context import JobContext, Result

log = structlog.get_logger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class JobRunner:
    def __init__(self, runtime: Runtime, *, rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.rng = rng or random.Random()

    def run(self, job_id: int) -> str | None:
        """Run the job if it is due and free. Returns the state it ended in, or None if not claimed."""
        settings = self.runtime.settings
        owner = f"{worker_identity()}:{job_id}"
        with self.runtime.sessions.begin() as session:
            job = jobs.claim(session, job_id, owner, settings.job_lease_seconds)
            if job is None:
                return None
            spec_kind, location_id, entity_id = job.kind, job.location_id, job.entity_id
            attempt, reason = job.attempts, job.reason
        bound = log.bind(job_id=job_id, location_id=location_id, kind=spec_kind, entity_id=entity_id, attempt=attempt)
        session = self.runtime.sessions()
        ctx = JobContext(
            runtime=self.runtime,
            session=session,
            job_id=job_id,
            location_id=location_id,
            kind=spec_kind,
            entity_id=entity_id,
            reason=reason,
            attempt=attempt,
            owner=owner,
            log=bound,
        )
        try:
            try:
                result = registry.get(spec_kind).handler(ctx)
                outcome = self._success(result)
            except jobs.LeaseLostError:
                session.rollback()
                bound.warning("job.lease_lost")
                return None
            except SyncError as exc:
                session.rollback()
                outcome = self._failure(exc, attempt)
            except Exception as exc:  # a bug or an unexpected reply: retry, then fail with the reason
                session.rollback()
                bound.exception("job.crashed")
                outcome = self._failure(
                    SyncError(f"Unexpected error: {type(exc).__name__}: {exc}", category=ErrorCategory.TRANSIENT),
                    attempt,
                )
            try:
                jobs.finish(session, job_id, owner, outcome)
                session.commit()
            except jobs.LeaseLostError:
                session.rollback()
                bound.warning("job.lease_lost_at_finish")
                return None
        finally:
            session.close()
        bound.info("job.finished", state=outcome.state, error=outcome.error, category=outcome.error_category)
        return outcome.state

    @staticmethod
    def _success(result: Result) -> jobs.Finish:
        return jobs.Finish(
            state="skipped" if result.skipped else "done",
            summary=result.summary,
            crm_id=result.crm_id,
            qbo_id=result.qbo_id,
        )

    def _failure(self, exc: SyncError, attempt: int) -> jobs.Finish:
        settings = self.runtime.settings
        retryable = exc.category in (ErrorCategory.TRANSIENT, ErrorCategory.CONFLICT)
        if retryable and attempt < settings.job_max_attempts:
            delay = jobs.backoff_delay(
                attempt, base=settings.job_backoff_base, cap=settings.job_backoff_max, rng=self.rng
            )
            if exc.retry_after:
                delay = max(delay, exc.retry_after)
            return jobs.Finish(
                state="retry",
                error=exc.message,
                error_category=exc.category.value,
                retry_in=delay,
                summary=f"Will try again in {delay:.0f}s (attempt {attempt} of {settings.job_max_attempts})",
            )
        message = exc.message
        if retryable:
            message = f"{message} (gave up after {attempt} attempts)"
        return jobs.Finish(state="failed", error=message, error_category=exc.category.value)

"""Runs one job: lease it, call its handler, record the outcome (done, retry, failed, skipped).

The runner owns the job's session: it commits the handler's records with the outcome (a result or a sync
error), or rolls back what was recorded since the last platform call when the handler crashed or the lease
was lost (context.py)."""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.errors import ErrorCategory, SyncError
from qbconnect.qbo.client import ReadBudgetExhausted
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs, registry
from qbconnect.sync.engine.context import JobContext, Result

log = structlog.get_logger(__name__)


def process_identity() -> str:
    """The prefix of every lease this process takes (``host:pid:``): what it hands back when it stops."""
    return f"{socket.gethostname()}:{os.getpid()}:"


def worker_identity() -> str:
    return f"{process_identity()}{threading.get_ident()}"


def lease_owner(job_id: int) -> str:
    return f"{worker_identity()}:{job_id}"


@dataclass(frozen=True)
class Claimed:
    job_id: int
    kind: str
    location_id: str
    entity_id: str
    attempt: int
    reason: str | None
    owner: str


def _claimed(job: jobs.Lease, owner: str) -> Claimed:
    return Claimed(job.id, job.kind, job.location_id, job.entity_id, job.attempts, job.reason, owner)


class JobRunner:
    def __init__(self, runtime: Runtime, *, rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.rng = rng or random.Random()
        self.served: dict[str, float] = {}  # location -> when this runner last took one of its jobs (monotonic)
        self.last_location: str | None = None

    def run(self, job_id: int) -> str | None:
        """Run this job if it is due and free. Returns the state it ended in, or None if not claimed."""
        owner = lease_owner(job_id)
        with self.runtime.sessions.begin() as session:
            job = jobs.lease(session, job_id, owner, self.runtime.settings.job_lease_seconds)
            claimed = None if job is None else _claimed(job, owner)
        return None if claimed is None else self._execute(claimed)

    def run_next(self) -> str | None:
        """Run the next due job, taken fairly between locations (``jobs.claim_next``): what one queue slot
        does. Returns the state it ended in, or None when nothing was due."""
        with self.runtime.sessions.begin() as session:
            lease = self.runtime.settings.job_lease_seconds
            job = jobs.claim_next(session, lease_owner, lease, served=self.served)
            claimed = None if job is None else _claimed(job, lease_owner(job.id))
        if claimed is None:
            return None
        self.served[claimed.location_id] = time.monotonic()
        self.last_location = claimed.location_id
        return self._execute(claimed)

    def _execute(self, claimed: Claimed) -> str | None:
        job_id, owner = claimed.job_id, claimed.owner
        spec_kind, location_id, entity_id = claimed.kind, claimed.location_id, claimed.entity_id
        attempt, reason = claimed.attempt, claimed.reason
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
        started_at, clock = utcnow(), time.monotonic()
        try:
            try:
                result = registry.get(spec_kind).handler(ctx)
                outcome = self._success(result)
            except jobs.LeaseLostError:
                session.rollback()
                bound.warning("job.lease_lost")
                return None
            except ReadBudgetExhausted as exc:  # a non-essential QuickBooks read refused: skipped, with why
                outcome = self._success(Result(exc.message, skipped=True))
            except SyncError as exc:  # a failure the sync understood: what the handler recorded stays
                outcome = self._failure(exc, attempt)
            except Exception as exc:  # a bug or an unexpected reply: retry, then fail with the reason
                session.rollback()
                bound.exception("job.crashed")
                outcome = self._failure(
                    SyncError(f"Unexpected error: {type(exc).__name__}: {exc}", category=ErrorCategory.TRANSIENT),
                    attempt,
                )
            outcome = replace(
                outcome,
                details={**ctx.readable, **outcome.details},  # what the handler described, even if it failed
                attempt=jobs.AttemptRecord(
                    started_at=started_at,
                    duration_ms=int((time.monotonic() - clock) * 1000),
                    request_summary=request_summary(ctx),
                ),
            )
            try:
                self._finish(session, job_id, owner, outcome)
            except jobs.LeaseLostError:
                session.rollback()
                bound.warning("job.lease_lost_at_finish")
                return None
        finally:
            session.close()
        bound.info("job.finished", state=outcome.state, error=outcome.error, category=outcome.error_category)
        return outcome.state

    @staticmethod
    def _finish(session: Session, job_id: int, owner: str, outcome: jobs.Finish) -> None:
        """Commit the outcome with what the handler recorded; if those records cannot be stored (the failure
        came from storage itself), record the outcome alone."""
        try:
            jobs.finish(session, job_id, owner, outcome)
            session.commit()
        except SQLAlchemyError:
            session.rollback()
            jobs.finish(session, job_id, owner, outcome)
            session.commit()

    @staticmethod
    def _success(result: Result) -> jobs.Finish:
        return jobs.Finish(
            state="skipped" if result.skipped else "done",
            summary=result.summary,
            crm_id=result.crm_id,
            qbo_id=result.qbo_id,
            details=result.details(),
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
                **platform_answer(exc),
            )
        message = exc.message
        if retryable:
            message = f"{message} (gave up after {attempt} attempts)"
        return jobs.Finish(state="failed", error=message, error_category=exc.category.value, **platform_answer(exc))


_TRACE = re.compile(r"traceId=([\w.:-]+)")
_HTTP_CODE = re.compile(r"^http_(\d{3})$")


def platform_answer(exc: SyncError) -> dict[str, Any]:
    """The platform's answer to keep with the attempt: HTTP status, fault code, intuit_tid or CRM trace id."""
    status = getattr(exc, "status", None)
    tid = getattr(exc, "intuit_tid", None)
    code = exc.code
    if code and status is None and (match := _HTTP_CODE.match(code)):
        status = int(match.group(1))
    if tid is None and exc.detail and (found := _TRACE.search(exc.detail)):
        tid = found.group(1)
    return {
        "fault_code": code,
        "intuit_tid": tid if isinstance(tid, str) else None,
        "http_status": status if isinstance(status, int) else None,
    }


def request_summary(ctx: JobContext) -> str:
    """What this run asked for, in words: the kind, the record, why, and how many platform requests it made.
    Never bodies, tokens or personal data."""
    title = registry.HANDLERS[ctx.kind].title if ctx.kind in registry.HANDLERS else ctx.kind
    parts = [f"{title} {ctx.entity_id}" if ctx.entity_id != "all" else title]
    if ctx.reason:
        parts.append(f"because: {ctx.reason}")
    calls = ", ".join(f"{n} {platform} request{'s' if n != 1 else ''}" for platform, n in ctx.calls.items() if n)
    parts.append(calls or "no platform requests")
    return " · ".join(parts)

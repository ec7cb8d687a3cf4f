"""The job engine on SQLite and on PostgreSQL: coalescing, reruns, backoff, dead letter, rollback."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

import tests.support.probe_handlers  # noqa: F401
from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, ActivityAttempt, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.runner import JobRunner


def _job_count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(SyncJob)) or 0)


def test_hundred_enqueues_of_one_entity_coalesce_into_one_run(runtime: Runtime, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PROBE_DIR", str(tmp_path))
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta: dispatched.append(job_id))
    for _ in range(100):
        with runtime.sessions.begin() as session:
            jobs.enqueue(session, "loc1", "probe", "inv-1", "InvoiceUpdate webhook")
    assert _job_count(runtime) == 1
    assert len(set(dispatched)) == 1
    runner = JobRunner(runtime)
    for job_id in dispatched:
        runner.run(job_id)
    starts = [line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("start")]
    assert len(starts) == 1


def test_event_during_a_run_leaves_exactly_one_more_pending_run(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "probe", "inv-2", "InvoiceSent webhook")
    with runtime.sessions.begin() as session:
        assert jobs.claim(session, job_id, "w1", 60) is not None
    for _ in range(5):
        with runtime.sessions.begin() as session:
            assert jobs.enqueue(session, "loc1", "probe", "inv-2", "InvoiceUpdate webhook") == job_id
    with runtime.sessions.begin() as session:
        jobs.finish(session, job_id, "w1", jobs.Finish(state="done", summary="ok"))
    with runtime.sessions() as session:
        rows = session.execute(select(SyncJob).order_by(SyncJob.id)).scalars().all()
    assert [(r.state, r.active_key is not None) for r in rows] == [("done", False), ("pending", True)]


def test_enqueue_into_a_running_job_flags_it_in_the_same_session_and_leaves_a_pending_one_as_it_was(
    runtime: Runtime,
) -> None:
    with runtime.sessions.begin() as session:
        running_id = jobs.enqueue(session, "loc1", "probe", "inv-r", "InvoiceSent webhook")
        pending_id = jobs.enqueue(session, "loc1", "probe", "inv-p", "InvoiceSent webhook")
    with runtime.sessions.begin() as session:
        running = jobs.claim(session, running_id, "w1", 60)
        assert running is not None and running.rerun is False  # loaded in this session
        assert jobs.enqueue(session, "loc1", "probe", "inv-r", "InvoicePaid webhook") == running_id
        assert jobs.enqueue(session, "loc1", "probe", "inv-p", "InvoicePaid webhook") == pending_id
        assert (running.rerun, running.reason) == (True, "InvoicePaid webhook")  # not a stale copy
    with runtime.sessions() as session:
        pending = session.get(SyncJob, pending_id)
        assert pending is not None
        assert (pending.state, pending.rerun, pending.reason) == ("pending", False, "InvoiceSent webhook")
        activities = session.scalars(select(Activity.job_id).order_by(Activity.job_id)).all()
    assert activities == [running_id, pending_id]  # one sync-log row per job, none for a coalesced ask


def test_a_claimed_job_cannot_be_claimed_twice(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "probe", "x", "test")
    with runtime.sessions.begin() as session:
        assert jobs.claim(session, job_id, "w1", 60) is not None
    with runtime.sessions.begin() as session:
        assert jobs.claim(session, job_id, "w2", 60) is None


def test_enqueue_inside_a_rolled_back_transaction_leaves_no_job(runtime: Runtime) -> None:
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta: dispatched.append(job_id))
    with pytest.raises(RuntimeError), runtime.sessions.begin() as session:
        jobs.enqueue(session, "loc1", "probe", "inv-3", "test")
        raise RuntimeError("request failed after enqueue")
    assert _job_count(runtime) == 0
    assert dispatched == []


def test_backoff_schedule_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (10, 900.0), (30, 900.0)]:
        delays = [jobs.backoff_delay(attempt, base=2.0, cap=900.0, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays}) > 1  # jittered


def test_transient_failures_retry_with_backoff_then_dead_letter(runtime: Runtime) -> None:
    runtime.settings.job_max_attempts = 3
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "flaky", "inv-4", "test")
    runner = JobRunner(runtime, rng=random.Random(1))
    states = []
    for attempt in range(1, 4):
        before = utcnow()
        states.append(runner.run(job_id))
        with runtime.sessions.begin() as session:
            job = session.get(SyncJob, job_id)
            assert job is not None and job.attempts == attempt
            if job.state == "pending":
                ceiling = 2.0 * 2 ** (attempt - 1)
                assert before + timedelta(seconds=ceiling / 2) <= job.run_after
                assert job.run_after <= utcnow() + timedelta(seconds=ceiling)
                job.run_after = utcnow()  # make it due now instead of sleeping
    assert states == ["retry", "retry", "failed"]
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        activity = session.execute(select(Activity).where(Activity.job_id == job_id)).scalar_one()
    assert job is not None and job.state == "failed" and job.active_key is None
    assert "gave up after 3 attempts" in (job.last_error or "")
    assert activity.status == "failed" and activity.error_category == "transient"
    assert activity.error_message and "QuickBooks is busy" in activity.error_message


def test_permanent_failure_fails_at_once_and_retry_button_requeues(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "broken", "inv-5", "test")
    assert JobRunner(runtime).run(job_id) == "failed"
    with runtime.sessions() as session:
        activity = session.execute(select(Activity).where(Activity.job_id == job_id)).scalar_one()
    assert activity.error_message == "The invoice has no lines"
    with runtime.sessions.begin() as session:
        new_job = jobs.retry_activity(session, activity.id)
    assert new_job is not None and new_job != job_id
    with runtime.sessions.begin() as session:
        assert jobs.retry_activity(session, activity.id) is None  # already retried


def test_sweeper_requeues_expired_leases_and_lost_tasks(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        crashed = jobs.enqueue(session, "loc1", "probe", "a", "test")
        lost = jobs.enqueue(session, "loc1", "probe", "b", "test")
    with runtime.sessions.begin() as session:
        assert jobs.claim(session, crashed, "dead-worker", 0.001) is not None
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta: dispatched.append(job_id))
    later = utcnow() + timedelta(seconds=90)
    with runtime.sessions.begin() as session:
        requeued = jobs.sweep(session, now=later, max_attempts=5)
    assert sorted(requeued) == sorted([crashed, lost])
    assert sorted(dispatched) == sorted([crashed, lost])
    with runtime.sessions.begin() as session:  # a lost job is re-sent once per grace period, not every sweep
        assert jobs.sweep(session, now=later + timedelta(seconds=15), max_attempts=5) == []
    with runtime.sessions() as session:
        job = session.get(SyncJob, crashed)
    assert job is not None and job.state == "pending" and job.lease_owner is None


def test_sweep_resends_only_the_due_jobs_beyond_the_slots_waiting_in_the_queue(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        backlog = [jobs.enqueue(session, "loc1", "probe", f"e-{n}", "test") for n in range(5)]
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta: dispatched.append(job_id))
    later = utcnow() + timedelta(seconds=90)
    with runtime.sessions.begin() as session:  # five due jobs, three slots waiting: two slots were lost
        requeued = jobs.sweep(session, now=later, max_attempts=5, waiting_slots=3)
    assert len(requeued) == 2 and set(requeued) <= set(backlog)
    assert sorted(dispatched) == sorted(requeued)
    with runtime.sessions.begin() as session:  # a slot for every due job: nothing re-sent
        assert jobs.sweep(session, now=later + timedelta(seconds=90), max_attempts=5, waiting_slots=5) == []


def test_finish_records_the_outcome_on_the_sync_log_row_keeping_what_earlier_attempts_said(runtime: Runtime) -> None:
    """The outcome is written without loading the row: what a run says is set, what it leaves out (ids,
    summary, readable fields) keeps what an earlier attempt of the same job recorded."""
    started = utcnow()
    with runtime.sessions.begin() as session:
        failed_id = jobs.enqueue(session, "loc1", "probe", "inv-9", "InvoiceSent webhook")
    with runtime.sessions.begin() as session:
        assert jobs.claim(session, failed_id, "w0", 60) is not None
        jobs.finish(session, failed_id, "w0", jobs.Finish(state="failed", error="no", error_category="data"))
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "probe", "inv-9", "InvoiceUpdate webhook")
    with runtime.sessions.begin() as session:
        leased = jobs.lease(session, job_id, "w1", 60)
        assert leased is not None and (leased.id, leased.attempts, leased.entity_id) == (job_id, 1, "inv-9")
        retry = jobs.Finish(
            state="retry",
            error="QuickBooks is busy",
            error_category="transient",
            retry_in=30,
            crm_id="crm-9",
            details={"label": "Invoice #9", "amount": Decimal("12.50")},
            http_status=503,
            attempt=jobs.AttemptRecord(started_at=started, duration_ms=7, request_summary="Invoice inv-9"),
        )
        jobs.finish(session, job_id, "w1", retry)
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        assert job is not None and job.activity_id is not None
        assert (job.state, job.lease_owner, job.last_error, job.active_key is not None) == (
            "pending",
            None,
            "QuickBooks is busy",
            True,
        )
        assert job.run_after > utcnow() + timedelta(seconds=20)
        row = session.get(Activity, job.activity_id)
        assert row is not None
        assert (row.status, row.attempts, row.crm_id, row.label, row.amount) == (
            "retrying",
            1,
            "crm-9",
            "Invoice #9",
            Decimal("12.50"),
        )
    with runtime.sessions.begin() as session:
        session.execute(update(SyncJob).where(SyncJob.id == job_id).values(run_after=utcnow()))
    with runtime.sessions.begin() as session:
        assert jobs.lease(session, job_id, "w2", 60) is not None
        done = jobs.Finish(
            state="done",
            summary="Created QuickBooks invoice 19",
            qbo_id="19",
            attempt=jobs.AttemptRecord(started_at=started, duration_ms=5, request_summary="Invoice inv-9"),
        )
        jobs.finish(session, job_id, "w2", done)
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        assert job is not None and job.activity_id is not None
        assert (job.state, job.active_key, job.finished_at is not None, job.last_error) == ("done", None, True, None)
        row = session.get(Activity, job.activity_id)
        assert row is not None
        assert (row.status, row.attempts, row.crm_id, row.qbo_id, row.label, row.amount, row.error_message) == (
            "done",
            2,
            "crm-9",  # kept from the first attempt
            "19",
            "Invoice #9",
            Decimal("12.50"),
            None,
        )
        assert row.summary == "Created QuickBooks invoice 19"
        attempts = session.execute(
            select(ActivityAttempt.attempt, ActivityAttempt.outcome, ActivityAttempt.http_status)
            .where(ActivityAttempt.activity_id == row.id)
            .order_by(ActivityAttempt.attempt)
        ).all()
        assert [tuple(a) for a in attempts] == [(1, "retry", 503), (2, "done", None)]
        earlier = session.execute(select(Activity).where(Activity.job_id == failed_id)).scalar_one()
        assert earlier.status == "failed" and earlier.resolved_at is not None  # the success closed it


def test_finish_by_a_worker_that_lost_the_lease_changes_nothing(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "probe", "inv-10", "InvoiceSent webhook")
    with runtime.sessions.begin() as session:
        assert jobs.lease(session, job_id, "w1", 60) is not None
    with runtime.sessions.begin() as session, pytest.raises(jobs.LeaseLostError):
        jobs.finish(session, job_id, "w2", jobs.Finish(state="done", summary="ok"))
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        assert job is not None and (job.state, job.lease_owner) == ("running", "w1")
        row = session.get(Activity, job.activity_id)
        assert row is not None and (row.status, row.summary) == ("running", None)

"""The sync log's data: attempts per run, readable fields from the Result, problems that close by themselves."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from qbconnect.db.models import Activity, ActivityAttempt
from qbconnect.runtime import Runtime
from qbconnect.services import activity_log
from qbconnect.services.activity_log import LogFilter
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.runner import JobRunner
from tests.support import sync_log_handlers as handlers

LOC = "loc-sl"


def _run(runtime: Runtime, entity: str) -> Activity:
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, LOC, handlers.KIND, entity, "InvoiceUpdate webhook")
    JobRunner(runtime).run(job_id)
    with runtime.sessions() as session:
        row = session.execute(select(Activity).where(Activity.job_id == job_id)).scalar_one()
        session.expunge(row)
        return row


def _retry(runtime: Runtime, activity_id: int) -> Activity:
    with runtime.sessions.begin() as session:
        job_id = jobs.retry_activity(session, activity_id)
    assert job_id is not None
    JobRunner(runtime).run(job_id)
    with runtime.sessions() as session:
        row = session.execute(select(Activity).where(Activity.job_id == job_id)).scalar_one()
        session.expunge(row)
        return row


def test_a_run_records_its_attempt_and_the_platform_answer(sqlite_runtime: Runtime) -> None:
    handlers.PLAN["1042"] = ["bad_payment_method"]
    row = _run(sqlite_runtime, "1042")
    assert row.status == "failed" and row.fault_code == "2500" and row.intuit_tid == "tid-1"
    with sqlite_runtime.sessions() as session:
        attempts = activity_log.attempts_of(session, row.id)
    assert len(attempts) == 1
    first = attempts[0]
    assert first.attempt == 1 and first.outcome == "failed" and first.http_status == 400
    assert first.fault_code == "2500" and first.intuit_tid == "tid-1" and first.duration_ms >= 0
    assert first.request_summary and "1042" in first.request_summary and "InvoiceUpdate" in first.request_summary
    assert "Bearer" not in first.request_summary
    assert first.started_at.tzinfo is not None


def test_readable_fields_come_from_the_result(sqlite_runtime: Runtime) -> None:
    row = _run(sqlite_runtime, "1043")
    assert row.status == "done"
    assert row.label == "Invoice #1043" and row.customer == "Kira Garcia" and row.amount == Decimal("885.00")
    assert activity_log.headline(row) == "Invoice #1043 · Kira Garcia · $885.00 → QuickBooks invoice 19"
    link = activity_log.qbo_link(row, "sandbox")
    assert link == "https://app.sandbox.qbo.intuit.com/app/invoice?txnId=19"
    assert activity_log.qbo_link(row, "production") == "https://app.qbo.intuit.com/app/invoice?txnId=19"


def test_a_problem_closes_when_a_later_run_of_the_same_record_succeeds(sqlite_runtime: Runtime) -> None:
    handlers.PLAN["1044"] = ["bad_payment_method", "bad_payment_method"]
    first = _run(sqlite_runtime, "1044")
    second = _retry(sqlite_runtime, first.id)
    assert second.status == "failed"
    with sqlite_runtime.sessions() as session:
        problems = activity_log.open_problems(session, LOC)
        assert [p.id for p in problems] == [second.id]  # one per record
        assert activity_log.health(session, LOC)["state"] == "attention"
        assert activity_log.health(session, LOC)["text"] == "1 item needs your attention"
    third = _retry(sqlite_runtime, second.id)
    assert third.status == "done"
    with sqlite_runtime.sessions() as session:
        assert activity_log.open_problems(session, LOC) == []
        closed = session.get(Activity, second.id)
        assert closed is not None and closed.resolved_at is not None
        assert activity_log.health(session, LOC)["state"] == "in_step"
        assert activity_log.health(session, LOC)["text"].startswith("All in step · last sync ")
        needs = activity_log.page_of(session, LOC, LogFilter(status="needs_attention"))
        assert needs.total == 0


def test_health_counts_waiting_work(sqlite_runtime: Runtime) -> None:
    with sqlite_runtime.sessions.begin() as session:
        for n in range(3):
            jobs.enqueue(session, LOC, handlers.KIND, f"w{n}", "webhook")
    with sqlite_runtime.sessions() as session:
        summary = activity_log.health(session, LOC)
    assert summary["state"] == "catching_up" and summary["waiting"] == 3
    assert summary["text"] == "Catching up (3 waiting)"


def test_attempts_of_a_retried_job_are_numbered(sqlite_runtime: Runtime) -> None:
    handlers.PLAN["1045"] = ["closed"]
    row = _run(sqlite_runtime, "1045")
    with sqlite_runtime.sessions() as session:
        assert session.scalar(select(ActivityAttempt.attempt).where(ActivityAttempt.activity_id == row.id)) == 1
    assert row.fault_code == "6210"

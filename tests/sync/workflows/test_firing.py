"""Firing a trigger through the engine against the CRM emulator: exactly once under worker restarts and
crashes, retried when HighLevel refused or was never reached, ended when the workflow is gone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from qbconnect.clock import utcnow
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import SyncJob, WorkflowDelivery, WorkflowSubscription
from qbconnect.sync.engine import clients, jobs
from qbconnect.sync.engine.runner import JobRunner
from qbconnect.sync.workflows import payloads, store
from qbconnect.sync.workflows.catalogue import PAYMENT_RECEIVED
from qbconnect.sync.workflows.handler import RETRY_REASON
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(clients, "qbo_sleep", lambda seconds: None)
    yield


def record_payment_event(c: Connected, payment_id: str = "212") -> tuple[int, int]:
    """A workflow using "payment received" and one payment event: (delivery id, job id)."""
    c.stack.crm.workflows.start_workflow(c.location_id, PAYMENT_RECEIVED)
    facts = {
        "customer": payloads.customer_facts("58", "sandbox", name="Kira Garcia", email="kira@example.com"),
        "payment": payloads.payment_facts({"Id": payment_id, "TotalAmt": "10"}, "sandbox", []),
        "company": {"realmId": c.realm_id, "name": "Acme"},
    }
    with c.stack.runtime.sessions.begin() as session:
        (delivery_id,) = store.record_event(
            session,
            c.location_id,
            PAYMENT_RECEIVED,
            f"payment_received:{c.realm_id}:{payment_id}",
            realm_id=c.realm_id,
            customer_id="58",
            facts=facts,
            reason="test",
        )
        job_id = session.execute(
            select(SyncJob.id).where(SyncJob.kind == store.WORKFLOW_TRIGGER, SyncJob.entity_id == str(delivery_id))
        ).scalar_one()
    return delivery_id, job_id


def run(c: Connected, job_id: int) -> str | None:
    with c.stack.runtime.sessions.begin() as session:
        session.execute(
            update(SyncJob).where(SyncJob.id == job_id, SyncJob.state == "pending").values(run_after=utcnow())
        )
    return JobRunner(c.stack.runtime).run(job_id)


def delivery_state(c: Connected, delivery_id: int) -> str:
    with c.stack.runtime.sessions() as session:
        row = session.get(WorkflowDelivery, delivery_id)
        assert row is not None
        return row.state


def sent(c: Connected) -> int:
    return len(c.stack.crm.workflows.received(location_id=c.location_id))


def test_recording_the_same_event_again_delivers_nothing_more(connected: Connected) -> None:  # noqa: F811
    c = connected
    delivery_id, job_id = record_payment_event(c)
    with c.stack.runtime.sessions.begin() as session:
        again = store.record_event(
            session, c.location_id, PAYMENT_RECEIVED, f"payment_received:{c.realm_id}:212",
            realm_id=c.realm_id, customer_id="58", facts={}, reason="again",
        )  # fmt: skip
    assert again == []
    assert run(c, job_id) == "done"
    assert sent(c) == 1 and delivery_state(c, delivery_id) == "sent"
    jobs_again = c.stack.drain()
    assert jobs_again == 0 and sent(c) == 1


def test_a_worker_that_dies_after_highlevel_answered_never_sends_twice(
    connected: Connected,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = connected
    delivery_id, job_id = record_payment_event(c)
    original = CrmClient.fire_workflow_trigger

    def answered_then_died(self: CrmClient, target_url: str, payload: Any) -> dict[str, Any]:
        original(self, target_url, payload)
        raise RuntimeError("worker killed before it could record the answer")

    monkeypatch.setattr(CrmClient, "fire_workflow_trigger", answered_then_died)
    assert run(c, job_id) == "retry"  # the crash: what followed the call is rolled back, the claim is not
    monkeypatch.setattr(CrmClient, "fire_workflow_trigger", original)
    assert delivery_state(c, delivery_id) == "sending"
    assert run(c, job_id) == "failed"  # the next run does not send it again
    assert sent(c) == 1 and delivery_state(c, delivery_id) == "unknown"

    with c.stack.runtime.sessions.begin() as session:  # the sync log's Retry: a person decides to send it
        job = session.get(SyncJob, job_id)
        assert job is not None and job.activity_id is not None
        again = jobs.retry_activity(session, job.activity_id)
    assert again is not None
    with c.stack.runtime.sessions() as session:
        retry_job = session.get(SyncJob, again)
        assert retry_job is not None and retry_job.reason == RETRY_REASON
    assert run(c, again) == "done"
    assert sent(c) == 2 and delivery_state(c, delivery_id) == "sent"


def test_a_worker_that_died_before_the_call_is_replaced_and_sends_once(connected: Connected) -> None:  # noqa: F811
    c = connected
    delivery_id, job_id = record_payment_event(c)
    with c.stack.runtime.sessions.begin() as session:  # a worker took the job and was killed (SIGKILL)
        assert jobs.claim(session, job_id, "dead-worker", lease_seconds=1) is not None
        session.execute(
            update(SyncJob).where(SyncJob.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=5))
        )
    with c.stack.runtime.sessions.begin() as session:
        assert job_id in jobs.sweep(session, max_attempts=8)
    assert run(c, job_id) == "done"
    assert run(c, job_id) is None  # a duplicate queue task finds nothing to claim
    assert sent(c) == 1 and delivery_state(c, delivery_id) == "sent"


def test_refused_with_429_is_retried_until_sent_once(connected: Connected, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    c = connected
    # A HighLevel whose burst window is 0.2 s (not 10 s): each refusal still holds the location's budget for
    # the advertised window and fills its log (the next request waits in the limiter), only not for 11 s.
    c.stack.crm.limiter.window_seconds = 0.2
    limiter = c.stack.runtime.limiter
    penalize = limiter.penalize
    penalties: list[float] = []

    def recorded(budget: Any, key: str, seconds: float) -> None:
        penalties.append(seconds)
        penalize(budget, key, seconds)

    monkeypatch.setattr(limiter, "penalize", recorded)
    delivery_id, job_id = record_payment_event(c)
    c.stack.crm.workflows.fail_next = [429] * 4  # more than the client's own retries
    assert run(c, job_id) == "retry"
    assert delivery_state(c, delivery_id) == "pending" and sent(c) == 0
    assert run(c, job_id) == "done"
    assert sent(c) == 1
    assert penalties == [0.2] * 4  # every refusal held the budget for the window HighLevel advertised


def test_a_5xx_answer_is_unconfirmed_and_not_repeated(connected: Connected) -> None:  # noqa: F811
    c = connected
    delivery_id, job_id = record_payment_event(c)
    c.stack.crm.workflows.fail_next = [502]
    assert run(c, job_id) == "failed"
    assert delivery_state(c, delivery_id) == "unknown"
    c.stack.drain()
    assert sent(c) == 0


def test_a_workflow_highlevel_no_longer_knows_ends_the_subscription(connected: Connected) -> None:  # noqa: F811
    c = connected
    delivery_id, job_id = record_payment_event(c)
    for use in c.stack.crm.workflows.uses.values():
        use.active = False  # removed in HighLevel without the app being told
    assert run(c, job_id) == "skipped"
    assert delivery_state(c, delivery_id) == "skipped"
    with c.stack.runtime.sessions() as session:
        assert [s.active for s in session.execute(select(WorkflowSubscription)).scalars()] == [False]

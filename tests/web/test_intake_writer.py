"""The intake writer (``web/intake_writer.py``): HighLevel deliveries that arrive while a batch is being
stored are stored together in the next one; a delivery its route gave up on is not stored; stopping the
service waits for the jobs of answered deliveries to reach the queue."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError
from datetime import datetime

import pytest

from qbconnect.crm.events import CrmEvent, parse_event
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import intake, jobs
from qbconnect.web.intake_writer import IntakeWriter
from tests.support.webhooks import connect, counts, crm_invoice


def _invoice(webhook_id: str, invoice_id: str) -> tuple[CrmEvent, str]:
    body = crm_invoice("loc-w", webhook_id, _id=invoice_id)
    return parse_event(body), body.decode()


class _HeldFirstBatch:
    """Wraps intake_crm_many: the first batch waits until released; records each batch's event ids."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, runtime: Runtime, deliveries: Sequence[tuple[CrmEvent, str]]) -> intake.BatchIntake:
        self.batches.append([event.event_id for event, _ in deliveries])
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        return _real_many(runtime, deliveries)


_real_many = intake.intake_crm_many


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> _HeldFirstBatch:
    wrapper = _HeldFirstBatch()
    monkeypatch.setattr(intake, "intake_crm_many", wrapper)
    return wrapper


def test_deliveries_arriving_during_a_batch_are_stored_together(runtime: Runtime, held: _HeldFirstBatch) -> None:
    connect(runtime, "loc-w", "9301")
    writer = IntakeWriter(runtime, writers=1)
    first = writer.submit(*_invoice("wh-0", "inv-0"))
    assert held.started.wait(10)
    later = [writer.submit(*_invoice(f"wh-{n}", f"inv-{n}")) for n in range(1, 6)]
    held.release.set()
    assert first.result(10) == "queued"
    assert [answer.result(10) for answer in later] == ["queued"] * 5
    assert held.batches == [["wh-0"], ["wh-1", "wh-2", "wh-3", "wh-4", "wh-5"]]
    assert counts(runtime) == (6, 6)


def test_a_delivery_given_up_on_before_it_is_stored_is_not_stored(runtime: Runtime, held: _HeldFirstBatch) -> None:
    connect(runtime, "loc-w", "9301")
    writer = IntakeWriter(runtime, writers=1)
    writer.submit(*_invoice("wh-0", "inv-0"))
    assert held.started.wait(10)
    abandoned = writer.submit(*_invoice("wh-1", "inv-1"))
    kept = writer.submit(*_invoice("wh-2", "inv-2"))
    assert abandoned.cancel()  # what the route's deadline does (it then answers 429)
    held.release.set()
    assert kept.result(10) == "queued"
    with pytest.raises(CancelledError):
        abandoned.result(0)
    assert held.batches == [["wh-0"], ["wh-2"]]
    assert writer.flush(10)
    assert counts(runtime) == (2, 2)


def test_each_delivery_gets_its_own_answer(runtime: Runtime) -> None:
    connect(runtime, "loc-w", "9301")
    writer = IntakeWriter(runtime, writers=1)
    poison = writer.submit(*_invoice("wh-poison", "x" * 500))
    good = writer.submit(*_invoice("wh-1", "inv-1"))
    with pytest.raises(intake.UnstorableEvent):
        poison.result(10)
    assert good.result(10) == "queued"


def test_flush_returns_once_the_jobs_are_handed_to_the_queue(runtime: Runtime) -> None:
    connect(runtime, "loc-w", "9301")
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta=None: dispatched.append(job_id))
    writer = IntakeWriter(runtime, writers=2)
    answers = [writer.submit(*_invoice(f"wh-{n}", f"inv-{n}")) for n in range(10)]
    assert writer.flush(10)
    assert all(answer.done() for answer in answers)
    assert len(dispatched) == 10


def test_a_failing_hand_off_leaves_the_answer_and_the_stored_job(runtime: Runtime) -> None:
    connect(runtime, "loc-w", "9301")

    def queue_down(job_id: int, eta: datetime | None = None) -> None:
        raise ConnectionError("queue unreachable")

    jobs.set_dispatcher(queue_down)
    writer = IntakeWriter(runtime, writers=1)
    assert writer.submit(*_invoice("wh-1", "inv-1")).result(10) == "queued"
    assert writer.flush(10)
    assert counts(runtime) == (1, 1)  # stored; the sweeper re-sends the lost hand-off


def test_a_defect_after_the_answers_does_not_stop_the_writer(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(runtime, "loc-w", "9301")

    def broken_hand_off(dispatches: dict[int, datetime | None]) -> None:
        raise RuntimeError("a defect in the hand-off")

    monkeypatch.setattr(intake, "hand_off", broken_hand_off)
    writer = IntakeWriter(runtime, writers=1)
    assert writer.submit(*_invoice("wh-1", "inv-1")).result(10) == "queued"
    assert writer.flush(10)
    assert writer.submit(*_invoice("wh-2", "inv-2")).result(10) == "queued"
    assert counts(runtime) == (2, 2)

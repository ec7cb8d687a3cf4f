"""Fair between tenants: work is taken round-robin across locations, the least busy location first, so one
location's backlog cannot hold up another's single job (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

import tests.support.probe_handlers  # noqa: F401  (registers the probe handlers)
from qbconnect.db.models import SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.runner import JobRunner


@pytest.fixture(autouse=True)
def _quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_SLEEP", "0")
    monkeypatch.delenv("PROBE_DIR", raising=False)


def _enqueue(runtime: Runtime, location_id: str, entities: list[str]) -> None:
    with runtime.sessions.begin() as session:
        for entity_id in entities:
            jobs.enqueue(session, location_id, "probe", entity_id, "test")


def _state(runtime: Runtime, location_id: str) -> list[str]:
    with runtime.sessions() as session:
        return list(session.execute(select(SyncJob.state).where(SyncJob.location_id == location_id)).scalars())


def test_fair_order_serves_the_least_busy_then_the_least_recently_served_location_first() -> None:
    due = ["loc-c", "loc-a", "loc-b", "loc-d"]
    assert jobs.fair_order(due, {}, {}) == ["loc-a", "loc-b", "loc-c", "loc-d"]
    served = {"loc-a": 30.0, "loc-b": 10.0, "loc-c": 20.0}  # loc-d never served: first
    assert jobs.fair_order(due, {}, served) == ["loc-d", "loc-b", "loc-c", "loc-a"]
    assert jobs.fair_order(due, {"loc-d": 3, "loc-b": 1}, served) == ["loc-c", "loc-a", "loc-b", "loc-d"]


def test_a_single_job_enqueued_after_a_200_job_backlog_runs_before_the_backlog_is_done(runtime: Runtime) -> None:
    _enqueue(runtime, "noisy", [f"inv-{n}" for n in range(200)])
    runner = JobRunner(runtime)
    served = []
    for _ in range(5):  # the backlog is being worked through
        assert runner.run_next() == "done"
        served.append(runner.last_location)
    _enqueue(runtime, "quiet", ["inv-1"])
    assert runner.run_next() == "done"
    served.append(runner.last_location)
    assert served == ["noisy"] * 5 + ["quiet"]  # its turn came with the very next slot
    assert _state(runtime, "quiet") == ["done"]
    noisy = _state(runtime, "noisy")
    assert noisy.count("done") == 5 and noisy.count("pending") == 195  # while the backlog still waits


def test_a_location_that_had_nothing_to_do_is_served_before_the_next_round(runtime: Runtime) -> None:
    for location_id in ("loc-a", "loc-b", "loc-c"):
        _enqueue(runtime, location_id, [f"e-{n}" for n in range(3)])
    _enqueue(runtime, "loc-z", ["first"])
    runner = JobRunner(runtime)
    served = []
    for _ in range(5):
        assert runner.run_next() == "done"
        served.append(runner.last_location)
    assert served == ["loc-a", "loc-b", "loc-c", "loc-z", "loc-a"]
    _enqueue(runtime, "loc-z", ["second"])  # mid-round: loc-z was served before b and c were
    while runner.run_next() is not None:
        served.append(runner.last_location)
    assert served[5:] == ["loc-b", "loc-c", "loc-z", "loc-a", "loc-b", "loc-c"]


def test_three_backlogs_are_served_in_turn(runtime: Runtime) -> None:
    for location_id in ("loc-a", "loc-b", "loc-c"):
        _enqueue(runtime, location_id, [f"e-{n}" for n in range(4)])
    runner = JobRunner(runtime)
    served = []
    while runner.run_next() is not None:
        served.append(runner.last_location)
    assert served == ["loc-a", "loc-b", "loc-c"] * 4


def test_a_location_with_jobs_running_elsewhere_waits_for_the_idle_ones(runtime: Runtime) -> None:
    _enqueue(runtime, "noisy", ["a", "b", "c"])
    with runtime.sessions.begin() as session:  # another worker is running one of noisy's jobs
        assert jobs.claim_next(session, lambda job_id: f"other-worker:{job_id}", 60) is not None
    _enqueue(runtime, "quiet", ["q"])
    runner = JobRunner(runtime)  # a fresh runner: no round-robin memory, "noisy" < "quiet" by name
    assert runner.run_next() == "done"
    assert runner.last_location == "quiet"


def test_jobs_not_yet_due_are_not_claimed(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        jobs.enqueue(session, "loc", "probe", "later", "test", delay=3600)
    assert JobRunner(runtime).run_next() is None
    assert _state(runtime, "loc") == ["pending"]


def test_concurrent_claimers_never_take_the_same_job(runtime: Runtime) -> None:
    _enqueue(runtime, "loc-a", [f"a-{n}" for n in range(20)])
    _enqueue(runtime, "loc-b", [f"b-{n}" for n in range(20)])
    taken: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            while True:
                with runtime.sessions.begin() as session:
                    job = jobs.claim_next(session, lambda job_id: f"{name}:{job_id}", 60)
                    if job is None:
                        return
                    with lock:
                        taken.append(job.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(taken) == 40 and len(set(taken)) == 40
    with runtime.sessions() as session:
        owners = session.execute(select(SyncJob.lease_owner).where(SyncJob.state == "running")).scalars().all()
    assert len(owners) == 40


def test_hand_back_returns_a_stopping_process_jobs_to_pending(runtime: Runtime) -> None:
    _enqueue(runtime, "loc", ["mine", "theirs"])
    dispatched: list[int] = []
    jobs.set_dispatcher(lambda job_id, eta: dispatched.append(job_id))
    with runtime.sessions.begin() as session:
        mine = jobs.claim_next(session, lambda job_id: f"host-1:42:7:{job_id}", 60)
        theirs = jobs.claim_next(session, lambda job_id: f"host-1:420:7:{job_id}", 60)
        assert mine is not None and theirs is not None
        mine_id, theirs_id = mine.id, theirs.id
    with runtime.sessions.begin() as session:
        assert jobs.hand_back(session, "host-1:42:") == [mine_id]
    assert dispatched == [mine_id]
    with runtime.sessions() as session:
        back = session.get(SyncJob, mine_id)
        other = session.get(SyncJob, theirs_id)
    assert back is not None and back.state == "pending" and back.lease_owner is None and back.attempts == 0
    assert other is not None and other.state == "running"

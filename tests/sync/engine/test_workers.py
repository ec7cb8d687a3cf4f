"""Real worker processes (Huey consumers) on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from qbconnect.db.models import SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.worker import Queue
from tests.conftest import TEST_SECRET

REPO = Path(__file__).resolve().parents[3]


def _start_worker(runtime: Runtime, probe_dir: Path, **env_overrides: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        QBCONNECT_DATABASE_URL=runtime.settings.database_url,
        QBCONNECT_QUEUE_URL=runtime.settings.resolved_queue_url,
        QBCONNECT_SECRET_KEY=TEST_SECRET,
        QBCONNECT_SWEEP_INTERVAL_SECONDS="0.5",
        PROBE_DIR=str(probe_dir),
        PYTHONPATH=str(REPO),
    )
    env.update(env_overrides)
    log = open(probe_dir / f"worker-{time.time_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_proc"], cwd=REPO, env=env, stdout=log, stderr=log
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_until_idle(runtime: Runtime, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.sessions() as session:
            active = session.execute(select(SyncJob).where(SyncJob.state.in_(("pending", "running")))).scalars().all()
        if not active:
            return
        time.sleep(0.2)
    raise AssertionError(f"jobs still active after {timeout}s: {[(j.id, j.state) for j in active]}")


def _intervals(probe_dir: Path) -> dict[str, list[tuple[int, int, int]]]:
    starts: dict[tuple[str, str, str], int] = {}
    result: dict[str, list[tuple[int, int, int]]] = {}
    for line in (probe_dir / "log").read_text().splitlines():
        what, entity, job_id, ts, pid, attempt = line.split()
        key = (entity, job_id, attempt)
        if what == "start":
            starts[key] = int(ts)
        else:
            result.setdefault(entity, []).append((starts[key], int(ts), int(pid)))
    return result


def test_two_workers_never_run_one_entity_at_the_same_time(
    runtime: Runtime, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    workers.extend(_start_worker(runtime, tmp_path, PROBE_SLEEP="0.15") for _ in range(2))
    queue = Queue(runtime)
    queue.install()
    for i in range(4):  # wait until both workers are up and taking work
        with runtime.sessions.begin() as session:
            jobs.enqueue(session, "loc1", "probe", f"warmup-{i}", "webhook")
    _wait_until_idle(runtime)
    for round_ in range(40):
        for entity in ("shared", f"other-{round_ % 5}"):
            with runtime.sessions.begin() as session:
                jobs.enqueue(session, "loc1", "probe", entity, "webhook")
        time.sleep(0.04)
    _wait_until_idle(runtime)
    intervals = _intervals(tmp_path)
    shared = sorted(intervals["shared"])
    assert len(shared) >= 2  # events kept arriving while it ran: it ran again, never concurrently
    for (_, end, _), (next_start, _, _) in itertools.pairwise(shared):
        assert end <= next_start, "two runs of the same entity overlapped"
    pids = {pid for runs in intervals.values() for _, _, pid in runs}
    assert len(pids) == 2  # both worker processes took work


def test_a_worker_killed_mid_job_is_recovered_and_the_job_completes(
    runtime: Runtime, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "hang-victim").write_text("")
    env = {"QBCONNECT_JOB_LEASE_SECONDS": "2"}
    first = _start_worker(runtime, tmp_path, **env)
    workers.append(first)
    Queue(runtime).install()
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, "loc1", "probe", "victim", "webhook")
    marker = tmp_path / "running-victim"
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    workers.append(_start_worker(runtime, tmp_path, **env))
    _wait_until_idle(runtime)
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
    assert job is not None and job.state == "done" and job.attempts == 2
    ends = [line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("end victim")]
    assert len(ends) == 1

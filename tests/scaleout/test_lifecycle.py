"""Graceful lifecycle of the real processes: SIGTERM finishes or hands back running jobs within a bounded time
(nothing lost, leases released), `qbconnect db upgrade` as a release step, and `--no-migrate` refusing an
unmigrated database with one line."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from qbconnect.cli import app
from qbconnect.db.migrate import upgrade
from qbconnect.db.models import SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sandbox.server import free_port
from qbconnect.sync.engine import jobs
from qbconnect.worker import Queue
from tests.support.processes import env_for, start, stop, wait_for


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _job(runtime: Runtime, job_id: int) -> SyncJob:
    with runtime.sessions() as session:
        job = session.get(SyncJob, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _enqueue(runtime: Runtime, entity_id: str) -> int:
    Queue(runtime).install()
    with runtime.sessions.begin() as session:
        return jobs.enqueue(session, "loc1", "probe", entity_id, "test")


def _started(workdir: Path, entity_id: str) -> bool:
    log = workdir / "log"
    return log.exists() and any(line.startswith(f"start {entity_id} ") for line in log.read_text().splitlines())


def _output(workdir: Path, prefix: str) -> str:
    return "".join(path.read_text() for path in sorted(workdir.glob(f"{prefix}-*.log")))


def test_sigterm_lets_a_running_job_finish(
    runtime: Runtime, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    env = env_for(
        runtime.settings.database_url,
        runtime.settings.resolved_queue_url,
        tmp_path,
        PROBE_SLEEP="1.5",
        QBCONNECT_SHUTDOWN_GRACE_SECONDS="20",
    )
    worker = start(["worker", "--no-migrate"], env, tmp_path)  # the database is migrated: it starts
    procs.append(worker)
    job_id = _enqueue(runtime, "finishing")
    wait_for(lambda: _started(tmp_path, "finishing"), "the job started")
    assert stop(worker, signal.SIGTERM) == 0
    job = _job(runtime, job_id)
    assert job.state == "done" and job.lease_owner is None
    assert "0 running job(s) handed back" in _output(tmp_path, "worker")


def test_sigterm_hands_back_a_job_that_outlasts_the_grace(
    runtime: Runtime, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "hang-stuck").write_text("")  # its first attempt sleeps 120 s
    env = env_for(
        runtime.settings.database_url,
        runtime.settings.resolved_queue_url,
        tmp_path,
        QBCONNECT_SHUTDOWN_GRACE_SECONDS="1",
        QBCONNECT_JOB_LEASE_SECONDS="600",  # so only the hand-back, not an expiry, can free it in time
    )
    first = start(["worker"], env, tmp_path)
    procs.append(first)
    job_id = _enqueue(runtime, "stuck")
    wait_for(lambda: (tmp_path / "running-stuck").exists(), "the job started")
    assert stop(first, signal.SIGTERM, timeout=30) == 0  # well before the job's 120 s: the grace bounds it
    job = _job(runtime, job_id)
    assert (job.state, job.lease_owner, job.lease_expires_at, job.attempts) == ("pending", None, None, 0)
    assert "1 running job(s) handed back" in _output(tmp_path, "worker")
    (tmp_path / "hang-stuck").unlink()
    second = start(["worker"], env, tmp_path)  # nothing lost: the next worker runs it at once
    procs.append(second)
    wait_for(lambda: _job(runtime, job_id).state == "done", "the handed-back job ran")
    assert stop(second, signal.SIGTERM) == 0


def test_serve_stops_on_sigterm_and_hands_back_its_in_process_jobs(
    sqlite_runtime: Runtime, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    runtime = sqlite_runtime
    (tmp_path / "hang-web").write_text("")
    env = env_for(
        runtime.settings.database_url,
        runtime.settings.resolved_queue_url,
        tmp_path,
        QBCONNECT_SHUTDOWN_GRACE_SECONDS="1",
        QBCONNECT_JOB_LEASE_SECONDS="600",
    )
    port = free_port()
    serve = start(["serve", "--port", str(port)], env, tmp_path)
    procs.append(serve)

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            assert serve.poll() is None, _output(tmp_path, "serve")
            return False

    wait_for(answers, "serve answered /readyz")
    job_id = _enqueue(runtime, "web")
    wait_for(lambda: (tmp_path / "running-web").exists(), "the job started")
    # uvicorn shuts down gracefully, then re-raises the signal so its supervisor sees how it ended
    assert stop(serve, signal.SIGTERM, timeout=40) in (0, -signal.SIGTERM)
    output = _output(tmp_path, "serve")
    assert "worker.handed_back" in output and "Application shutdown complete" in output
    job = _job(runtime, job_id)
    assert (job.state, job.lease_owner, job.attempts) == ("pending", None, 0)


def _cli(tmp_path: Path, database_url: str, *args: str, **env: str) -> tuple[int, str]:
    values = {
        "QBCONNECT_DATABASE_URL": database_url,
        "QBCONNECT_QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "QBCONNECT_SECRET_KEY": "x" * 40,
        "QBCONNECT_ADMIN_TOKEN": "y" * 40,
        **env,
    }
    result = CliRunner().invoke(app, list(args), env=values)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_no_migrate_refuses_an_unmigrated_database_with_one_line(tmp_path: Path, command: str) -> None:
    missing = f"sqlite:///{tmp_path / 'never.db'}"
    code, output = _cli(tmp_path, missing, command, "--no-migrate")
    assert code == 2 and output.count("\n") == 1
    assert output.startswith("error: no database at ") and "qbconnect db upgrade" in output
    assert not (tmp_path / "never.db").exists()  # and no empty file left behind

    behind = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(behind, "0004")  # an older release's schema
    code, output = _cli(tmp_path, behind, command, "--no-migrate")
    assert code == 2 and output.count("\n") == 1
    assert "is not migrated (at 0004, this release needs" in output and "run `qbconnect db upgrade`" in output
    code, output = _cli(tmp_path, behind, command, QBCONNECT_MIGRATE_ON_START="false")  # the setting does the same
    assert code == 2 and "is not migrated" in output


def test_db_upgrade_is_the_release_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'release.db'}"
    upgrade(url, "0004")
    code, output = _cli(tmp_path, url, "db", "upgrade")
    assert code == 0 and "database is up to date" in output
    from qbconnect.db.migrate import unmigrated_reason

    assert unmigrated_reason(url) is None
    code, output = _cli(tmp_path, url, "db", "upgrade")  # again: nothing to do, no error
    assert code == 0


def test_an_older_release_refuses_a_database_migrated_by_a_newer_one(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from qbconnect.db.migrate import unmigrated_reason

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    reason = unmigrated_reason(url)
    assert reason is not None and "is at 9999, newer than this release knows" in reason

"""The deployment examples in deploy/ are parsed and their command lines started for real: the Procfile's
release, web and worker lines, and the systemd units' ExecStart, against a temporary database; each process
comes up, does its work and stops on SIGTERM."""

from __future__ import annotations

import configparser
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbconnect.config import Settings
from qbconnect.db.migrate import unmigrated_reason
from qbconnect.db.models import SyncJob
from qbconnect.runtime import build_runtime
from qbconnect.sandbox.server import free_port
from qbconnect.sync.engine import jobs
from qbconnect.worker import Queue
from tests.conftest import make_settings
from tests.support.processes import REPO, env_for, ready, stop, wait_for

DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/qbconnect/.venv/bin/qbconnect"


def procfile() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z]+): (.+)", line)
        assert match, f"not a Procfile line: {line!r}"
        entries[match.group(1)] = match.group(2)
    return entries


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[dict[str, str], Settings]]:
    """A shell environment where ``qbconnect`` is this checkout's CLI (with the probe handlers), on a temporary
    SQLite database that only the release step creates."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "qbconnect"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.scaleout.cli_with_probes "$@"\n')
    shim.chmod(0o755)
    settings = make_settings(f"sqlite:///{tmp_path / 'site.db'}", f"sqlite:///{tmp_path / 'site-queue.db'}")
    env = env_for(settings.database_url, settings.resolved_queue_url, tmp_path, PROBE_SLEEP="0.2")
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    yield env, settings


def _shell(command: str, env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    log = open(cwd / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=log, stderr=log)


def _run_a_probe_job(settings: Settings) -> None:
    runtime = build_runtime(settings)
    try:
        Queue(runtime).install()
        with runtime.sessions.begin() as session:
            job_id = jobs.enqueue(session, "loc1", "probe", "deploy-check", "test")

        def done() -> bool:
            with runtime.sessions() as session:
                job = session.get(SyncJob, job_id)
                return job is not None and job.state == "done"

        wait_for(done, "a job ran in the started worker")
    finally:
        jobs.set_dispatcher(None)
        runtime.close()


def test_procfile_release_web_and_worker_start_and_stop(site: tuple[dict[str, str], Settings], tmp_path: Path) -> None:
    env, settings = site
    entries = procfile()
    assert set(entries) == {"release", "web", "worker"}
    assert "--no-migrate" in entries["web"] and "--no-worker" in entries["web"] and "--no-migrate" in entries["worker"]

    worker = _shell(entries["worker"], env, tmp_path, "early-worker")  # before the release step: refuses
    assert worker.wait(timeout=60) == 2
    assert "qbconnect db upgrade" in (tmp_path / "early-worker.log").read_text()

    release = _shell(entries["release"], env, tmp_path, "release")
    assert release.wait(timeout=120) == 0
    assert unmigrated_reason(settings.database_url) is None

    port = free_port()
    web = _shell(entries["web"], {**env, "PORT": str(port)}, tmp_path, "web")
    worker = _shell(entries["worker"], env, tmp_path, "worker")
    try:
        wait_for(lambda: ready(port, web), "the web process is ready")
        _run_a_probe_job(settings)
    finally:
        assert stop(worker, signal.SIGTERM) == 0
        assert stop(web, signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown


def test_systemd_units_parse_and_the_worker_unit_starts_and_stops(
    site: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = site
    migrate, web, worker = (
        unit(n) for n in ("qbconnect-migrate.service", "qbconnect-web.service", "qbconnect-worker@.service")
    )
    assert migrate["Service"]["Type"] == "oneshot" and migrate["Service"]["ExecStart"] == f"{INSTALLED} db upgrade"
    grace = Settings(_env_file=None).shutdown_grace_seconds  # type: ignore[call-arg]
    for service in (web, worker):
        assert "qbconnect-migrate.service" in service["Unit"]["After"]
        assert service["Service"]["KillSignal"] == "SIGTERM"
        assert float(service["Service"]["TimeoutStopSec"]) > grace  # never SIGKILLed while handing jobs back
        assert service["Service"]["Restart"] == "always"
        assert service["Service"]["ExecStart"].startswith(INSTALLED + " ")
        assert "--no-migrate" in service["Service"]["ExecStart"]
    env_example = (UNITS / "env.example").read_text()
    assert all(f"{name}=" in env_example for name in ("QBCONNECT_DATABASE_URL", "QBCONNECT_QUEUE_URL"))

    def command(parsed: configparser.ConfigParser) -> list[str]:
        return ["qbconnect", *shlex.split(parsed["Service"]["ExecStart"].removeprefix(INSTALLED + " "))]

    assert subprocess.run(command(migrate), env=env, cwd=tmp_path, timeout=120).returncode == 0
    proc = subprocess.Popen(command(worker), env=env, cwd=tmp_path)
    try:
        _run_a_probe_job(settings)
    finally:
        assert stop(proc, signal.SIGTERM) == 0

"""Starting and stopping real ``qbconnect`` processes (the scale-out, fleet and chaos tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
STRONG_SECRET = "scaleout-secret-key-0123456789abcdef-0123"
STRONG_ADMIN = "scaleout-admin-token-0123456789abcdef-012"


def env_for(database_url: str, queue_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a qbconnect process: no QBCONNECT_* of ours leaks in; probes log to ``workdir``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("QBCONNECT_")}
    env.update(
        QBCONNECT_DATABASE_URL=database_url,
        QBCONNECT_QUEUE_URL=queue_url,
        QBCONNECT_SECRET_KEY=STRONG_SECRET,
        QBCONNECT_ADMIN_TOKEN=STRONG_ADMIN,
        QBCONNECT_SWEEP_INTERVAL_SECONDS="0.5",
        QBCONNECT_LOG_JSON="true",
        PROBE_DIR=str(workdir),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "src")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], workdir: Path, *, probes: bool = True) -> subprocess.Popen[bytes]:
    """``qbconnect <args>`` (with the probe handlers unless ``probes`` is false), its output in ``workdir``."""
    module = "tests.scaleout.cli_with_probes" if probes else "qbconnect.cli"
    log = open(workdir / f"{args[0]}-{time.time_ns()}.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=workdir, env=env, stdout=log, stderr=log)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def ready(port: int, proc: subprocess.Popen[bytes]) -> bool:
    """Whether the web process ``proc`` answers ``/readyz`` on ``port`` with 200; it must not have exited."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        assert proc.poll() is None, f"the web process exited ({proc.returncode})"
        return False


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send ``sig`` and wait; a process still alive after ``timeout`` is killed and the test fails."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"process {proc.pid} did not stop within {timeout}s of signal {sig}") from None

"""The command line: settings errors, db upgrade, status, serve (web + in-process worker)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from qbconnect.cli import app
from qbconnect.sandbox.server import free_port
from tests.conftest import TEST_ADMIN

REPO = Path(__file__).resolve().parents[1]
# ``serve`` and ``worker`` refuse secrets shorter than 32 characters.
STRONG_SECRET = "cli-test-secret-key-0123456789-abcdefghij"
STRONG_ADMIN = "cli-test-admin-token-0123456789-abcdefghij"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBCONNECT_")}
    env.update(
        QBCONNECT_DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}",
        QBCONNECT_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}",
        **extra,
    )
    return env


def test_missing_required_setting_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qbconnect.cli", "serve"],
        cwd=tmp_path,
        env=_env(tmp_path, QBCONNECT_ADMIN_TOKEN=TEST_ADMIN),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "QBCONNECT_SECRET_KEY" in lines[0]


@pytest.mark.parametrize(
    ("command", "short"),
    [
        ("serve", "QBCONNECT_SECRET_KEY"),
        ("serve", "QBCONNECT_ADMIN_TOKEN"),
        ("worker", "QBCONNECT_SECRET_KEY"),
        ("worker", "QBCONNECT_ADMIN_TOKEN"),
    ],
)
def test_serve_and_worker_refuse_a_short_secret_with_one_line_naming_it(
    tmp_path: Path, command: str, short: str
) -> None:
    values = {"QBCONNECT_SECRET_KEY": STRONG_SECRET, "QBCONNECT_ADMIN_TOKEN": STRONG_ADMIN}
    values[short] = "a" if short == "QBCONNECT_SECRET_KEY" else "b"
    args = [sys.executable, "-m", "qbconnect.cli", command]
    if command == "serve":
        args += ["--port", str(free_port())]
    env = _env(tmp_path, **values)
    env["PYTHONPATH"] = str(REPO / "src")
    try:
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} started with {short} of one character")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and short in lines[0] and "too short" in lines[0], lines
    assert not (tmp_path / "q.db").exists()  # refused before touching anything


def test_db_upgrade_then_status_with_no_locations(tmp_path: Path, monkeypatch) -> None:
    for key, value in _env(tmp_path).items():
        if key.startswith("QBCONNECT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0 and "no locations yet" in status.output


def test_serve_answers_healthz_with_its_in_process_worker(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, QBCONNECT_SECRET_KEY=STRONG_SECRET, QBCONNECT_ADMIN_TOKEN=STRONG_ADMIN)
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qbconnect.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
                assert time.monotonic() < deadline, "serve did not answer within 60 s"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert (tmp_path / "q.db").exists() and (tmp_path / "queue.db").exists()
        # Owner-only files, whatever the umask (the issue found them 0644).
        for name in ("q.db", "queue.db", "q.db-wal"):
            if (tmp_path / name).exists():
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_sandbox_commands_serve_each_emulator(tmp_path: Path) -> None:
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(REPO / "src")
    for platform, probe in (("qbo", "/_sandbox/requests"), ("crm", "/_sandbox/requests")):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbconnect.cli", "sandbox", platform, "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=2)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, f"{platform} sandbox exited"
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert response.status_code == 200, (platform, response.text)
        finally:
            proc.terminate()
            proc.wait(timeout=20)

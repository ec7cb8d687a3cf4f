"""The command line: settings errors, db upgrade, status, serve (web + in-process worker)."""

from __future__ import annotations

import os
import sqlite3
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
from tests.support.databases import silent_postgres
from tests.support.signing import CrmSigner, intuit_headers
from tests.support.webhooks import VERIFIER, crm_invoice, qbo_entity, qbo_legacy

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
        result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
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


def _serve_with_webhook_keys(
    tmp_path: Path, database_url: str, signer: CrmSigner
) -> tuple[subprocess.Popen[bytes], str]:
    """``qbconnect serve`` on ``database_url`` with webhook keys configured; its base URL once it listens."""
    port = free_port()
    env = _env(
        tmp_path,
        QBCONNECT_SECRET_KEY=STRONG_SECRET,
        QBCONNECT_ADMIN_TOKEN=STRONG_ADMIN,
        QBCONNECT_CRM_WEBHOOK_PUBLIC_KEY=signer.public_key_b64,
        QBCONNECT_QBO_WEBHOOK_VERIFIER_TOKEN=VERIFIER,
    )
    env["QBCONNECT_DATABASE_URL"] = database_url
    env["PYTHONPATH"] = str(REPO / "src")
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbconnect.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base_url}/livez", timeout=2)
            return proc, base_url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = (tmp_path / "serve.log").read_text(errors="replace")[-800:]
                pytest.fail(f"serve did not start listening within 30 s: {output}")
            time.sleep(0.2)


def _timed_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    start = time.monotonic()
    status = httpx.post(url, content=body, headers=headers, timeout=10).status_code
    assert time.monotonic() - start < 2.0, f"answered {status} after {time.monotonic() - start:.2f}s"
    return status


def _deliveries(base_url: str, signer: CrmSigner, event_id: str) -> tuple[int, int]:
    crm = crm_invoice("loc-1", event_id)
    qbo = qbo_legacy("9130", qbo_entity(event_id))
    return (
        _timed_post(f"{base_url}/webhooks/crm", crm, signer.ghl_headers(crm)),
        _timed_post(f"{base_url}/webhooks/qbo", qbo, intuit_headers(qbo, VERIFIER)),
    )


@pytest.mark.postgres
def test_serve_starts_and_answers_within_2s_while_postgresql_never_answers(tmp_path: Path) -> None:
    """It used to wait for the start-up migrations, then exit with a traceback: nothing answered at all."""
    signer = CrmSigner.generate()
    with silent_postgres() as url:
        proc, base_url = _serve_with_webhook_keys(tmp_path, url, signer)
        try:
            assert _deliveries(base_url, signer, "1") == (429, 503)
            start = time.monotonic()
            health = httpx.get(f"{base_url}/healthz", timeout=10)
            assert time.monotonic() - start < 2.0
            assert health.status_code == 503 and health.json()["problems"][0].startswith("database:")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_serve_started_on_a_locked_database_migrates_once_it_is_released(tmp_path: Path) -> None:
    """A database that does not answer at start is no reason not to serve; its migrations come when it answers."""
    signer = CrmSigner.generate()
    database = tmp_path / "q.db"
    database.touch(mode=0o600)  # not migrated yet
    holder = sqlite3.connect(database, isolation_level=None, timeout=1)
    holder.execute("BEGIN EXCLUSIVE")
    proc = None
    try:
        proc, base_url = _serve_with_webhook_keys(tmp_path, f"sqlite:///{database}", signer)
        assert _deliveries(base_url, signer, "1") == (429, 503)
        holder.execute("ROLLBACK")
        deadline = time.monotonic() + 30
        while httpx.get(f"{base_url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the migrations were not applied once the database answered"
            time.sleep(0.5)
        assert _deliveries(base_url, signer, "1") == (200, 200)
    finally:
        holder.close()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


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


# ---- the sync log in the terminal: status, log, retry ---------------------------------------------------


def _cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for key in list(os.environ):
        if key.startswith("QBCONNECT_"):
            monkeypatch.delenv(key)
    for key, value in _env(tmp_path).items():
        if key.startswith("QBCONNECT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.mark.parametrize("command", [["status"], ["retry", "1"], ["retry", "--all-failed"], ["log"]])
def test_a_missing_database_gives_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    runner = _cli_env(tmp_path, monkeypatch)
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no database at" in lines[0] and "QBCONNECT_DATABASE_URL" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "q.db").exists()  # never creates an empty database


@pytest.mark.parametrize("command", [["status"], ["log"], ["retry", "--all-failed"]])
def test_an_empty_database_gives_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    runner = _cli_env(tmp_path, monkeypatch)
    (tmp_path / "q.db").write_bytes(b"")
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no qbconnect tables" in lines[0]


def _seed_log(tmp_path: Path) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from qbconnect.db.models import Activity, Location

    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with Session(engine) as session, session.begin():
        session.add(Location(id="loc-cli", name="Acme"))
        session.add(
            Activity(
                location_id="loc-cli",
                kind="invoice",
                entity_id="inv-1",
                direction="crm_to_qbo",
                status="done",
                label="Invoice #1042",
                customer="Kira Garcia",
                qbo_id="19",
            )
        )
        failed = Activity(
            location_id="loc-cli",
            kind="invoice",
            entity_id="inv-2",
            direction="crm_to_qbo",
            status="failed",
            label="Invoice #1043",
            customer="Tom Ng",
            error_category="permanent",
            fault_code="6210",
            error_message="QuickBooks says: Account Period Closed",
        )
        session.add(failed)
        session.flush()
        row_id = failed.id
    engine.dispose()
    return row_id


def test_log_prints_the_table_with_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _cli_env(tmp_path, monkeypatch)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    _seed_log(tmp_path)
    everything = runner.invoke(app, ["log", "--location-id", "loc-cli"])
    assert everything.exit_code == 0, everything.output
    assert "Invoice #1042" in everything.output and "Invoice #1043" in everything.output
    failed = runner.invoke(app, ["log", "--status", "needs_attention"])
    assert "Invoice #1043" in failed.output and "Invoice #1042" not in failed.output
    assert "closing date" in failed.output  # the plain fix
    searched = runner.invoke(app, ["log", "--search", "kira", "--kind", "invoice"])
    assert "Invoice #1042" in searched.output and "Invoice #1043" not in searched.output
    assert "no sync log rows match" in runner.invoke(app, ["log", "--search", "nobody"]).output
    unknown = runner.invoke(app, ["log", "--location-id", "nope"])
    assert unknown.exit_code == 1 and "unknown location nope" in unknown.output
    assert runner.invoke(app, ["status", "--location-id", "nope"]).exit_code == 1
    assert runner.invoke(app, ["retry", "--all-failed", "--location-id", "nope"]).exit_code == 1


def test_retry_all_failed_and_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _cli_env(tmp_path, monkeypatch)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    row_id = _seed_log(tmp_path)
    disconnected = runner.invoke(app, ["retry", "--all-failed", "--location-id", "loc-cli"])
    assert disconnected.exit_code == 0 and "not connected" in disconnected.output
    one = runner.invoke(app, ["retry", str(row_id)])
    assert one.exit_code == 1 and "reconnect" in one.output
    assert runner.invoke(app, ["retry"]).exit_code == 2
    assert runner.invoke(app, ["retry", "999999"]).exit_code == 1


def test_retry_all_failed_queues_the_open_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from qbconnect.db.models import Activity, QboConnection

    runner = _cli_env(tmp_path, monkeypatch)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    row_id = _seed_log(tmp_path)
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with Session(engine) as session, session.begin():
        session.add(QboConnection(location_id="loc-cli", realm_id="9", active_realm_id="9", status="connected"))
    result = runner.invoke(app, ["retry", "--all-failed"])
    assert result.exit_code == 0, result.output
    assert "location loc-cli: 1 queued to run again" in result.output
    with Session(engine) as session:
        assert session.execute(select(Activity.status).where(Activity.id == row_id)).scalar_one() == "retried"
    engine.dispose()

"""DB-backed QuickBooks tokens against the QBO sandbox over HTTP, on SQLite and PostgreSQL.

Refresh ahead of expiry, rotation (the spent refresh token is refused), one refresh when two processes
race, invalid_grant → needs reconnect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from qbconnect.clock import utcnow
from qbconnect.connections import service
from qbconnect.connections.state import is_syncing, uninstall_location
from qbconnect.connections.tokens import DbCrmTokenSource, DbQboTokenSource, mark_qbo_needs_reconnect
from qbconnect.db.models import Location, QboConnection
from qbconnect.errors import AuthError
from qbconnect.qbo import oauth as qbo_oauth
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.runtime import Runtime, build_runtime
from qbconnect.sandbox.qbo import QboSandbox, create_app
from qbconnect.sandbox.server import RunningServer, serve_in_thread
from qbconnect.sync.engine import jobs
from tests.conftest import TEST_SECRET, make_settings
from tests.support.engine_harness import lock_probe, on_request

CLIENT_ID = "tok-client"
CLIENT_SECRET = "tok-secret"
REDIRECT = "http://127.0.0.1/oauth/quickbooks/callback"
LOCATION = "loc-tokens"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    runtime: Runtime
    sandbox: QboSandbox
    server: RunningServer
    realm_id: str
    db_url: str

    def refreshes(self) -> int:
        return sum(1 for r in self.sandbox.request_log if r.operation == "token:refresh_token")

    def connection(self) -> QboConnection:
        with self.runtime.sessions() as session:
            return session.execute(select(QboConnection)).scalar_one()

    def stored(self) -> tuple[str, str]:
        conn = self.connection()
        assert conn.access_token and conn.refresh_token
        return self.runtime.cipher.decrypt(conn.access_token), self.runtime.cipher.decrypt(conn.refresh_token)

    def token_works(self, token: str) -> bool:
        client = QboClient(
            realm_id=self.realm_id,
            api_base=self.server.base_url,
            tokens=StaticTokenSource(token),
            http=self.runtime.http,
        )
        try:
            client.company_info()
        except AuthError:
            return False
        return True

    def expire_stored_access(self, *, by: timedelta = timedelta(seconds=-1)) -> None:
        with self.runtime.sessions.begin() as session:
            conn = session.execute(select(QboConnection)).scalar_one()
            conn.access_expires_at = utcnow() + by


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    sandbox = QboSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    server = serve_in_thread(create_app(sandbox))
    settings = make_settings(
        db_url,
        f"sqlite:///{tmp_path / 'queue.db'}",
        qbo_client_id=CLIENT_ID,
        qbo_client_secret=CLIENT_SECRET,
        qbo_api_base=server.base_url,
        qbo_token_url=f"{server.base_url}/oauth2/v1/tokens/bearer",
        qbo_revoke_url=f"{server.base_url}/v2/oauth2/tokens/revoke",
    )
    runtime = build_runtime(settings)
    jobs.set_dispatcher(None)
    realm_id = sandbox.add_company(name="Token Test Co")
    code = sandbox.issue_code(CLIENT_ID, REDIRECT, qbo_oauth.SCOPE_ACCOUNTING, realm_id)
    tokens = qbo_oauth.exchange_code(
        runtime.http,
        token_url=settings.qbo_token_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        code=code,
        redirect_uri=REDIRECT,
        now=utcnow(),
    )
    with runtime.sessions.begin() as session:
        session.add(Location(id=LOCATION, name="Tokens", settings={}, state={}, crm_status="installed"))
        session.flush()
        service.connect_quickbooks(
            runtime,
            session,
            location_id=LOCATION,
            realm_id=realm_id,
            tokens=tokens,
            company_info={"CompanyName": "Token Test Co", "Country": "US"},
            preferences={},
        )
    yield Env(runtime=runtime, sandbox=sandbox, server=server, realm_id=realm_id, db_url=db_url)
    runtime.close()
    server.stop()


def test_fresh_token_is_used_without_refreshing(env: Env) -> None:
    access, _ = env.stored()
    assert DbQboTokenSource(env.runtime, LOCATION).access_token() == access
    assert env.refreshes() == 0


def test_refresh_ahead_of_expiry_with_rotation(env: Env) -> None:
    old_access, old_refresh = env.stored()
    version = env.connection().token_version
    env.expire_stored_access(by=timedelta(minutes=2))  # still valid, but inside the 5-minute margin

    token = DbQboTokenSource(env.runtime, LOCATION).access_token()

    assert env.refreshes() == 1
    new_access, new_refresh = env.stored()
    assert token == new_access != old_access
    assert new_refresh != old_refresh
    conn = env.connection()
    assert conn.token_version == version + 1
    assert conn.refresh_hard_expires_at is not None and conn.refresh_expires_at is not None
    assert env.token_works(token)
    # Rotation: the spent refresh token is refused by the sandbox; the stored new one still works.
    with pytest.raises(AuthError) as refused:
        qbo_oauth.refresh(
            env.runtime.http,
            token_url=env.runtime.settings.qbo_token_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=old_refresh,
            now=utcnow(),
        )
    assert refused.value.code == "invalid_grant"


def test_force_refresh_after_401_then_reuses_the_new_token(env: Env) -> None:
    old_access, _ = env.stored()
    source = DbQboTokenSource(env.runtime, LOCATION)
    first = source.force_refresh(old_access)
    second = source.force_refresh(old_access)  # a late caller with the same rejected token
    assert first == second != old_access
    assert env.refreshes() == 1


def test_client_refreshes_once_after_expired_token(env: Env) -> None:
    env.sandbox.expire_access_tokens()  # the sandbox says 401, our row still thinks the token is fresh
    client = QboClient(
        realm_id=env.realm_id,
        api_base=env.server.base_url,
        tokens=DbQboTokenSource(env.runtime, LOCATION),
        http=env.runtime.http,
    )
    assert client.company_info()["CompanyName"] == "Token Test Co"
    assert env.refreshes() == 1


def _row_is_free(env: Env) -> bool:
    """May another connection write the connection row right now, without waiting?"""
    if env.runtime.engine.dialect.name == "sqlite":
        return lock_probe(env.runtime).free()
    with env.runtime.engine.connect() as conn, conn.begin():
        try:
            conn.execute(text("SELECT 1 FROM qbo_connections FOR UPDATE NOWAIT")).all()
        except OperationalError:
            return False
    return True


def test_no_transaction_is_open_across_the_token_call(env: Env) -> None:
    """The row used to be locked (SELECT … FOR UPDATE, SQLite's write lock) for as long as Intuit took to
    answer; now a refresh holds only its refresh lock while the token endpoint is called."""
    env.expire_stored_access()
    seen: list[bool] = []

    def at_token_call(request: httpx.Request) -> None:
        if request.url.path.endswith("/tokens/bearer"):
            seen.append(_row_is_free(env))

    with on_request(env.runtime, at_token_call):
        token = DbQboTokenSource(env.runtime, LOCATION).access_token()
    assert seen == [True]
    assert env.stored()[0] == token
    assert env.refreshes() == 1


def test_invalid_grant_marks_needs_reconnect_and_pauses_sync(env: Env) -> None:
    env.sandbox.revoke_all()
    env.expire_stored_access()
    source = DbQboTokenSource(env.runtime, LOCATION)
    with pytest.raises(AuthError) as refused:
        source.access_token()
    assert refused.value.code == "invalid_grant"
    conn = env.connection()
    assert conn.status == "needs_reconnect"
    assert "invalid_grant" in (conn.status_reason or "")
    assert conn.active_realm_id == env.realm_id  # still this location's company: reconnect, not connect
    with env.runtime.sessions() as session:
        assert not is_syncing(session, LOCATION)
    # Later callers fail fast without spending anything at Intuit.
    with pytest.raises(AuthError) as again:
        source.access_token()
    assert again.value.code == "needs_reconnect"
    assert env.refreshes() == 1


@pytest.mark.parametrize("change", ["disconnected", "needs_reconnect"])
def test_a_source_that_handed_out_a_token_refuses_once_the_connection_is_gone(env: Env, change: str) -> None:
    """Another process disconnects (or Intuit refused the grant): the very next call of a source that has
    just handed out the token fails, without a call to Intuit. Nothing is remembered between calls."""
    source = DbQboTokenSource(env.runtime, LOCATION)
    assert source.access_token() == env.stored()[0]
    with env.runtime.sessions.begin() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        if change == "disconnected":
            service.disconnect_quickbooks(conn, reason="disconnected by the user")
        else:
            mark_qbo_needs_reconnect(conn, "invalid_grant")
    with pytest.raises(AuthError) as refused:
        source.access_token()
    assert refused.value.code == ("not_connected" if change == "disconnected" else "needs_reconnect")
    assert env.refreshes() == 0


def _crm_install(env: Env, *, expires_in: timedelta) -> str:
    with env.runtime.sessions.begin() as session:
        location = session.get(Location, LOCATION)
        assert location is not None
        location.crm_access_token = env.runtime.cipher.encrypt("crm-access-1")
        location.crm_refresh_token = env.runtime.cipher.encrypt("crm-refresh-1")
        location.crm_token_expires_at = utcnow() + expires_in
    return "crm-access-1"


@pytest.mark.parametrize("change", ["uninstalled", "needs_reconnect"])
def test_crm_source_refuses_once_the_app_is_uninstalled_or_refused(env: Env, change: str) -> None:
    token = _crm_install(env, expires_in=timedelta(hours=1))
    source = DbCrmTokenSource(env.runtime, LOCATION)
    assert source.access_token() == token
    with env.runtime.sessions.begin() as session:
        location = session.get(Location, LOCATION)
        assert location is not None
        if change == "uninstalled":
            uninstall_location(session, location)
        else:
            location.crm_status = "needs_reconnect"
    with pytest.raises(AuthError) as refused:
        source.access_token()
    assert refused.value.code == ("not_installed" if change == "uninstalled" else "needs_reconnect")


def test_crm_source_sees_a_token_stored_by_another_process(env: Env) -> None:
    _crm_install(env, expires_in=timedelta(hours=1))
    source = DbCrmTokenSource(env.runtime, LOCATION)
    assert source.access_token() == "crm-access-1"
    with env.runtime.sessions.begin() as session:
        location = session.get(Location, LOCATION)
        assert location is not None
        location.crm_access_token = env.runtime.cipher.encrypt("crm-access-2")
    assert source.access_token() == "crm-access-2"


def test_crm_source_without_a_token_and_no_agency_is_not_installed(env: Env) -> None:
    with pytest.raises(AuthError) as refused:
        DbCrmTokenSource(env.runtime, LOCATION).access_token()
    assert refused.value.code == "not_installed"


CHILD = r"""
import json, os, sys, time
from pathlib import Path
from qbconnect.config import Settings
from qbconnect.runtime import build_runtime
from qbconnect.connections.tokens import DbQboTokenSource
go, mode, rejected = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
runtime = build_runtime(Settings(_env_file=None))
with runtime.engine.connect():
    pass
source = DbQboTokenSource(runtime, os.environ["QBC_TEST_LOCATION"])
print("ready", flush=True)
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
try:
    token = source.force_refresh(rejected) if mode == "force" else source.access_token()
    print(json.dumps({"token": token}), flush=True)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


@pytest.mark.parametrize("mode", ["force", "expired"])
def test_two_processes_refresh_once_and_both_get_a_valid_token(env: Env, tmp_path: Path, mode: str) -> None:
    old_access, old_refresh = env.stored()
    if mode == "expired":
        env.expire_stored_access()
    go = tmp_path / f"go-{mode}"
    settings = env.runtime.settings
    child_env = {
        **os.environ,
        "QBCONNECT_DATABASE_URL": env.db_url,
        "QBCONNECT_SECRET_KEY": TEST_SECRET,
        "QBCONNECT_QBO_CLIENT_ID": CLIENT_ID,
        "QBCONNECT_QBO_CLIENT_SECRET": CLIENT_SECRET,
        "QBCONNECT_QBO_TOKEN_URL": settings.qbo_token_url,
        "QBCONNECT_LOG_JSON": "true",
        "QBC_TEST_LOCATION": LOCATION,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go), mode, old_access],
            cwd=tmp_path,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        go.touch()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            assert lines, f"no answer from a child: {err[-2000:]}"
            results.append(json.loads(lines[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all("token" in r for r in results), results
    assert env.refreshes() == 1
    tokens = {r["token"] for r in results}
    assert len(tokens) == 1
    (token,) = tokens
    assert token != old_access
    assert env.stored()[0] == token
    assert env.token_works(token)
    assert env.stored()[1] != old_refresh

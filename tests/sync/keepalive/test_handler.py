"""The ``token_keepalive`` handler through the engine: a connection whose refresh token ends soon is refreshed
against the emulators' token endpoints, and the new pair is stored."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import Location, QboConnection
from qbconnect.sandbox.qbo.oauth import OAuthError
from qbconnect.sync.keepalive.handler import TOKEN_KEEPALIVE
from tests.support.engine_harness import run_job
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


def test_quickbooks_tokens_near_expiry_are_refreshed(connected: Connected) -> None:
    c = connected
    runtime = c.stack.runtime
    with runtime.sessions.begin() as session:
        conn = session.execute(select(QboConnection).where(QboConnection.location_id == c.location_id)).scalar_one()
        conn.refresh_expires_at = utcnow() + timedelta(days=10)
        version, old_refresh = conn.token_version, runtime.cipher.decrypt(conn.refresh_token or "")

    run = run_job(runtime, c.location_id, TOKEN_KEEPALIVE, "qbo")

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    assert "QuickBooks authorization renewed" in (run.activity.summary or "")
    with runtime.sessions() as session:
        conn = session.execute(select(QboConnection).where(QboConnection.location_id == c.location_id)).scalar_one()
    assert conn.token_version > version
    assert conn.refresh_expires_at is not None and conn.refresh_expires_at > utcnow() + timedelta(days=30)
    # QuickBooks' side: the old refresh token was spent, the stored access token is the one it now accepts
    with pytest.raises(OAuthError):
        c.stack.qbo.refresh(old_refresh)
    c.stack.qbo.authenticate(c.realm_id, f"Bearer {runtime.cipher.decrypt(conn.access_token or '')}")


def test_crm_tokens_near_expiry_are_refreshed(connected: Connected) -> None:
    c = connected
    runtime = c.stack.runtime
    with runtime.sessions.begin() as session:
        location = session.get(Location, c.location_id)
        assert location is not None
        location.crm_token_expires_at = utcnow() - timedelta(days=340)
        old_access = runtime.cipher.decrypt(location.crm_access_token or "")
        old_refresh = location.crm_refresh_token

    run = run_job(runtime, c.location_id, TOKEN_KEEPALIVE, "crm")

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    assert "CRM authorization renewed" in (run.activity.summary or "")
    with runtime.sessions() as session:
        location = session.get(Location, c.location_id)
    assert location is not None and location.crm_refresh_token != old_refresh
    assert location.crm_token_expires_at is not None and location.crm_token_expires_at > utcnow()
    new_access = runtime.cipher.decrypt(location.crm_access_token or "")
    assert new_access != old_access
    c.stack.crm.tokens.authenticate(f"Bearer {new_access}", utcnow())  # HighLevel accepts the stored token

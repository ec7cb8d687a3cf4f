"""Idle connections are refreshed before their rolling refresh-token expiry runs out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import Location, QboConnection, SyncJob
from qbconnect.sync.keepalive.handler import enqueue_keepalive
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


def test_connections_close_to_expiry_are_refreshed_and_others_are_left_alone(connected: Connected) -> None:  # noqa: F811
    runtime = connected.stack.runtime
    with runtime.sessions.begin() as session:
        enqueue_keepalive(runtime, session)
    with runtime.sessions() as session:
        assert session.execute(select(SyncJob).where(SyncJob.kind == "token_keepalive")).first() is None

    with runtime.sessions.begin() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        conn.refresh_expires_at = utcnow() + timedelta(days=10)
        version = conn.token_version
        location = session.get(Location, connected.location_id)
        assert location is not None
        location.crm_token_expires_at = utcnow() - timedelta(days=340)
        old_crm_token = location.crm_refresh_token
    with runtime.sessions.begin() as session:
        enqueue_keepalive(runtime, session)
    connected.stack.drain()
    with runtime.sessions() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        location = session.get(Location, connected.location_id)
        kinds = {
            (j.entity_id, j.state)
            for j in session.execute(select(SyncJob).where(SyncJob.kind == "token_keepalive")).scalars()
        }
    assert kinds == {("qbo", "done"), ("crm", "done")}
    assert conn.token_version > version
    assert conn.refresh_expires_at is not None and conn.refresh_expires_at > utcnow() + timedelta(days=30)
    assert location is not None and location.crm_refresh_token != old_crm_token
    assert location.crm_token_expires_at is not None and location.crm_token_expires_at > utcnow()

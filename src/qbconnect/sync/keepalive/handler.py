"""Keep idle connections alive: refresh tokens before their rolling expiry runs out.

Intuit's refresh tokens expire after ~100 days without use and HighLevel's after a year; a location with
no traffic would otherwise have to reconnect. Once a day every connection whose refresh token ends within
``KEEPALIVE_WINDOW`` is refreshed (which renews the rolling expiry). The five-year hard expiry cannot be
renewed: the page and the API show its days left.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.tokens import DbCrmTokenSource, DbQboTokenSource
from qbconnect.db.models import Location, QboConnection
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register, register_periodic

TOKEN_KEEPALIVE = "token_keepalive"
KEEPALIVE_WINDOW = timedelta(days=30)
KEEPALIVE_EVERY_SECONDS = 6 * 3600.0
CRM_REFRESH_LIFETIME = timedelta(days=365)  # "valid for a year unless used" (HighLevel's Authorization docs)
CRM_ACCESS_LIFETIME = timedelta(days=1)


def _due(refresh_expires_at: datetime | None, now: datetime) -> bool:
    return refresh_expires_at is not None and refresh_expires_at - KEEPALIVE_WINDOW <= now


def crm_refresh_expires_at(location: Location) -> datetime | None:
    """HighLevel does not say when a refresh token ends; it was issued with the access token we hold."""
    if location.crm_token_expires_at is None:
        return None
    return location.crm_token_expires_at - CRM_ACCESS_LIFETIME + CRM_REFRESH_LIFETIME


@register_periodic(TOKEN_KEEPALIVE, every_seconds=lambda rt: KEEPALIVE_EVERY_SECONDS)
def enqueue_keepalive(runtime: Runtime, session: Session) -> None:
    now = utcnow()
    for connection in session.execute(select(QboConnection).where(QboConnection.status == "connected")).scalars():
        if _due(connection.refresh_expires_at, now):
            jobs.enqueue(session, connection.location_id, TOKEN_KEEPALIVE, "qbo", "refresh token ends soon")
    for location in session.execute(select(Location).where(Location.crm_status == "installed")).scalars():
        if _due(crm_refresh_expires_at(location), now):
            jobs.enqueue(session, location.id, TOKEN_KEEPALIVE, "crm", "refresh token ends soon")


@register(TOKEN_KEEPALIVE, direction="internal", title="Connection keep-alive")
def keepalive(ctx: JobContext) -> Result:
    if ctx.entity_id == "qbo":
        source = DbQboTokenSource(ctx.runtime, ctx.location_id)
        source.force_refresh(source.access_token())
        return Result(summary="QuickBooks authorization renewed before it could expire")
    crm = DbCrmTokenSource(ctx.runtime, ctx.location_id)
    crm.force_refresh(crm.access_token())
    return Result(summary="CRM authorization renewed before it could expire")

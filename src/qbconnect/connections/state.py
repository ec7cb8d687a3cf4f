"""Connection facts the sync needs: is a location syncing, and the uninstall transition."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.db.models import Location, QboConnection


def connection_of(session: Session, location_id: str) -> QboConnection | None:
    """The location's QuickBooks connection row, whatever its status (history is kept after disconnect)."""
    return session.execute(select(QboConnection).where(QboConnection.location_id == location_id)).scalar_one_or_none()


def syncing_location_ids(session: Session) -> list[str]:
    """Locations with the app installed and a working QuickBooks connection (what periodic passes visit)."""
    rows = session.execute(
        select(Location.id)
        .join(QboConnection, QboConnection.location_id == Location.id)
        .where(
            QboConnection.active_realm_id.is_not(None),
            QboConnection.status == "connected",
            Location.crm_status != "uninstalled",
        )
        .order_by(Location.id)
    ).scalars()
    return list(rows)


def active_connection(session: Session, location_id: str) -> QboConnection | None:
    return session.execute(
        select(QboConnection).where(
            QboConnection.location_id == location_id, QboConnection.active_realm_id.is_not(None)
        )
    ).scalar_one_or_none()


def is_syncing(session: Session, location_id: str) -> bool:
    """A location syncs while the app is installed and its QuickBooks connection is usable."""
    location = session.get(Location, location_id)
    if location is None or location.crm_status == "uninstalled":
        return False
    connection = active_connection(session, location_id)
    return connection is not None and connection.status == "connected"


def uninstall_location(session: Session, location: Location) -> None:
    """AppUninstall: stop syncing and delete the CRM tokens (history is kept)."""
    location.crm_status = "uninstalled"
    location.crm_access_token = None
    location.crm_refresh_token = None
    location.crm_token_expires_at = None
    location.updated_at = utcnow()

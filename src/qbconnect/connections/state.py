"""Connection facts the sync needs: is a location syncing, and the uninstall transition."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Row, bindparam, select
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
    return session.execute(_ACTIVE_CONNECTION, {"location": location_id}).scalar_one_or_none()


# Built once: most jobs start by reading their location's connection.
_ACTIVE_CONNECTION = select(QboConnection).where(
    QboConnection.location_id == bindparam("location"), QboConnection.active_realm_id.is_not(None)
)


@dataclass(frozen=True)
class SyncStatus:
    """What webhook intake needs to know of a location, read in one query."""

    location_id: str
    uninstalled: bool
    syncing: bool  # installed, and its QuickBooks connection usable (see :func:`is_syncing`)


def _status(row: Row[str, str, str] | None) -> SyncStatus | None:
    if row is None:
        return None
    location_id, crm_status, connection_status = row
    uninstalled = crm_status == "uninstalled"
    return SyncStatus(location_id, uninstalled, not uninstalled and connection_status == "connected")


def sync_status(session: Session, location_id: str) -> SyncStatus | None:
    """The location's :class:`SyncStatus`; None when the location is unknown."""
    return _status(session.connection().execute(_STATUS_OF_LOCATION, {"location": location_id}).first())


def sync_status_of_realm(session: Session, realm_id: str) -> SyncStatus | None:
    """The :class:`SyncStatus` of the location a QuickBooks company is actively connected to; None if none."""
    return _status(session.connection().execute(_STATUS_OF_REALM, {"realm": realm_id}).first())


# Built once: webhook intake asks one of these for every event.
_STATUS_OF_LOCATION = (
    select(Location.id, Location.crm_status, QboConnection.status)
    .outerjoin(QboConnection, (QboConnection.location_id == Location.id) & QboConnection.active_realm_id.is_not(None))
    .where(Location.id == bindparam("location"))
)
_STATUS_OF_REALM = (
    select(Location.id, Location.crm_status, QboConnection.status)
    .join(QboConnection, QboConnection.location_id == Location.id)
    .where(QboConnection.active_realm_id == bindparam("realm"))
)


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

"""Location facts the contact sync reads and writes: who syncs, settings, and its ``Location.state`` keys.

``Location.state`` is one JSON document shared by several features (cursors, import progress). Each
write re-reads the row inside the writing transaction (``FOR UPDATE`` on PostgreSQL; SQLite's write lock
is already held) and replaces only its own key, so features never undo each other's writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.connections.state import active_connection
from qbconnect.db.models import Location
from qbconnect.domain import location_settings
from qbconnect.domain.location_settings import LocationSettings

IMPORT_KEY = "customer_import"
CDC_KEY = "qbo_cdc"


@dataclass(frozen=True)
class ContactSetup:
    """What a contact job needs to know before calling out (read in a short transaction)."""

    location_id: str
    syncing: bool
    realm_id: str | None
    settings: LocationSettings
    state: dict[str, Any]
    connected_at: Any = None


def read_setup(session: Session, location_id: str) -> ContactSetup:
    location = session.get(Location, location_id, populate_existing=True)
    if location is None:
        return ContactSetup(location_id, False, None, location_settings.load(None), {})
    connection = active_connection(session, location_id)
    syncing = location.crm_status != "uninstalled" and connection is not None and connection.status == "connected"
    return ContactSetup(
        location_id=location_id,
        syncing=syncing,
        realm_id=connection.realm_id if connection is not None else None,
        settings=location_settings.load(location.settings),
        state=dict(location.state or {}),
        connected_at=connection.connected_at if connection is not None else None,
    )


def _locked_location(session: Session, location_id: str) -> Location | None:
    stmt = select(Location).where(Location.id == location_id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def read_state(session: Session, location_id: str, key: str) -> dict[str, Any]:
    location = session.get(Location, location_id, populate_existing=True)
    if location is None:
        return {}
    value = (location.state or {}).get(key)
    return dict(value) if isinstance(value, dict) else {}


def write_state(session: Session, location_id: str, key: str, value: dict[str, Any]) -> None:
    """Replace ``Location.state[key]`` (and nothing else) in the caller's transaction."""
    location = _locked_location(session, location_id)
    if location is None:
        return
    location.state = {**dict(location.state or {}), key: value}

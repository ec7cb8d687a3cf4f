"""What ``GET /api/locations/{id}`` and the Settings page show: connection, token health, counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.connections.read_budget import read_counts
from qbconnect.connections.state import connection_of, is_syncing
from qbconnect.db.models import Activity, Location, QboConnection
from qbconnect.services.activity_log import health as log_health
from qbconnect.sync.engine import jobs
from qbconnect.sync.links import rows as links

EXPIRING_SOON = timedelta(days=14)


@dataclass(frozen=True)
class TokenHealth:
    status: str  # ok|expiring_soon|expired|needs_reconnect|not_connected
    message: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    refresh_hard_expires_at: datetime | None
    refresh_days_left: int | None  # rolling expiry (renewed by every refresh)
    hard_days_left: int | None  # the five-year limit: a reconnect is needed then
    days_left: int | None  # the sooner of the two

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "access_expires_at": _iso(self.access_expires_at),
            "refresh_expires_at": _iso(self.refresh_expires_at),
            "refresh_hard_expires_at": _iso(self.refresh_hard_expires_at),
            "refresh_days_left": self.refresh_days_left,
            "hard_days_left": self.hard_days_left,
            "days_left": self.days_left,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _days(until: datetime | None, now: datetime) -> int | None:
    return None if until is None else max(0, (until - now).days)


def token_health(connection: QboConnection | None, *, now: datetime | None = None) -> TokenHealth:
    now = now or utcnow()
    if connection is None or connection.active_realm_id is None:
        return TokenHealth("not_connected", "Not connected to QuickBooks.", None, None, None, None, None, None)
    rolling = _days(connection.refresh_expires_at, now)
    hard = _days(connection.refresh_hard_expires_at, now)
    known = [d for d in (rolling, hard) if d is not None]
    days_left = min(known) if known else None
    args = (
        connection.access_expires_at,
        connection.refresh_expires_at,
        connection.refresh_hard_expires_at,
        rolling,
        hard,
        days_left,
    )
    if connection.status == "needs_reconnect":
        reason = connection.status_reason or "QuickBooks refused the saved authorization."
        return TokenHealth("needs_reconnect", f"Reconnect needed: {reason}", *args)
    ends = [d for d in (connection.refresh_expires_at, connection.refresh_hard_expires_at) if d is not None]
    if ends and min(ends) <= now:
        return TokenHealth("expired", "The QuickBooks authorization has expired; reconnect.", *args)
    if days_left is not None and timedelta(days=days_left) < EXPIRING_SOON:
        return TokenHealth(
            "expiring_soon", f"The QuickBooks authorization ends in {days_left} days; reconnect before then.", *args
        )
    message = "Healthy." if days_left is None else f"Healthy: {days_left} days left on the authorization."
    return TokenHealth("ok", message, *args)


def _grouped(session: Session, column: Any, location_id: str, model: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(model.location_id == location_id).group_by(column))
    return {str(key): int(n) for key, n in rows.all()}


def location_json(session: Session, location: Location, settings: Settings | None = None) -> dict[str, Any]:
    """The JSON of ``GET /api/locations/{id}`` (with ``settings``: this month's QuickBooks reads, too)."""
    connection = connection_of(session, location.id)
    health = token_health(connection)
    active = connection is not None and connection.active_realm_id is not None
    qbo: dict[str, Any] = {"status": connection.status if connection else "not_connected"}
    if connection is not None:
        qbo.update(
            realm_id=connection.realm_id,
            company_name=connection.company_name,
            country=connection.country,
            home_currency=connection.home_currency,
            connected_since=_iso(connection.connected_at) if active else None,
            disconnected_at=_iso(connection.disconnected_at),
            needs_reconnect_reason=connection.status_reason if connection.status == "needs_reconnect" else None,
            status_reason=connection.status_reason,
        )
    return {
        "location_id": location.id,
        "name": location.name,
        "crm": {
            "status": location.crm_status,
            "installed_at": _iso(location.installed_at),
            "token_expires_at": _iso(location.crm_token_expires_at),
        },
        "quickbooks": qbo,
        "is_syncing": is_syncing(session, location.id),
        "token_health": health.as_json(),
        "health": log_health(session, location.id),
        "counts": {
            "jobs": jobs.counts_by_state(session, location.id),
            "activity": _grouped(session, Activity.status, location.id, Activity),
            "links": links.counts_by_kind(session, location.id),
        },
        "customer_import": customer_import_progress(location),
        **({"qbo_reads": qbo_reads_json(session, settings, connection)} if settings is not None else {}),
    }


def qbo_reads_json(session: Session, settings: Settings, connection: QboConnection | None) -> dict[str, Any]:
    """This month's metered QuickBooks reads: the location's company (None when never connected), the
    whole app, the budget and its state (normal|tight|exhausted)."""
    return read_counts(session, settings, connection.realm_id if connection is not None else None).as_json()


def customer_import_progress(location: Location) -> dict[str, Any]:
    """``Location.state["customer_import"]`` with a percentage when the total is known."""
    raw = dict((location.state or {}).get("customer_import") or {})
    done = raw.get("done")
    total = raw.get("total")
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        raw["percent"] = min(100, round(100 * done / total))
    elif raw.get("status") == "done":
        raw["percent"] = 100
    return raw

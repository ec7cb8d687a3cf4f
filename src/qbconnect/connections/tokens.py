"""Database-backed token sources for both platforms.

Refresh tokens rotate on both platforms, so a refresh must happen once, under a lock, and the new pair
must be stored before anyone uses it. The lock is the grant's refresh lock (connections/refresh_lock.py:
an advisory lock on PostgreSQL, a file lock beside a SQLite database), never a database transaction: the
row is read in one short transaction, the token endpoint is called with none open, and the new pair is
stored in a second. Inside the lock we re-read the row: if another worker already refreshed (the token
version moved, or the rejected token is no longer the stored one), we use its result instead of spending
the refresh token a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.refresh_lock import refresh_lock
from qbconnect.crm import oauth as crm_oauth
from qbconnect.db.models import CrmCompany, Location, QboConnection
from qbconnect.errors import AuthError, SyncError
from qbconnect.qbo import oauth as qbo_oauth
from qbconnect.runtime import Runtime

log = structlog.get_logger(__name__)
REFRESH_MARGIN = timedelta(minutes=5)


class DbQboTokenSource:
    """Access tokens of one location's QuickBooks connection."""

    def __init__(self, runtime: Runtime, location_id: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.location_id = location_id
        self.clock = clock

    def _select(self, session: Session) -> QboConnection:
        stmt = select(QboConnection).where(QboConnection.location_id == self.location_id)
        connection = session.execute(stmt).scalar_one_or_none()
        if connection is None or connection.active_realm_id is None:
            raise AuthError("This location is not connected to QuickBooks", code="not_connected")
        if connection.status != "connected":
            raise AuthError("The QuickBooks connection needs to be reconnected", code="needs_reconnect")
        return connection

    def access_token(self) -> str:
        # Every platform call asks: the few columns it needs in one statement built once, no ORM object.
        with self.runtime.engine.connect() as db:
            row = db.execute(_QBO_ACCESS, {"location": self.location_id}).first()
        if row is None or row.active_realm_id is None:
            raise AuthError("This location is not connected to QuickBooks", code="not_connected")
        if row.status != "connected":
            raise AuthError("The QuickBooks connection needs to be reconnected", code="needs_reconnect")
        expires = row.access_expires_at
        if row.access_token and expires and expires - REFRESH_MARGIN > self.clock():
            return self.runtime.cipher.decrypt(row.access_token)
        return self._refresh(seen_version=row.token_version, rejected=None)

    def force_refresh(self, rejected_token: str) -> str:
        return self._refresh(seen_version=None, rejected=rejected_token)

    def _refresh(self, *, seen_version: int | None, rejected: str | None) -> str:
        """Refresh once under the grant's refresh lock; the token call runs with no transaction open."""
        settings = self.runtime.settings
        cipher = self.runtime.cipher
        with refresh_lock(self.runtime.engine, f"qbo:{self.location_id}"):
            with self.runtime.sessions() as session:
                connection = self._select(session)
                current = cipher.decrypt(connection.access_token) if connection.access_token else None
                still_valid = (
                    current is not None
                    and connection.access_expires_at is not None
                    and connection.access_expires_at - REFRESH_MARGIN > self.clock()
                )
                if current is not None and (
                    (seen_version is not None and connection.token_version != seen_version and still_valid)
                    or (rejected is not None and current != rejected)
                ):
                    return current  # another worker refreshed while we waited for the lock
                if connection.refresh_token is None:
                    raise AuthError("QuickBooks has no saved authorization; reconnect", code="no_refresh_token")
                refresh_token = cipher.decrypt(connection.refresh_token)
                realm_id = connection.realm_id
            try:
                tokens = qbo_oauth.refresh(
                    self.runtime.http,
                    token_url=settings.qbo_token_url,
                    client_id=settings.qbo_client_id or "",
                    client_secret=settings.secret("qbo_client_secret"),
                    refresh_token=refresh_token,
                    now=self.clock(),
                )
            except AuthError as exc:
                with self.runtime.sessions.begin() as session:
                    mark_qbo_needs_reconnect(self._select(session), str(exc))
                log.warning("qbo.refresh_refused", location_id=self.location_id, realm_id=realm_id)
                raise
            with self.runtime.sessions.begin() as session:
                # Stored even if the connection changed meanwhile: the old refresh token is spent either way.
                connection = self._select(session)
                store_qbo_tokens(self.runtime, connection, tokens)
            log.info("qbo.tokens_refreshed", location_id=self.location_id, realm_id=realm_id)
            return tokens.access_token


# Built once: what ``access_token`` reads before every platform call.
_QBO_ACCESS = select(
    QboConnection.active_realm_id,
    QboConnection.status,
    QboConnection.access_token,
    QboConnection.access_expires_at,
    QboConnection.token_version,
).where(QboConnection.location_id == bindparam("location"))
_CRM_ACCESS = select(Location.crm_status, Location.crm_access_token, Location.crm_token_expires_at).where(
    Location.id == bindparam("location")
)


def store_qbo_tokens(runtime: Runtime, connection: QboConnection, tokens: qbo_oauth.QboTokenSet) -> None:
    cipher = runtime.cipher
    connection.access_token = cipher.encrypt(tokens.access_token)
    connection.refresh_token = cipher.encrypt(tokens.refresh_token)
    connection.access_expires_at = tokens.access_expires_at
    connection.refresh_expires_at = tokens.refresh_expires_at
    if tokens.refresh_hard_expires_at is not None:
        connection.refresh_hard_expires_at = tokens.refresh_hard_expires_at
    connection.token_version += 1


def mark_qbo_needs_reconnect(connection: QboConnection, reason: str) -> None:
    connection.status = "needs_reconnect"
    connection.status_reason = reason


class DbCrmTokenSource:
    """Access tokens of one location's CRM app install."""

    def __init__(self, runtime: Runtime, location_id: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.runtime = runtime
        self.location_id = location_id
        self.clock = clock

    def _select(self, session: Session) -> Location:
        stmt = select(Location).where(Location.id == self.location_id)
        location = session.execute(stmt).scalar_one_or_none()
        if location is None or location.crm_status == "uninstalled":
            raise AuthError("The app is not installed in this CRM location", code="not_installed")
        if location.crm_access_token is None and _company_of(session, location) is None:
            raise AuthError("The app is not installed in this CRM location", code="not_installed")
        if location.crm_status == "needs_reconnect":
            # HighLevel already refused the saved refresh token: reinstalling the app stores a new one.
            raise AuthError("The CRM refused the app's authorization; reinstall the app", code="needs_reconnect")
        return location

    def access_token(self) -> str:
        # The common case in one statement built once (no ORM object): installed, with a token still valid.
        with self.runtime.engine.connect() as db:
            row = db.execute(_CRM_ACCESS, {"location": self.location_id}).first()
        if row is None or row.crm_status == "uninstalled":
            raise AuthError("The app is not installed in this CRM location", code="not_installed")
        if row.crm_access_token is not None:
            if row.crm_status == "needs_reconnect":
                raise AuthError("The CRM refused the app's authorization; reinstall the app", code="needs_reconnect")
            expires = row.crm_token_expires_at
            if row.crm_access_token and expires and expires - REFRESH_MARGIN > self.clock():
                return self.runtime.cipher.decrypt(row.crm_access_token)
        with self.runtime.sessions() as session:  # no token yet (agency install), or near expiry
            location = self._select(session)
            expires = location.crm_token_expires_at
            if location.crm_access_token and expires and expires - REFRESH_MARGIN > self.clock():
                return self.runtime.cipher.decrypt(location.crm_access_token)
            current = self.runtime.cipher.decrypt(location.crm_access_token) if location.crm_access_token else ""
        return self._refresh(rejected=current)

    def force_refresh(self, rejected_token: str) -> str:
        return self._refresh(rejected=rejected_token)

    def _refresh(self, *, rejected: str) -> str:
        """Refresh (or, for an agency install, mint) once under the refresh lock, with no transaction open
        across the token call."""
        settings = self.runtime.settings
        cipher = self.runtime.cipher
        with refresh_lock(self.runtime.engine, f"crm:{self.location_id}"):
            with self.runtime.sessions() as session:
                location = self._select(session)
                current = cipher.decrypt(location.crm_access_token) if location.crm_access_token else None
                if current is not None and current != rejected:
                    return current
                company = _company_of(session, location) if not location.crm_refresh_token else None
                company_id = company.id if company is not None else None
                refresh_token = cipher.decrypt(location.crm_refresh_token) if location.crm_refresh_token else None
            if company_id is not None:
                # Installed by an agency: location tokens have no refresh token; mint one from the company's.
                return ensure_location_token(self.runtime, company_id, self.location_id, now=self.clock())
            if refresh_token is None:
                raise AuthError("The CRM install has no saved authorization; reinstall the app", code="no_refresh")
            try:
                tokens = crm_oauth.refresh(
                    self.runtime.http,
                    token_url=settings.crm_token_endpoint,
                    client_id=settings.crm_client_id or "",
                    client_secret=settings.secret("crm_client_secret"),
                    refresh_token=refresh_token,
                    now=self.clock(),
                )
            except AuthError as exc:
                with self.runtime.sessions.begin() as session:
                    refused = session.get(Location, self.location_id)
                    if refused is not None:
                        refused.crm_status = "needs_reconnect"
                log.warning("crm.refresh_refused", location_id=self.location_id, error=str(exc))
                raise
            with self.runtime.sessions.begin() as session:
                stored = session.get(Location, self.location_id)
                if stored is not None:
                    store_crm_tokens(self.runtime, stored, tokens)
            return tokens.access_token


def _company_of(session: Session, location: Location) -> CrmCompany | None:
    """The agency install that can mint this location's tokens, if any."""
    if not location.company_id:
        return None
    company = session.get(CrmCompany, location.company_id)
    if company is None or company.status != "installed" or company.refresh_token is None:
        return None
    return company


def company_access_token(runtime: Runtime, company_id: str, *, now: datetime) -> str:
    """The agency token, refreshed (``user_type=Company``, rotating refresh token) when near expiry, under
    the company's refresh lock and with no transaction open across the token call."""
    cipher = runtime.cipher
    settings = runtime.settings
    with refresh_lock(runtime.engine, f"crm-company:{company_id}"):
        with runtime.sessions() as session:
            company = session.get(CrmCompany, company_id)
            if company is None or company.refresh_token is None:
                raise AuthError("The agency install has no saved authorization; reinstall the app", code="no_refresh")
            if company.access_token and company.token_expires_at and company.token_expires_at - REFRESH_MARGIN > now:
                return cipher.decrypt(company.access_token)
            refresh_token = cipher.decrypt(company.refresh_token)
        try:
            tokens = crm_oauth.refresh(
                runtime.http,
                token_url=settings.crm_token_endpoint,
                client_id=settings.crm_client_id or "",
                client_secret=settings.secret("crm_client_secret"),
                refresh_token=refresh_token,
                now=now,
                user_type=crm_oauth.USER_TYPE_COMPANY,
            )
        except AuthError:
            with runtime.sessions.begin() as session:
                refused = session.get(CrmCompany, company_id)
                if refused is not None:
                    refused.status = "needs_reconnect"
            log.warning("crm.company_refresh_refused", company_id=company_id)
            raise
        with runtime.sessions.begin() as session:
            stored = session.get(CrmCompany, company_id)
            if stored is not None:
                store_company_tokens(runtime, stored, tokens)
        return tokens.access_token


def ensure_location_token(runtime: Runtime, company_id: str, location_id: str, *, now: datetime) -> str:
    """``/oauth/locationToken`` with the agency token; the location's new access token is stored in a
    transaction of its own after the call."""
    tokens = crm_oauth.location_token(
        runtime.http,
        api_base=runtime.settings.crm_api_base,
        company_token=company_access_token(runtime, company_id, now=now),
        company_id=company_id,
        location_id=location_id,
        now=now,
    )
    with runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        if location is not None:
            store_crm_tokens(runtime, location, tokens)
    log.info("crm.location_token_minted", location_id=location_id, company_id=company_id)
    return tokens.access_token


def store_company_tokens(runtime: Runtime, company: CrmCompany, tokens: crm_oauth.CrmTokenSet) -> None:
    cipher = runtime.cipher
    company.access_token = cipher.encrypt(tokens.access_token)
    company.refresh_token = cipher.encrypt(tokens.refresh_token)
    company.token_expires_at = tokens.expires_at
    if tokens.scope:
        company.scope = tokens.scope
    company.status = "installed"


def store_crm_tokens(runtime: Runtime, location: Location, tokens: crm_oauth.CrmTokenSet) -> None:
    cipher = runtime.cipher
    location.crm_access_token = cipher.encrypt(tokens.access_token)
    # Minted location tokens come without a refresh token: the agency's token mints the next one.
    location.crm_refresh_token = cipher.encrypt(tokens.refresh_token) if tokens.refresh_token else None
    location.crm_token_expires_at = tokens.expires_at
    if tokens.scope:
        location.crm_scope = tokens.scope
    if location.crm_status != "uninstalled":
        location.crm_status = "installed"


__all__ = [
    "DbCrmTokenSource",
    "DbQboTokenSource",
    "SyncError",
    "company_access_token",
    "ensure_location_token",
    "mark_qbo_needs_reconnect",
    "store_company_tokens",
    "store_crm_tokens",
    "store_qbo_tokens",
]

"""Install, connect, disconnect: the state changes of a location's two connections.

The web routes (OAuth callbacks, Disconnect) and the demo call these; they never commit (the caller does).
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.state import connection_of
from qbconnect.connections.tokens import store_company_tokens, store_crm_tokens, store_qbo_tokens
from qbconnect.crm.oauth import CrmTokenSet
from qbconnect.db.models import CrmCompany, Location, QboConnection
from qbconnect.domain.company import CompanyFacts
from qbconnect.errors import PermanentError
from qbconnect.qbo.oauth import QboTokenSet
from qbconnect.runtime import Runtime

log = structlog.get_logger(__name__)


class RealmConflictError(PermanentError):
    """The QuickBooks company is already connected to another CRM location."""


def install_location(runtime: Runtime, session: Session, tokens: CrmTokenSet, *, name: str | None = None) -> Location:
    """The Marketplace app was installed in a location (or re-installed): store its tokens."""
    if not tokens.location_id:
        raise PermanentError("The CRM returned no locationId: install the app from a sub-account")
    location = session.get(Location, tokens.location_id)
    if location is None:
        location = Location(id=tokens.location_id, settings={}, state={})
        session.add(location)
    location.company_id = tokens.company_id or location.company_id
    if name:
        location.name = name
    location.crm_status = "installed"
    location.installed_at = utcnow()  # the latest install: an uninstall webhook dated before it is stale
    store_crm_tokens(runtime, location, tokens)
    session.flush()
    return location


def install_company(runtime: Runtime, session: Session, tokens: CrmTokenSet) -> CrmCompany:
    """An agency (Company) grant: store the company token that mints its locations' tokens."""
    if not tokens.company_id:
        raise PermanentError("The CRM returned no companyId for the agency install")
    company = session.get(CrmCompany, tokens.company_id)
    if company is None:
        company = CrmCompany(id=tokens.company_id)
        session.add(company)
    company.installed_at = utcnow()
    store_company_tokens(runtime, company, tokens)
    session.flush()
    return company


def install_agency_location(
    session: Session, company_id: str, location_id: str, *, name: str | None = None
) -> tuple[Location, bool]:
    """A location installed through its agency: installed now, its token minted from the company's.
    Returns the location and whether it was (re)installed by this call."""
    location = session.get(Location, location_id)
    fresh = location is None or location.crm_status == "uninstalled"
    if location is None:
        location = Location(id=location_id, settings={}, state={})
        session.add(location)
    location.company_id = company_id
    if name and not location.name:
        location.name = name
    if fresh:
        location.crm_status = "installed"
        location.installed_at = utcnow()
    session.flush()
    return location, fresh


def connect_quickbooks(
    runtime: Runtime,
    session: Session,
    *,
    location_id: str,
    realm_id: str,
    tokens: QboTokenSet,
    company_info: dict[str, Any],
    preferences: dict[str, Any],
) -> QboConnection:
    """Store the QuickBooks connection of a location. A realm serves one location at a time."""
    other = session.execute(
        select(QboConnection).where(QboConnection.active_realm_id == realm_id, QboConnection.location_id != location_id)
    ).scalar_one_or_none()
    if other is not None:
        raise RealmConflictError(
            f"This QuickBooks company ({company_info.get('CompanyName') or realm_id}) is already connected to "
            "another location. Disconnect it there first."
        )
    connection = connection_of(session, location_id)
    if connection is not None and connection.active_realm_id not in (None, realm_id):
        # Links point at the other company's ids: switching needs an explicit Disconnect first.
        current = connection.company_name or connection.realm_id
        raise RealmConflictError(
            f"This location is connected to another QuickBooks company ({current}). "
            "Disconnect it first to switch companies."
        )
    now = utcnow()
    if connection is None:
        connection = QboConnection(location_id=location_id, realm_id=realm_id, token_version=0)
        session.add(connection)
    if connection.realm_id != realm_id or connection.active_realm_id is None:
        connection.connected_at = now
    connection.realm_id = realm_id
    connection.active_realm_id = realm_id
    connection.status = "connected"
    connection.status_reason = None
    connection.disconnected_at = None
    connection.company_name = company_info.get("CompanyName")
    connection.country = str(company_info.get("Country") or "").upper() or None
    connection.home_currency = _home_currency(preferences)
    connection.preferences = preferences
    store_qbo_tokens(runtime, connection, tokens)
    session.flush()
    log.info("qbo.connected", location_id=location_id, realm_id=realm_id)
    return connection


def disconnect_quickbooks(connection: QboConnection, *, reason: str) -> None:
    connection.status = "disconnected"
    connection.status_reason = reason
    connection.active_realm_id = None
    connection.access_token = None
    connection.refresh_token = None
    connection.access_expires_at = None
    connection.disconnected_at = utcnow()


def _home_currency(preferences: dict[str, Any]) -> str:
    currency = (preferences.get("CurrencyPrefs") or {}).get("HomeCurrency") or {}
    value = currency.get("value") if isinstance(currency, dict) else currency
    return str(value or "USD").upper()


def company_facts(connection: QboConnection) -> CompanyFacts:
    """What the mapping needs to know about the company (from CompanyInfo and Preferences)."""
    prefs = connection.preferences or {}
    sales = prefs.get("SalesFormsPrefs") or {}
    currency = prefs.get("CurrencyPrefs") or {}
    country = (connection.country or "US").upper()
    return CompanyFacts(
        is_us=country in ("US", "USA"),
        custom_txn_numbers=bool(sales.get("CustomTxnNumbers")),
        multicurrency=bool(currency.get("MultiCurrencyEnabled")),
        home_currency=connection.home_currency or _home_currency(prefs),
    )

"""The OAuth round trips behind the web routes: app install, QB Connect, and Disconnect.

Each function is one user action and owns its transactions (the routes stay thin). Network calls to the
platforms never happen inside a database transaction, except the ones that must be atomic with storage
(none here: codes are exchanged first, then the result is stored in one transaction).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections import service
from qbconnect.connections.clients import connecting_qbo_client
from qbconnect.connections.oauth_state import (
    consume_install_state,
    consume_state,
    issue_install_state,
    issue_state,
)
from qbconnect.connections.state import active_connection
from qbconnect.connections.tokens import ensure_location_token
from qbconnect.crm import oauth as crm_oauth
from qbconnect.db.models import Location
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.errors import AuthError, PermanentError, SyncError
from qbconnect.qbo import oauth as qbo_oauth
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs, routing

log = structlog.get_logger(__name__)

CATCH_UP_KINDS = (routing.INVOICE_RECONCILE, routing.TRANSACTION_POLL, routing.QBO_CDC)


class NotInstalledError(PermanentError):
    """The location has not installed the app (or uninstalled it)."""


def crm_redirect_uri(runtime: Runtime) -> str:
    return f"{runtime.settings.public_url.rstrip('/')}/oauth/crm/callback"


def qbo_redirect_uri(runtime: Runtime) -> str:
    return f"{runtime.settings.public_url.rstrip('/')}/oauth/quickbooks/callback"


def crm_install_url(runtime: Runtime) -> str:
    """Where an agency admin goes to install the app on a location (HighLevel's choose-location page),
    with a signed, single-use ``state`` that the callback verifies."""
    settings = runtime.settings
    with runtime.sessions.begin() as session:
        state = issue_install_state(session, settings.secret("secret_key"), now=utcnow())
    return crm_oauth.install_url(
        auth_url=settings.crm_auth_url,
        client_id=settings.crm_client_id or "",
        redirect_uri=crm_redirect_uri(runtime),
        scopes=crm_oauth.SCOPES,
        state=state,
    )


def finish_crm_install(runtime: Runtime, code: str, state: str | None = None) -> str | None:
    """``/oauth/crm/callback``: exchange the code and store the tokens. Returns the installed location's id
    (None for an agency install of several locations: the caller shows the location picker).

    A Location grant is one location. A Company grant (``userType`` ``Company`` in the answer: an agency
    installing the app, e.g. in bulk) goes to :func:`finish_agency_install`.

    ``state`` is present when the install started from our own link: it must verify (StateError otherwise)
    and is used up before the code is exchanged. Marketplace installs carry none.
    """
    settings = runtime.settings
    if state:
        with runtime.sessions.begin() as session:
            consume_install_state(session, settings.secret("secret_key"), state, now=utcnow())
    tokens = crm_oauth.exchange_code(
        runtime.http,
        token_url=settings.crm_token_endpoint,
        client_id=settings.crm_client_id or "",
        client_secret=settings.secret("crm_client_secret"),
        code=code,
        redirect_uri=crm_redirect_uri(runtime),
        now=utcnow(),
    )
    if tokens.is_company:
        installed = finish_agency_install(runtime, tokens)
        return installed[0] if len(installed) == 1 else None
    with runtime.sessions.begin() as session:
        location = service.install_location(runtime, session, tokens)
        location_id = location.id
    log.info("crm.installed", location_id=location_id)
    return location_id


def finish_agency_install(runtime: Runtime, tokens: crm_oauth.CrmTokenSet) -> list[str]:
    """An agency (Company) grant, e.g. a bulk install: store the company token, list the locations the
    app is installed in (``/oauth/installedLocations``, plus the grant's ``approvedLocations``), mint a
    location token for each (``/oauth/locationToken``) and treat each as installed. Returns their ids.

    A location whose token cannot be minted now stays installed without one: the token source mints it
    on first use (connections/tokens.py).
    """
    settings = runtime.settings
    now = utcnow()
    with runtime.sessions.begin() as session:
        company = service.install_company(runtime, session, tokens)
        company_id = company.id
    found = crm_oauth.installed_locations(
        runtime.http,
        api_base=settings.crm_api_base,
        company_token=tokens.access_token,
        company_id=company_id,
        app_id=crm_oauth.app_id_of(settings.crm_client_id or ""),
    )
    names = {item.location_id: item.name for item in found}
    for location_id in tokens.approved_locations:
        names.setdefault(location_id, None)
    installed: list[str] = []
    for location_id, name in names.items():
        with runtime.sessions.begin() as session:
            service.install_agency_location(session, company_id, location_id, name=name)
        try:
            ensure_location_token(runtime, company_id, location_id, now=now)
        except SyncError as exc:
            log.warning("crm.agency_location_token_failed", location_id=location_id, error=exc.message)
        installed.append(location_id)
    log.info("crm.agency_installed", company_id=company_id, locations=len(installed))
    return installed


def begin_qbo_connect(runtime: Runtime, location_id: str) -> str:
    """``/connect/quickbooks``: the Intuit authorize URL with a fresh state bound to the location."""
    settings = runtime.settings
    with runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        if location is None or location.crm_status == "uninstalled":
            raise NotInstalledError(
                f"Location {location_id} has not installed the app; install it from the marketplace first."
            )
        state = issue_state(session, settings.secret("secret_key"), location_id, now=utcnow())
    return qbo_oauth.authorize_url(
        auth_url=settings.qbo_auth_url,
        client_id=settings.qbo_client_id or "",
        redirect_uri=qbo_redirect_uri(runtime),
        state=state,
        scope=qbo_oauth.SCOPE_ACCOUNTING,
    )


@dataclass(frozen=True)
class Connected:
    location_id: str
    realm_id: str
    company_name: str | None
    reconnected: bool


def finish_qbo_connect(runtime: Runtime, *, code: str, state: str, realm_id: str) -> Connected:
    """``/oauth/quickbooks/callback``. Raises StateError, RealmConflictError or SyncError (plain messages)."""
    settings = runtime.settings
    # Use the state up first, in its own transaction: a replay is refused even if what follows fails.
    with runtime.sessions.begin() as session:
        location_id = consume_state(session, settings.secret("secret_key"), state, now=utcnow())
    if not realm_id:
        raise PermanentError("QuickBooks did not say which company was chosen (no realmId). Please try again.")
    tokens = qbo_oauth.exchange_code(
        runtime.http,
        token_url=settings.qbo_token_url,
        client_id=settings.qbo_client_id or "",
        client_secret=settings.secret("qbo_client_secret"),
        code=code,
        redirect_uri=qbo_redirect_uri(runtime),
        now=utcnow(),
    )
    client = connecting_qbo_client(runtime, realm_id, tokens.access_token)
    company_info = client.company_info()
    preferences = client.preferences()
    with runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        if location is None or location.crm_status == "uninstalled":
            raise NotInstalledError("This location has uninstalled the app; install it again first.")
        before = active_connection(session, location_id)
        reconnected = before is not None and before.status == "needs_reconnect"
        # A realm conflict raises here, before anything is stored. The tokens are not revoked: Intuit
        # keeps one authorization per app and company, and it belongs to the other location.
        connection = service.connect_quickbooks(
            runtime,
            session,
            location_id=location_id,
            realm_id=realm_id,
            tokens=tokens,
            company_info=company_info,
            preferences=preferences,
        )
        reason = "reconnected to QuickBooks" if reconnected else "connected to QuickBooks"
        start_customer_import(session, location_id, reason)
        if reconnected:
            retried = jobs.reenqueue_failed(session, location_id, categories=["auth"], reason=reason)
            for kind in CATCH_UP_KINDS:
                jobs.enqueue(session, location_id, kind, "all", "catch up after reconnecting")
            log.info("qbo.reconnected", location_id=location_id, realm_id=realm_id, retried=retried)
        result = Connected(location_id, realm_id, connection.company_name, reconnected)
    return result


def start_customer_import(session: Session, location_id: str, reason: str) -> None:
    """Start the QuickBooks → CRM customer import (the customer handler's own starter when it has one)."""
    module = importlib.import_module("qbconnect.sync.contacts.handler")
    starter = getattr(module, "start_customer_import", None)
    if callable(starter):
        starter(session, location_id, reason)
        return
    location = session.get(Location, location_id)
    if location is not None and load_settings(location.settings).import_contacts:
        jobs.enqueue(session, location_id, routing.CUSTOMER_IMPORT, "all", reason)


@dataclass(frozen=True)
class Disconnected:
    revoked: bool
    message: str


def disconnect(runtime: Runtime, location_id: str, *, reason: str = "disconnected by an admin") -> Disconnected:
    """Revoke at Intuit (with the refresh token), then mark the connection disconnected. History stays."""
    settings = runtime.settings
    cipher = runtime.cipher
    with runtime.sessions() as session:
        connection = active_connection(session, location_id)
        if connection is None:
            raise PermanentError("This location is not connected to QuickBooks.", code="not_connected")
        stored = connection.refresh_token or connection.access_token
        token = cipher.decrypt(stored) if stored else None
    revoked = False
    message = "Disconnected from QuickBooks; the authorization was revoked at Intuit."
    if token is not None:
        try:
            qbo_oauth.revoke(
                runtime.http,
                revoke_url=settings.qbo_revoke_url,
                client_id=settings.qbo_client_id or "",
                client_secret=settings.secret("qbo_client_secret"),
                token=token,
            )
            revoked = True
        except AuthError:
            revoked = True  # Intuit no longer knows the token: nothing left to revoke
        except SyncError as exc:
            message = (
                "Disconnected here, but QuickBooks could not be reached to revoke the authorization "
                f"({exc.message}). You can remove the app in QuickBooks under Apps > My apps."
            )
            log.warning("qbo.revoke_failed", location_id=location_id, error=exc.message)
    with runtime.sessions.begin() as session:
        connection = active_connection(session, location_id)
        if connection is not None:
            service.disconnect_quickbooks(connection, reason=reason)
    log.info("qbo.disconnected", location_id=location_id, revoked=revoked)
    return Disconnected(revoked=revoked, message=message)

"""HighLevel Marketplace OAuth 2.0: the install URL, the code exchange and the token refresh.

Facts (``docs/Authorization.md``, ``openapi/v2/apps/oauth.json``): the admin installing the app is sent
to ``…/v2/oauth/chooselocation?response_type=code&redirect_uri=…&client_id=…&scope=…``; the app then
POSTs ``application/x-www-form-urlencoded`` to ``/oauth/token`` with ``client_id``, ``client_secret``,
``grant_type`` and ``user_type=Location`` (a sub-account token). Access tokens live a day; refresh tokens
rotate (each refresh returns a new one that must replace the old), so a token request is never retried
here: a retry after an unseen success would present a refresh token that is already spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import structlog

from qbconnect.errors import AuthError, PermanentError, TransientError

log = structlog.get_logger(__name__)

# What the app needs, named as in docs/Scopes.md. Webhook events ride on these scopes too
# (ContactCreate… under contacts.readonly; invoice and order events under their read scopes).
SCOPES: tuple[str, ...] = (
    "contacts.readonly",  # GET /contacts/:id, GET /contacts/search/duplicate
    "contacts.write",  # POST /contacts/, PUT /contacts/:id, POST /contacts/upsert, POST /contacts/:id/tags
    "invoices.readonly",  # GET /invoices/, GET /invoices/:id
    "payments/orders.readonly",  # GET /payments/orders, GET /payments/orders/:id
    "payments/transactions.readonly",  # GET /payments/transactions, GET /payments/transactions/:id
    "payments/subscriptions.readonly",  # GET /payments/subscriptions/:id
    "conversations/message.write",  # POST /conversations/messages (review requests)
    "conversations.readonly",
    "locations.readonly",  # GET /locations/:id (location name and settings)
)

USER_TYPE_LOCATION = "Location"
USER_TYPE_COMPANY = "Company"
OAUTH_VERSION = "2021-07-28"
INSTALLED_PAGE_SIZE = 100


@dataclass(frozen=True)
class CrmTokenSet:
    access_token: str
    refresh_token: str
    expires_at: datetime
    location_id: str | None
    company_id: str | None
    scope: str | None
    # ``Company`` for an agency (bulk) install: no location, ``approved_locations`` instead. Location tokens
    # minted from a company token (``/oauth/locationToken``) come without a refresh token ("").
    user_type: str = USER_TYPE_LOCATION
    approved_locations: tuple[str, ...] = ()

    @property
    def is_company(self) -> bool:
        return self.user_type == USER_TYPE_COMPANY


@dataclass(frozen=True)
class InstalledLocation:
    location_id: str
    name: str | None


def install_url(
    *,
    auth_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str | None = None,
) -> str:
    """The choose-location URL an admin opens to install the app on a location."""
    params: dict[str, str] = {
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "scope": " ".join(scopes),
    }
    if state is not None:
        params["state"] = state
    parts = urlsplit(auth_url)
    query = urlencode(params, quote_via=quote)
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def exchange_code(
    http: httpx.Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str | None,
    now: datetime,
) -> CrmTokenSet:
    """Trade the install's authorization code for a location token set."""
    form = {
        "client_id": client_id,
        "client_secret": client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "user_type": USER_TYPE_LOCATION,
    }
    if redirect_uri is not None:
        form["redirect_uri"] = redirect_uri
    return _token_request(http, token_url, form, now=now, action="finish the app install")


def refresh(
    http: httpx.Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    now: datetime,
    user_type: str = USER_TYPE_LOCATION,
) -> CrmTokenSet:
    """Trade a refresh token for a new token set (the old refresh token is spent)."""
    form = {
        "client_id": client_id,
        "client_secret": client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "user_type": user_type,
    }
    return _token_request(http, token_url, form, now=now, action="renew the CRM connection")


def app_id_of(client_id: str) -> str:
    """The Marketplace app id: the part of the client id before ``-`` ([inferred] from HighLevel's client
    ids, e.g. ``68a32958b5154ca8bbdc4d40-meh5chaj``)."""
    return client_id.split("-", 1)[0]


def location_token(
    http: httpx.Client,
    *,
    api_base: str,
    company_token: str,
    company_id: str,
    location_id: str,
    now: datetime,
) -> CrmTokenSet:
    """``POST /oauth/locationToken`` (agency token, scope ``oauth.write``): a location's access token.

    The answer has no refresh token: when it expires, mint another from the company token.
    """
    return _token_request(
        http,
        f"{api_base.rstrip('/')}/oauth/locationToken",
        {"companyId": company_id, "locationId": location_id},
        now=now,
        action="open a location of the agency install",
        bearer=company_token,
        allow_no_refresh=True,
    )


def installed_locations(
    http: httpx.Client, *, api_base: str, company_token: str, company_id: str, app_id: str
) -> list[InstalledLocation]:
    """``GET /oauth/installedLocations`` (agency token, ``oauth.readonly``): where the app is installed."""
    found: list[InstalledLocation] = []
    skip = 0
    while True:
        params = {
            "companyId": company_id,
            "appId": app_id,
            "isInstalled": "true",
            "skip": str(skip),
            "limit": str(INSTALLED_PAGE_SIZE),
        }
        try:
            response = http.get(
                f"{api_base.rstrip('/')}/oauth/installedLocations",
                params=params,
                headers={
                    "Authorization": f"Bearer {company_token}",
                    "Version": OAUTH_VERSION,
                    "Accept": "application/json",
                },
            )
        except httpx.TransportError as exc:
            raise TransientError(
                "Could not reach the CRM to list the agency's locations; will try again.",
                code="network",
                detail=type(exc).__name__,
            ) from exc
        body = _json_or_empty(response)
        if response.status_code != 200:
            _raise_for(response.status_code, body, "list the agency's locations")
        page = body.get("locations")
        rows = page if isinstance(page, list) else []
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("_id"), str) and row.get("isInstalled", True) is not False:
                found.append(InstalledLocation(row["_id"], _str_or_none(row.get("name"))))
        skip += len(rows)
        total = body.get("count")
        if len(rows) < INSTALLED_PAGE_SIZE or not isinstance(total, int | float) or skip >= total:
            return found


def _token_request(
    http: httpx.Client,
    token_url: str,
    form: Mapping[str, str],
    *,
    now: datetime,
    action: str,
    bearer: str | None = None,
    allow_no_refresh: bool = False,
) -> CrmTokenSet:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    headers = {"Accept": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
        headers["Version"] = OAUTH_VERSION
    try:
        response = http.post(token_url, data=dict(form), headers=headers)
    except httpx.TransportError as exc:
        raise TransientError(
            f"Could not reach the CRM to {action}; will try again.",
            code="network",
            detail=type(exc).__name__,
        ) from exc
    body = _json_or_empty(response)
    if response.status_code in (200, 201):
        return _token_set(body, now=now, action=action, allow_no_refresh=allow_no_refresh)
    log.warning(
        "crm.oauth.refused",
        grant_type=form.get("grant_type"),
        status=response.status_code,
        reason=_error_reason(body),
        trace_id=body.get("traceId"),
    )
    _raise_for(response.status_code, body, action)


def _raise_for(status: int, body: Mapping[str, Any], action: str) -> NoReturn:
    reason = _error_reason(body)
    if status == 429 or status >= 500:
        raise TransientError(
            f"The CRM could not {action} right now (HTTP {status}); will try again.",
            code=f"http_{status}",
            detail=reason,
        )
    if status in (400, 401, 403):
        raise AuthError(
            f"The CRM refused to {action} ({reason or 'invalid grant'}). Reconnect the app.",
            code=str(body.get("error") or f"http_{status}"),
            detail=reason,
        )
    raise PermanentError(
        f"The CRM could not {action} (HTTP {status}: {reason or 'no reason given'}).",
        code=f"http_{status}",
        detail=reason,
    )


def _token_set(body: Mapping[str, Any], *, now: datetime, action: str, allow_no_refresh: bool = False) -> CrmTokenSet:
    access = body.get("access_token")
    refresh_token = body.get("refresh_token")
    if allow_no_refresh and refresh_token is None:
        refresh_token = ""
    if not isinstance(access, str) or not access or not isinstance(refresh_token, str):
        raise PermanentError(f"The CRM's answer when trying to {action} had no tokens in it.")
    if not refresh_token and not allow_no_refresh:
        raise PermanentError(f"The CRM's answer when trying to {action} had no tokens in it.")
    approved = body.get("approvedLocations")
    expires_in = body.get("expires_in")
    seconds = float(expires_in) if isinstance(expires_in, int | float) else 86399.0
    return CrmTokenSet(
        access_token=access,
        refresh_token=refresh_token,
        expires_at=now + timedelta(seconds=seconds),
        location_id=_str_or_none(body.get("locationId")),
        company_id=_str_or_none(body.get("companyId")),
        scope=_str_or_none(body.get("scope")),
        user_type=USER_TYPE_COMPANY if body.get("userType") == USER_TYPE_COMPANY else USER_TYPE_LOCATION,
        approved_locations=tuple(item for item in approved if isinstance(item, str) and item)
        if isinstance(approved, list)
        else (),
    )


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_reason(body: Mapping[str, Any]) -> str:
    for key in ("error_description", "message", "error"):
        value = body.get(key)
        if isinstance(value, list):
            return "; ".join(str(v) for v in value)
        if isinstance(value, str) and value:
            return value
    return ""


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

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
from typing import Any
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


@dataclass(frozen=True)
class CrmTokenSet:
    access_token: str
    refresh_token: str
    expires_at: datetime
    location_id: str | None
    company_id: str | None
    scope: str | None


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
    return _token_request(http, token_url, form, now=now, action="finish the HighLevel app install")


def refresh(
    http: httpx.Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    now: datetime,
) -> CrmTokenSet:
    """Trade a refresh token for a new token set (the old refresh token is spent)."""
    form = {
        "client_id": client_id,
        "client_secret": client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "user_type": USER_TYPE_LOCATION,
    }
    return _token_request(http, token_url, form, now=now, action="renew the HighLevel connection")


def _token_request(
    http: httpx.Client, token_url: str, form: Mapping[str, str], *, now: datetime, action: str
) -> CrmTokenSet:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        response = http.post(
            token_url,
            data=dict(form),
            headers={"Accept": "application/json"},
        )
    except httpx.TransportError as exc:
        raise TransientError(
            f"Could not reach HighLevel to {action}; will try again.",
            code="network",
            detail=type(exc).__name__,
        ) from exc
    body = _json_or_empty(response)
    if response.status_code == 200:
        return _token_set(body, now=now, action=action)
    reason = _error_reason(body)
    log.warning(
        "crm.oauth.refused",
        grant_type=form.get("grant_type"),
        status=response.status_code,
        reason=reason,
        trace_id=body.get("traceId"),
    )
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(
            f"HighLevel could not {action} right now (HTTP {response.status_code}); will try again.",
            code=f"http_{response.status_code}",
            detail=reason,
        )
    if response.status_code in (400, 401, 403):
        raise AuthError(
            f"HighLevel refused to {action} ({reason or 'invalid grant'}). Reconnect the app.",
            code=str(body.get("error") or f"http_{response.status_code}"),
            detail=reason,
        )
    raise PermanentError(
        f"HighLevel could not {action} (HTTP {response.status_code}: {reason or 'no reason given'}).",
        code=f"http_{response.status_code}",
        detail=reason,
    )


def _token_set(body: Mapping[str, Any], *, now: datetime, action: str) -> CrmTokenSet:
    access = body.get("access_token")
    refresh_token = body.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh_token, str) or not refresh_token:
        raise PermanentError(f"HighLevel's answer when trying to {action} had no tokens in it.")
    expires_in = body.get("expires_in")
    seconds = float(expires_in) if isinstance(expires_in, int | float) else 86399.0
    return CrmTokenSet(
        access_token=access,
        refresh_token=refresh_token,
        expires_at=now + timedelta(seconds=seconds),
        location_id=_str_or_none(body.get("locationId")),
        company_id=_str_or_none(body.get("companyId")),
        scope=_str_or_none(body.get("scope")),
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

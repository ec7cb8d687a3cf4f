"""Intuit OAuth 2.0 (plain RFC 6749 over httpx, client authentication with HTTP Basic).

Endpoints come from settings (Intuit's discovery document lists them): authorize
``https://appcenter.intuit.com/connect/oauth2``, token ``…/oauth2/v1/tokens/bearer``, revoke
``…/v2/oauth2/tokens/revoke``. Every token call opts in to the refresh token's five-year hard expiry
(``x-include-refresh-token-hard-expires-in: true`` → ``x_refresh_token_hard_expires_in``).
Tokens are never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from qbconnect.errors import AuthError, PermanentError, TransientError

SCOPE_ACCOUNTING = "com.intuit.quickbooks.accounting"
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
INVALID_GRANT_MESSAGE = "QuickBooks refused the saved authorization (invalid_grant); reconnect"

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class QboTokenSet:
    """One token response, with lifetimes turned into absolute UTC times."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    refresh_hard_expires_at: datetime | None

    def __repr__(self) -> str:  # keep tokens out of logs and tracebacks
        return (
            f"QboTokenSet(access_expires_at={self.access_expires_at.isoformat()}, "
            f"refresh_expires_at={_iso(self.refresh_expires_at)}, "
            f"refresh_hard_expires_at={_iso(self.refresh_hard_expires_at)})"
        )


def authorize_url(
    *, auth_url: str, client_id: str, redirect_uri: str, state: str, scope: str = SCOPE_ACCOUNTING
) -> str:
    """The URL to send the user to; Intuit redirects back with ``code``, ``state`` and ``realmId``."""
    query = urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "scope": scope,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    separator = "&" if "?" in auth_url else "?"
    return f"{auth_url}{separator}{query}"


def exchange_code(
    http: httpx.Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    now: datetime,
) -> QboTokenSet:
    """Exchange an authorization code for the first token set."""
    payload = _token_call(
        http,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        form={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
    )
    return _token_set(payload, now=now, previous_refresh_token=None)


def refresh(
    http: httpx.Client,
    *,
    token_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    now: datetime,
) -> QboTokenSet:
    """Use the refresh token; the answer may carry a new (rotated) refresh token — persist it."""
    payload = _token_call(
        http,
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        form={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    return _token_set(payload, now=now, previous_refresh_token=refresh_token)


def revoke(http: httpx.Client, *, revoke_url: str, client_id: str, client_secret: str, token: str) -> None:
    """Revoke a refresh (or access) token: JSON body ``{"token": …}`` with Basic client auth."""
    try:
        response = http.post(
            revoke_url,
            json={"token": token},
            auth=httpx.BasicAuth(client_id, client_secret),
            headers={"Accept": "application/json"},
        )
    except httpx.TransportError as exc:
        raise _unreachable(exc) from exc
    _log_answer("qbo.oauth.revoke", response)
    if response.is_success:
        return
    error, description = _oauth_error(response)
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(
            f"QuickBooks could not revoke the connection right now (HTTP {response.status_code}); it will be retried",
            code=f"http_{response.status_code}",
        )
    raise AuthError(
        f"QuickBooks refused to revoke the authorization ({error or f'HTTP {response.status_code}'})",
        code=error or f"http_{response.status_code}",
        detail=description,
    )


def _token_call(
    http: httpx.Client, *, token_url: str, client_id: str, client_secret: str, form: dict[str, str]
) -> dict[str, Any]:
    try:
        response = http.post(
            token_url,
            data=form,
            auth=httpx.BasicAuth(client_id, client_secret),
            headers={"Accept": "application/json", HARD_EXPIRY_HEADER: "true"},
        )
    except httpx.TransportError as exc:
        raise _unreachable(exc) from exc
    _log_answer(f"qbo.oauth.{form['grant_type']}", response)

    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(
            f"QuickBooks sign-in service is unavailable (HTTP {response.status_code}); it will be retried",
            code=f"http_{response.status_code}",
        )
    if not response.is_success:
        error, description = _oauth_error(response)
        if error == "invalid_grant":
            raise AuthError(INVALID_GRANT_MESSAGE, code="invalid_grant", detail=description)
        if error == "invalid_client" or response.status_code == 401:
            raise AuthError(
                "QuickBooks refused this app's client id or secret (invalid_client); check the app keys",
                code=error or "invalid_client",
                detail=description,
            )
        raise PermanentError(
            f"QuickBooks sign-in failed ({error or f'HTTP {response.status_code}'})"
            + (f": {description}" if description else ""),
            code=error or f"http_{response.status_code}",
            detail=description,
        )
    try:
        payload = response.json()
    except ValueError as exc:
        raise PermanentError("QuickBooks sign-in service returned an unreadable token answer") from exc
    if not isinstance(payload, dict):
        raise PermanentError("QuickBooks sign-in service returned an unreadable token answer")
    return payload


def _token_set(payload: dict[str, Any], *, now: datetime, previous_refresh_token: str | None) -> QboTokenSet:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    access_token = payload.get("access_token")
    refresh_token = payload.get("refresh_token") or previous_refresh_token
    if not isinstance(access_token, str) or not access_token or not isinstance(refresh_token, str):
        raise PermanentError("QuickBooks sign-in service returned a token answer without tokens")
    expires_in = _seconds(payload.get("expires_in"))
    return QboTokenSet(
        access_token=access_token,
        refresh_token=refresh_token,
        access_expires_at=now + timedelta(seconds=expires_in if expires_in is not None else 3600),
        refresh_expires_at=_after(now, payload.get("x_refresh_token_expires_in")),
        refresh_hard_expires_at=_after(now, payload.get("x_refresh_token_hard_expires_in")),
    )


def _after(now: datetime, value: Any) -> datetime | None:
    seconds = _seconds(value)
    return None if seconds is None else now + timedelta(seconds=seconds)


def _seconds(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _oauth_error(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        payload = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    error = payload.get("error")
    description = payload.get("error_description")
    return (
        str(error) if error is not None else None,
        str(description) if description is not None else None,
    )


def _unreachable(exc: httpx.TransportError) -> TransientError:
    return TransientError(
        f"Could not reach the QuickBooks sign-in service ({type(exc).__name__}); it will be retried",
        code="network",
    )


def _log_answer(event: str, response: httpx.Response) -> None:
    log.info(event, status=response.status_code, intuit_tid=response.headers.get("intuit_tid"))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None

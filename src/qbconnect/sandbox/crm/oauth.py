"""Marketplace OAuth: install codes, location/company tokens, refresh-token rotation, bearer checks.

Error wording follows HighLevel's OAuth server ("Invalid grant: refresh token is invalid",
"Invalid token: access token is invalid"); bodies keep the ``{statusCode, message, error}`` shape of
common-schemas.json and add the OAuth ``error_description``.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import HLError

CODE_TTL = timedelta(minutes=10)
REFRESH_TTL = timedelta(days=365)


@dataclass(frozen=True)
class Grant:
    """Who a token speaks for."""

    user_type: str  # "Location" or "Company"
    company_id: str
    location_id: str | None
    scope: str
    approved_locations: tuple[str, ...] = ()

    @property
    def resource(self) -> str:
        """The rate-limit resource: the location, or the company for agency tokens."""
        return self.location_id or self.company_id


@dataclass(frozen=True)
class _Code:
    grant: Grant
    client_id: str
    redirect_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class _Access:
    grant: Grant
    expires_at: datetime


@dataclass(frozen=True)
class _Refresh:
    grant: Grant
    expires_at: datetime


def grant_error(message: str) -> HLError:
    return HLError(400, message, error="invalid_grant", error_description=message)


@dataclass
class TokenStore:
    client_id: str
    client_secret: str
    access_token_ttl: int
    user_id: str = "sandbox-user-1"
    _codes: dict[str, _Code] = field(default_factory=dict)
    _access: dict[str, _Access] = field(default_factory=dict)
    _refresh: dict[str, _Refresh] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue_code(self, grant: Grant, *, client_id: str, redirect_uri: str, now: datetime) -> str:
        code = secrets.token_hex(20)
        with self._lock:
            self._codes[code] = _Code(grant, client_id, redirect_uri, now + CODE_TTL)
        return code

    def token(self, form: dict[str, str], now: datetime) -> dict[str, Any]:
        """``POST /oauth/token``: exchange a code or rotate a refresh token."""
        missing = [name for name in ("client_id", "client_secret", "grant_type") if not form.get(name)]
        if missing:
            raise HLError(422, [f"{name} should not be empty" for name in missing])
        grant_type = form["grant_type"]
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise HLError(
                422,
                [
                    "grant_type must be one of the following values: authorization_code, refresh_token, "
                    "client_credentials"
                ],
            )
        user_type = form.get("user_type")
        if user_type is not None and user_type not in ("Company", "Location"):
            raise HLError(422, ["user_type must be one of the following values: Company, Location"])
        if form["client_id"] != self.client_id or not secrets.compare_digest(form["client_secret"], self.client_secret):
            message = "Invalid client: client is invalid"
            raise HLError(401, message, error="invalid_client", error_description=message)
        with self._lock:
            if grant_type == "authorization_code":
                grant = self._use_code(form, now)
            elif grant_type == "refresh_token":
                grant = self._use_refresh(form, now)
            else:
                raise HLError(400, "Unsupported grant type: client_credentials is not enabled for this app")
            if user_type == "Company" and grant.user_type == "Location":
                grant = Grant("Company", grant.company_id, None, grant.scope, (grant.location_id or "",))
            return self._issue(grant, now)

    def _use_code(self, form: dict[str, str], now: datetime) -> Grant:
        code = form.get("code", "")
        if not code:
            raise grant_error("Invalid request: missing parameter: `code`")
        entry = self._codes.pop(code, None)  # single use
        if entry is None:
            raise grant_error("Invalid grant: authorization code is invalid")
        if entry.expires_at <= now:
            raise grant_error("Invalid grant: authorization code has expired")
        redirect_uri = form.get("redirect_uri")
        if redirect_uri and redirect_uri != entry.redirect_uri:
            raise grant_error("Invalid request: `redirect_uri` is invalid")
        return entry.grant

    def _use_refresh(self, form: dict[str, str], now: datetime) -> Grant:
        token = form.get("refresh_token", "")
        if not token:
            raise grant_error("Invalid request: missing parameter: `refresh_token`")
        entry = self._refresh.pop(token, None)  # rotation: the old refresh token dies on use
        if entry is None:
            raise grant_error("Invalid grant: refresh token is invalid")
        if entry.expires_at <= now:
            raise grant_error("Invalid grant: refresh token has expired")
        return entry.grant

    def _issue(self, grant: Grant, now: datetime) -> dict[str, Any]:
        access = secrets.token_hex(24)
        refresh = secrets.token_hex(24)
        self._access[access] = _Access(grant, now + timedelta(seconds=self.access_token_ttl))
        self._refresh[refresh] = _Refresh(grant, now + REFRESH_TTL)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "refresh_token": refresh,
            "scope": grant.scope,
            "userType": grant.user_type,
            "companyId": grant.company_id,
            "userId": self.user_id,
            "isBulkInstallation": grant.user_type == "Company",
        }
        if grant.location_id:
            body["locationId"] = grant.location_id
        else:
            body["approvedLocations"] = list(grant.approved_locations)
        return body

    def location_token(self, company: Grant, location_id: str, now: datetime) -> dict[str, Any]:
        """``POST /oauth/locationToken``: an access token (no refresh token) for one of the agency's locations."""
        grant = Grant("Location", company.company_id, location_id, company.scope)
        access = secrets.token_hex(24)
        with self._lock:
            self._access[access] = _Access(grant, now + timedelta(seconds=self.access_token_ttl))
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl,
            "scope": company.scope,
            "locationId": location_id,
            "userId": self.user_id,
            "appId": self.client_id.split("-", 1)[0],
        }

    def authenticate(self, authorization: str | None, now: datetime) -> Grant:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HLError(401, "Invalid token: access token is missing")
        token = authorization[7:].strip()
        with self._lock:
            entry = self._access.get(token)
        if entry is None:
            raise HLError(401, "Invalid token: access token is invalid")
        if entry.expires_at <= now:
            raise HLError(401, "Invalid token: access token has expired")
        return entry.grant

    def revoke_all(self) -> None:
        with self._lock:
            self._codes.clear()
            self._access.clear()
            self._refresh.clear()

"""Intuit OAuth 2.0 state: authorization codes, access tokens, rotating refresh tokens, revocation."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HARD_EXPIRY = timedelta(days=5 * 365)
CODE_TTL = timedelta(minutes=5)


@dataclass(eq=False)
class Grant:
    """One app connection to one company (what the user approved)."""

    client_id: str
    realm_id: str
    scope: str
    created: datetime
    refresh_token: str = ""
    refresh_expires: datetime | None = None
    revoked: bool = False
    access_tokens: dict[str, datetime] = field(default_factory=dict)


@dataclass
class Code:
    grant: Grant
    redirect_uri: str
    expires: datetime


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None

"""Where :class:`~qbconnect.qbo.client.QboClient` gets its access token from.

The client only needs :class:`TokenSource`. The connection store provides the production source
(database-backed, refresh under a per-realm lock). :class:`RefreshingTokenSource` is a complete
in-process implementation (used by the demo and tests): it refreshes shortly before expiry or after a
401, at most once per rejected token, and hands every new token set to ``on_refresh`` to persist
(Intuit rotates refresh tokens, so the new one must be saved before the old one is lost).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from qbconnect.qbo import oauth
from qbconnect.qbo.oauth import QboTokenSet


class TokenSource(Protocol):
    def access_token(self) -> str:
        """A valid access token (refreshed first if it is about to expire)."""
        ...

    def force_refresh(self, rejected_token: str) -> str:
        """Called after a 401 with the refused token: refresh unless someone already did, return the new one."""
        ...


class StaticTokenSource:
    """A fixed access token (emulator runs, benchmarks). A 401 cannot be fixed by refreshing."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def force_refresh(self, rejected_token: str) -> str:
        return self._token


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RefreshingTokenSource:
    """In-memory token set refreshed through Intuit's token endpoint; thread-safe."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        token_url: str,
        client_id: str,
        client_secret: str,
        tokens: QboTokenSet,
        on_refresh: Callable[[QboTokenSet], None] | None = None,
        refresh_margin: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens = tokens
        self._on_refresh = on_refresh
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def tokens(self) -> QboTokenSet:
        return self._tokens

    def access_token(self) -> str:
        with self._lock:
            if self._clock() + self._margin >= self._tokens.access_expires_at:
                self._refresh_locked()
            return self._tokens.access_token

    def force_refresh(self, rejected_token: str) -> str:
        with self._lock:
            if self._tokens.access_token == rejected_token:
                self._refresh_locked()
            return self._tokens.access_token

    def _refresh_locked(self) -> None:
        new = oauth.refresh(
            self._http,
            token_url=self._token_url,
            client_id=self._client_id,
            client_secret=self._client_secret,
            refresh_token=self._tokens.refresh_token,
            now=self._clock(),
        )
        if self._on_refresh is not None:
            self._on_refresh(new)
        self._tokens = new

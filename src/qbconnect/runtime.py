"""What a process holds once: settings, database, rate limiter, token cipher, HTTP client."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from qbconnect.config import Settings
from qbconnect.db.crypto import TokenCipher
from qbconnect.db.session import WEB, make_engine, make_session_factory
from qbconnect.ratelimit import RateLimiter


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    limiter: RateLimiter
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)))
    for_requests: bool = False  # True for the copy whose storage timeouts suit answering HTTP requests
    _web: Runtime | None = field(default=None, repr=False, compare=False)

    @cached_property
    def cipher(self) -> TokenCipher:
        """Derived once per process (HKDF + Fernet), not on every token read."""
        return TokenCipher(self.settings.secret("secret_key"), self.settings.previous_secret_keys)

    def web(self) -> Runtime:
        """The same runtime on an engine with short storage timeouts (``db.session.WEB``), for the web app.

        Requests must be answered quickly whatever storage does; workers keep their longer waits. The
        settings, rate limiter and HTTP client are shared.
        """
        if self.for_requests:
            return self
        if self._web is None:
            engine = make_engine(self.settings.database_url, WEB)
            self._web = dataclasses.replace(
                self, engine=engine, sessions=make_session_factory(engine), for_requests=True, _web=None
            )
        return self._web

    def close(self) -> None:
        if self._web is not None:
            self._web.engine.dispose()
        self.http.close()
        self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        limiter=RateLimiter(settings.resolved_ratelimit_url),
    )

"""What a process holds once: settings, database, rate limiter, token cipher, HTTP client."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from qbconnect.config import Settings
from qbconnect.db.crypto import TokenCipher
from qbconnect.db.session import make_engine, make_session_factory
from qbconnect.ratelimit import RateLimiter


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    limiter: RateLimiter
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)))

    @cached_property
    def cipher(self) -> TokenCipher:
        """Derived once per process (HKDF + Fernet), not on every token read."""
        return TokenCipher(self.settings.secret("secret_key"), self.settings.previous_secret_keys)

    def close(self) -> None:
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

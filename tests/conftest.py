"""Shared fixtures: settings and runtimes on SQLite and on PostgreSQL (+ Redis)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qbconnect.config import Settings
from qbconnect.runtime import Runtime, build_runtime
from qbconnect.sync.engine import jobs
from tests.support.databases import fresh_database, fresh_redis_queue

TEST_SECRET = "test-secret-key-0123456789"
TEST_ADMIN = "test-admin-token"


def make_settings(database_url: str, queue_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "queue_url": queue_url,
        "secret_key": TEST_SECRET,
        "admin_token": TEST_ADMIN,
        "log_json": False,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def queue_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    with fresh_redis_queue() as url:
        yield url


@pytest.fixture
def runtime(db_url: str, queue_url: str) -> Iterator[Runtime]:
    rt = build_runtime(make_settings(db_url, queue_url))
    jobs.set_dispatcher(None)
    yield rt
    jobs.set_dispatcher(None)
    rt.close()


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    with fresh_database("sqlite", tmp_path) as url:
        rt = build_runtime(make_settings(url, f"sqlite:///{tmp_path / 'queue.db'}"))
        jobs.set_dispatcher(None)
        yield rt
        jobs.set_dispatcher(None)
        rt.close()


@pytest.fixture(autouse=True, scope="session")
def _one_tls_context() -> Iterator[None]:
    """Every httpx client the test process builds (each emulator's webhook and workflow clients, the service's,
    the tests' own) loads certifi's CA bundle into a new TLS context: 50 to 100 ms each, hundreds of times a run,
    and nothing in the suite speaks TLS. The default context (verify=True, no client certificate) is built once
    and shared; SSLContext objects are made to be shared. Any other verify/cert goes to httpx as before."""
    from httpx._transports import default

    build = default.create_ssl_context
    shared: list[ssl.SSLContext] = []

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is not True or cert is not None or not trust_env:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        if not shared:
            shared.append(build(verify=verify, cert=cert, trust_env=trust_env))
        return shared[0]

    default.create_ssl_context = create_ssl_context  # type: ignore[assignment]
    yield
    default.create_ssl_context = build


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Production log format at INFO (debug lines per HTTP call would slow the suite)."""
    import logging

    from qbconnect.logs import configure_logging

    configure_logging(json=False, level=logging.INFO)

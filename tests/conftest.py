"""Shared fixtures: settings and runtimes on SQLite and on PostgreSQL (+ Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
def _quiet_logs() -> None:
    """Production log format at INFO (debug lines per HTTP call would slow the suite)."""
    import logging

    from qbconnect.logs import configure_logging

    configure_logging(json=False, level=logging.INFO)

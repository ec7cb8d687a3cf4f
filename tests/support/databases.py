"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database at 127.0.0.1:5432 (real).

Each test process runs the real migrations once per backend, into a template (a SQLite file in a temporary
folder, a PostgreSQL database of its own); every fresh database is a copy of that template, so it is exactly
what ``upgrade`` makes (schema and ``alembic_version`` at head) without running the migrations each time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from qbconnect.db.migrate import upgrade

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379"


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


_templates: dict[str, str] = {}  # backend → this process's migrated template (SQLite file path, PostgreSQL name)
_template_lock = threading.Lock()


def sqlite_template() -> Path:
    """A SQLite file migrated to head by this process, once (a temporary folder, removed when it exits)."""
    with _template_lock:
        if "sqlite" not in _templates:
            folder = Path(tempfile.mkdtemp(prefix="qbc-template-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "template.db"
            upgrade(f"sqlite:///{path}")
            # Every connection of the migration is closed: nothing may wait in a -wal file beside it.
            assert not path.with_name(path.name + "-wal").exists(), "the template's WAL was not checkpointed"
            _templates["sqlite"] = str(path)
        return Path(_templates["sqlite"])


def copy_sqlite_template(path: Path) -> None:
    """Make ``path`` a migrated SQLite database (a copy of the template); an existing file is migrated instead."""
    if path.exists():
        upgrade(f"sqlite:///{path}")
    else:
        shutil.copyfile(sqlite_template(), path)


def _postgres_template(admin: Engine) -> str:
    """A PostgreSQL database migrated to head by this process, once; dropped when the process exits."""
    with _template_lock:
        if "postgresql" not in _templates:
            name = f"qbc_test_template_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            atexit.register(_drop_postgres, name)
            upgrade(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
            _templates["postgresql"] = name
        return _templates["postgresql"]


def _drop_postgres(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        admin.dispose()


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new, migrated database of ``kind`` (sqlite|postgresql); dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / "qbconnect.db"
        copy_sqlite_template(path)
        yield f"sqlite:///{path}"
        return
    if not postgres_available():
        pytest.fail("PostgreSQL at 127.0.0.1:5432 is not answering (.ci/run starts it)")
    name = f"qbc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    template = _postgres_template(admin)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def fresh_redis_queue() -> Iterator[str]:
    """A Redis queue URL on a database index of its own, emptied before and after."""
    import redis

    if not redis_available():
        pytest.fail("Redis at 127.0.0.1:6379 is not answering (.ci/run starts it)")
    # One database index per pytest-xdist worker (gw0 → 1, gw1 → 2, …): parallel tests never share a queue.
    # QBCONNECT_TEST_REDIS_OFFSET shifts the range so two checkouts can run their suites side by side.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(os.environ.get("QBCONNECT_TEST_REDIS_OFFSET", "0"))
    index = 1 + (offset + int(worker.removeprefix("gw") or 0)) % 15
    url = f"{REDIS_URL}/{index}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()


@contextmanager
def silent_postgres() -> Iterator[str]:
    """A TCP listener that accepts connections and never says a word: a PostgreSQL that does not answer."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"postgresql+psycopg://qbconnect@127.0.0.1:{port}/qbconnect"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()

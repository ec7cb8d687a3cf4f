"""Engine and session factory. SQLite runs in WAL mode with a busy timeout; PostgreSQL via psycopg 3.

SQL parameters (parts of webhook bodies, tokens) never appear in error messages (``hide_parameters``);
SQLite files are created readable by their owner only (0600).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and its folder) mode 0600 unless it exists, so SQLite opens a private file.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file.
    """
    target = Path(path)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(target, 0o600)  # whatever the umask


def sqlite_file(url: str) -> str | None:
    """The file path of a SQLite URL, or None (in-memory, URI filenames, other backends)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or parsed.query.get("uri"):
        return None
    return database


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"future": True, "hide_parameters": True}
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            create_private_file(path)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_engine(url, **kwargs)
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            # Let SQLAlchemy issue BEGIN itself so "BEGIN IMMEDIATE" can take the write lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

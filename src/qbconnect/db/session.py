"""Engine and session factory. SQLite runs in WAL mode with a busy timeout; PostgreSQL via psycopg 3.

Every engine has bounded waits, chosen by who uses it (:class:`StorageTimeouts`):

- ``WEB``: what answers HTTP requests (webhook intake, pages, ``/healthz``). A locked SQLite file or a
  PostgreSQL that does not answer must turn into a quick "storage unavailable" (429/503), never a hang:
  short busy, pool, connect, lock and statement timeouts.
- ``WORKER``: job workers and the CLI. They may wait longer (a job retries anyway), but not for ever.
- ``MIGRATE``: schema migrations, which may legitimately run long statements.

SQL parameters (parts of webhook bodies, tokens) never appear in error messages (``hide_parameters``);
SQLite files are created readable by their owner only (0600).

SQLite allows one writer per file. Between processes, SQLite's busy handler waits for the lock; it polls with
growing sleeps, so under many concurrent writers a few of them starve (waits of a second and more were
measured while most took a millisecond). Within one process — ``serve`` with its in-process worker is the
embedded default — writers therefore queue on one :class:`threading.Lock` per database file before
``BEGIN IMMEDIATE`` and are woken the moment the lock is free; the lock is released when the transaction's
commit or rollback has finished. The wait is bounded by the same busy timeout.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class StorageTimeouts:
    """Upper bounds on every wait for storage, in seconds (``None``: the driver's default, no bound)."""

    sqlite_busy: float
    pool: float
    pg_connect: float  # psycopg waits at least 2 s; below that the wait is cut short (:func:`_connect_within`)
    pg_statement: float | None
    pg_lock: float | None


WEB = StorageTimeouts(sqlite_busy=1.5, pool=1.0, pg_connect=1.0, pg_statement=1.5, pg_lock=1.0)
WORKER = StorageTimeouts(sqlite_busy=30.0, pool=30.0, pg_connect=10, pg_statement=120.0, pg_lock=30.0)
MIGRATE = StorageTimeouts(sqlite_busy=30.0, pool=30.0, pg_connect=10, pg_statement=None, pg_lock=60.0)


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


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: str) -> threading.Lock:
    """The process-wide writer lock of one SQLite database file (every engine on that file shares it)."""
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(os.path.realpath(path), threading.Lock())


class _QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection that gives its process's writer lock back once its transaction has ended."""

    write_lock: threading.Lock | None = None
    holds_write_lock = False

    def take_write_lock(self, timeout: float) -> bool:
        if self.write_lock is None or self.holds_write_lock:
            return True
        self.holds_write_lock = self.write_lock.acquire(timeout=timeout)
        return self.holds_write_lock

    def _give_back(self) -> None:
        if self.holds_write_lock and self.write_lock is not None:
            self.holds_write_lock = False
            self.write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._give_back()


def _pg_options(timeouts: StorageTimeouts) -> str:
    options = []
    if timeouts.pg_statement is not None:
        options.append(f"-c statement_timeout={int(timeouts.pg_statement * 1000)}")
    if timeouts.pg_lock is not None:
        options.append(f"-c lock_timeout={int(timeouts.pg_lock * 1000)}")
    return " ".join(options)


def _connect_within(dialect: Any, cargs: Any, cparams: Any, seconds: float) -> Any:
    """Open a DBAPI connection, or raise the driver's OperationalError after ``seconds``.

    psycopg never gives up on a connection in less than 2 s (libpq's floor for ``connect_timeout``), too
    long for a page that must answer within 2 s when PostgreSQL accepts connections and never answers. The
    attempt runs on its own thread; one that succeeds after we stopped waiting closes its connection."""
    lock = threading.Lock()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            conn = dialect.connect(*cargs, **cparams)
        except Exception as exc:
            outcome["error"] = exc
        else:
            with lock:
                if outcome.get("abandoned"):
                    conn.close()
                    return
                outcome["conn"] = conn
        done.set()

    threading.Thread(target=attempt, name="qbconnect-db-connect", daemon=True).start()
    if not done.wait(seconds):
        with lock:
            if "conn" not in outcome and "error" not in outcome:
                outcome["abandoned"] = True
                raise dialect.loaded_dbapi.OperationalError(f"no connection to the database within {seconds}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["conn"]


def make_engine(url: str, timeouts: StorageTimeouts = WORKER) -> Engine:
    url = normalize_url(url)
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"future": True, "hide_parameters": True, "pool_timeout": timeouts.pool}
    if backend == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            create_private_file(path)
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": timeouts.sqlite_busy,
            "factory": _QueuedWriterConnection,
        }
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
        if backend == "postgresql":
            connect_args: dict[str, Any] = {"connect_timeout": max(2, math.ceil(timeouts.pg_connect))}
            options = _pg_options(timeouts)
            if options:
                connect_args["options"] = options
            kwargs["connect_args"] = connect_args
    engine = create_engine(url, **kwargs)
    if backend == "postgresql" and timeouts.pg_connect < 2:
        limit = timeouts.pg_connect

        @event.listens_for(engine, "do_connect")
        def _bounded_connect(dialect: Any, _: Any, cargs: Any, cparams: Any) -> Any:
            return _connect_within(dialect, cargs, cparams, limit)

    if backend == "sqlite":
        busy_ms = int(timeouts.sqlite_busy * 1000)
        path = sqlite_file(url)
        write_lock = _write_lock(path) if path is not None else None

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            # Let SQLAlchemy issue BEGIN itself so "BEGIN IMMEDIATE" can take the write lock up front.
            dbapi_conn.isolation_level = None
            if isinstance(dbapi_conn, _QueuedWriterConnection):
                dbapi_conn.write_lock = write_lock
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            dbapi_conn = conn.connection.dbapi_connection
            if not isinstance(dbapi_conn, _QueuedWriterConnection):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            started = time.monotonic()
            if not dbapi_conn.take_write_lock(timeouts.sqlite_busy):
                locked = sqlite3.OperationalError("database is locked (waited for this process's writers)")
                raise OperationalError("BEGIN IMMEDIATE", None, locked)
            # One bound for both waits: what is left of the busy timeout is all SQLite may wait for the file
            # (held by another process), so a writer gives up within the busy timeout, never twice it.
            left_ms = busy_ms - int((time.monotonic() - started) * 1000)
            if left_ms >= busy_ms - 1:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            dbapi_conn.execute(f"PRAGMA busy_timeout={max(left_ms, 0)}")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                dbapi_conn.execute(f"PRAGMA busy_timeout={busy_ms}")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

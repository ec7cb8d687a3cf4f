"""One refresh at a time per grant, across threads and processes, without a database transaction.

A rotating refresh token may be spent once, so two workers must not refresh the same grant at once. The
lock used to be the connection row itself (``SELECT … FOR UPDATE``, SQLite's write lock), held across
the call to the token endpoint: a slow Intuit or HighLevel then held the whole SQLite database, or a
PostgreSQL row, for as long as the call took. Now the lock is separate from any transaction:

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on its own autocommit connection,
  which spans hosts and holds no transaction open;
- SQLite: an exclusive ``flock`` on a lock file per grant in a folder beside the database file (every
  process that can open the database can see it);
- always, a thread lock per name, so threads of one process queue without touching storage.

The token source reads and writes the connection in short transactions before and after the call.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select

from qbconnect.db.session import sqlite_file

_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def lock_file(database_file: Path, name: str) -> Path:
    """The file whose ``flock`` serialises refreshes of grant ``name`` for one SQLite database (one file
    per grant: an agency location's refresh takes the company's lock inside its own)."""
    folder = database_file.with_name(database_file.name + ".refresh-locks")
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]}.lock"


@contextmanager
def refresh_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold the refresh lock ``name`` (e.g. ``qbo:<location>``) for the block; no transaction is open."""
    with _thread_lock(name):
        backend = engine.url.get_backend_name()
        if backend == "postgresql":
            with _advisory_lock(engine, name):
                yield
            return
        path = sqlite_file(str(engine.url)) if backend == "sqlite" else None
        if path is None:  # in-memory SQLite lives in one process: the thread lock is the whole story
            yield
            return
        with _file_lock(lock_file(Path(path), name)):
            yield


@contextmanager
def _advisory_lock(engine: Engine, name: str) -> Iterator[None]:
    key = advisory_key(name)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(select(func.pg_advisory_lock(key)))
        try:
            yield
        finally:
            conn.execute(select(func.pg_advisory_unlock(key)))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

"""SQLite writers of one process queue on one lock per database file (``db/session.py``): a writer waits for
the one before it and starts the moment it commits or rolls back, instead of polling SQLite's busy handler;
the wait is bounded by the busy timeout; every engine on the file shares the lock."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from qbconnect.db.session import WEB, WORKER, make_engine


def _engines(tmp_path: Path) -> tuple[Engine, Engine]:
    url = f"sqlite:///{tmp_path / 'writers.db'}"
    first, second = make_engine(url, WORKER), make_engine(url, replace(WEB, sqlite_busy=0.3))
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    return first, second


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_a_writer_waits_for_the_one_before_it_and_starts_when_it_ends(tmp_path: Path, end: str) -> None:
    first, second = _engines(tmp_path)
    holding, started, done = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def other_writer() -> None:
        holding.wait()
        started.set()
        with second.begin() as conn:  # waits on the first writer's lock (second engine, same file)
            order.append("second began")
            conn.execute(text("INSERT INTO t VALUES (2)"))
        done.set()

    def begins(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("BEGIN"):
            order.append("second sent BEGIN")

    event.listen(second, "before_cursor_execute", begins)
    thread = threading.Thread(target=other_writer)
    thread.start()
    conn = first.connect()
    transaction = conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    holding.set()
    started.wait()
    assert not done.wait(0.1)  # still waiting while the first transaction is open
    order.append("first ended")
    if end == "commit":
        transaction.commit()
    elif end == "rollback":
        transaction.rollback()
    conn.close()  # "close" ends the open transaction by closing the connection
    thread.join(timeout=30)
    # The second writer queued in this process: it did not even ask SQLite for the lock while the first held it.
    assert order == ["first ended", "second sent BEGIN", "second began"]
    with first.connect() as check:
        rows = sorted(n for (n,) in check.execute(text("SELECT n FROM t")))
    assert rows == ([1, 2] if end == "commit" else [2])


def test_a_writer_that_waits_longer_than_the_busy_timeout_gets_an_operational_error(tmp_path: Path) -> None:
    first, second = _engines(tmp_path)
    with first.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        failure: list[BaseException] = []

        def other_writer() -> None:
            try:
                with second.begin():
                    pass
            except OperationalError as exc:
                failure.append(exc)

        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=30)
    assert len(failure) == 1 and "locked" in str(failure[0])
    with second.begin() as conn:  # the lock was not left behind by the failed wait
        conn.execute(text("INSERT INTO t VALUES (3)"))

"""The refresh lock: exclusive per name across threads (and, through the file or advisory lock, across
processes), nested names do not block each other, and no database transaction is involved."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import create_engine

from qbconnect.connections.refresh_lock import advisory_key, lock_file, refresh_lock


def _engine(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


def test_same_name_is_exclusive_between_threads(tmp_path: Path) -> None:
    engine = create_engine(_engine(tmp_path))
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with refresh_lock(engine, "qbo:loc-1"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        inside.wait(10)
        with refresh_lock(engine, "qbo:loc-1"):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    inside.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "first out", "second in"]


def test_nested_names_do_not_block_each_other(tmp_path: Path) -> None:
    engine = create_engine(_engine(tmp_path))
    with refresh_lock(engine, "crm:loc-1"), refresh_lock(engine, "crm-company:agency-1"):
        entered = True
    assert entered
    assert lock_file(tmp_path / "app.db", "crm:loc-1") != lock_file(tmp_path / "app.db", "crm-company:agency-1")
    assert oct(lock_file(tmp_path / "app.db", "x").parent.stat().st_mode & 0o777) == "0o700"


def test_in_memory_sqlite_uses_the_thread_lock_only() -> None:
    engine = create_engine("sqlite://")
    with refresh_lock(engine, "qbo:mem"):
        held = True
    assert held


def test_advisory_keys_are_stable_signed_64_bit() -> None:
    key = advisory_key("qbo:loc-1")
    assert key == advisory_key("qbo:loc-1") != advisory_key("qbo:loc-2")
    assert -(2**63) <= key < 2**63

"""``qbconnect rotate-key``: re-encrypt every stored token under the newest ``QBCONNECT_SECRET_KEY``.

Resumable and idempotent: rows are visited in primary-key order, one transaction per batch; a token already
under the newest key is left alone, so an interrupted run simply starts again. Each write is a
compare-and-swap on the old ciphertext: a token refreshed by a worker meanwhile (already written under
the newest key) is never overwritten with its stale predecessor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import InstrumentedAttribute

from qbconnect.db.crypto import TokenCipher
from qbconnect.db.models import Base, Location, QboConnection
from qbconnect.runtime import Runtime


@dataclass(frozen=True)
class TokenTable:
    model: type[Base]
    key: InstrumentedAttribute[Any]
    columns: Sequence[InstrumentedAttribute[str | None]]


TOKEN_TABLES: tuple[TokenTable, ...] = (
    TokenTable(Location, Location.id, (Location.crm_access_token, Location.crm_refresh_token)),
    TokenTable(QboConnection, QboConnection.id, (QboConnection.access_token, QboConnection.refresh_token)),
)


@dataclass
class RotationReport:
    rows: int = 0
    rotated: int = 0
    already_current: int = 0
    changed_meanwhile: int = 0
    unreadable: list[str] = field(default_factory=list)  # "<table>:<row key>.<column>" (no token content)


Progress = Callable[[int, int], None]  # (rows done, rows total)


def count_rows(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return sum(int(session.scalar(select(func.count()).select_from(t.model)) or 0) for t in TOKEN_TABLES)


def rotate_tokens(runtime: Runtime, *, batch_size: int = 100, progress: Progress | None = None) -> RotationReport:
    cipher = runtime.cipher
    report = RotationReport()
    total = count_rows(runtime)
    for table in TOKEN_TABLES:
        last: Any = None
        while True:
            with runtime.sessions.begin() as session:
                stmt = select(table.key, *table.columns).order_by(table.key).limit(batch_size)
                if last is not None:
                    stmt = stmt.where(table.key > last)
                rows = session.execute(stmt).all()
                for row in rows:
                    key, values = row[0], row[1:]
                    for column, value in zip(table.columns, values, strict=True):
                        _rotate_one(session, cipher, table, key, column, value, report)
            if not rows:
                break
            last = rows[-1][0]
            report.rows += len(rows)
            if progress is not None:
                progress(report.rows, total)
    return report


def _rotate_one(
    session: Any,
    cipher: TokenCipher,
    table: TokenTable,
    key: Any,
    column: InstrumentedAttribute[str | None],
    value: str | None,
    report: RotationReport,
) -> None:
    if not value:
        return
    if cipher.is_current(value):
        report.already_current += 1
        return
    try:
        fresh = cipher.rotate(value)
    except ValueError:
        report.unreadable.append(f"{table.model.__tablename__}:{key}.{column.key}")
        return
    condition: ColumnElement[bool] = (table.key == key) & (column == value)
    result = session.execute(
        update(table.model).where(condition).values({column.key: fresh}).execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) == 1:
        report.rotated += 1
    else:
        report.changed_meanwhile += 1

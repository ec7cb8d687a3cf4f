"""The QuickBooks read budget: metered reads counted per company and for the whole app per calendar month.

Under Intuit's App Partner Program every Accounting API *read* (GET, query, CDC: "CorePlus" calls) is
metered; the free Builder tier allows the whole app 500,000 a month across all connected companies, after
which Intuit blocks the calls and shows the app as offline. Writes are free and are never counted here.

Every read the one client factory (``connections/clients.py``) builds a client for is counted by one upsert
in ``qbo_read_counts`` (month, realm, kind). From the month's total and ``QBCONNECT_QBO_READ_BUDGET_MONTHLY``:

- ``normal``: below :data:`TIGHT_AT` of the budget;
- ``tight``: from 80 % on, the periodic safety sweeps run :data:`SWEEP_SLOWDOWN` times less often
  (:func:`sweep_interval_multiplier`);
- ``exhausted``: at the budget, reads marked non-essential (change sweeps, pre-flight checks, discovery
  polls) are refused with :class:`~qbconnect.qbo.client.ReadBudgetExhausted`, whose sentence the sync log
  shows on a skipped row. Essential reads (those a sync needs to write correctly) and all writes go on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.db.models import QboReadCount
from qbconnect.qbo.client import METERED_READS, ReadBudgetExhausted
from qbconnect.runtime import Runtime

log = structlog.get_logger(__name__)

TIGHT_AT = 0.8
SWEEP_SLOWDOWN = 4.0


class BudgetState(StrEnum):
    NORMAL = "normal"
    TIGHT = "tight"
    EXHAUSTED = "exhausted"


def month_of(moment: datetime) -> str:
    """The budget month of ``moment``: ``"2026-12"`` (calendar month in UTC)."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m")


def next_month_start(moment: datetime) -> datetime:
    at = moment.astimezone(UTC)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def record_read(session: Session, realm_id: str, kind: str, *, now: datetime | None = None, count: int = 1) -> None:
    """Add ``count`` metered reads of ``kind`` for ``realm_id`` to this month (one upsert; no commit)."""
    if kind not in METERED_READS:
        raise ValueError(f"not a metered read: {kind!r}")
    now = now or utcnow()
    row = {"month": month_of(now), "realm_id": realm_id, "kind": kind, "reads": count, "updated_at": now}
    session.execute(_count_upsert(session.get_bind().dialect.name), row)


@functools.cache
def _count_upsert(dialect: str) -> Any:
    """Built once per dialect (every metered read runs it): add the row's reads to the month's count."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(QboReadCount)
    return stmt.on_conflict_do_update(
        index_elements=["month", "realm_id", "kind"],
        set_={"reads": QboReadCount.reads + stmt.excluded.reads, "updated_at": stmt.excluded.updated_at},
    )


def count_read(runtime: Runtime, realm_id: str, kind: str) -> None:
    """Count one read in a short transaction of its own. A counter that cannot be written is logged, and the
    read still goes out: a missed count is better than a sync stopped by its own bookkeeping."""
    try:
        with runtime.sessions.begin() as session:
            record_read(session, realm_id, kind)
    except SQLAlchemyError as exc:
        log.warning("qbo.read_count_failed", realm_id=realm_id, kind=kind, error=type(exc).__name__)


def app_reads(session: Session, month: str) -> int:
    total = session.execute(select(func.coalesce(func.sum(QboReadCount.reads), 0)).where(QboReadCount.month == month))
    return int(total.scalar_one())


def company_reads(session: Session, month: str, realm_id: str) -> dict[str, int]:
    """The company's reads of ``month`` by kind (``read``, ``query``, ``cdc``; absent kinds are 0)."""
    rows = session.execute(
        select(QboReadCount.kind, QboReadCount.reads).where(
            QboReadCount.month == month, QboReadCount.realm_id == realm_id
        )
    )
    counts = dict.fromkeys(sorted(METERED_READS), 0)
    counts.update({str(kind): int(reads) for kind, reads in rows.all()})
    return counts


def state_of(app_total: int, budget: int) -> BudgetState:
    if app_total >= budget:
        return BudgetState.EXHAUSTED
    if app_total >= TIGHT_AT * budget:
        return BudgetState.TIGHT
    return BudgetState.NORMAL


def read_budget_state(session: Session, settings: Settings, *, now: datetime | None = None) -> BudgetState:
    """``normal``, ``tight`` (≥ 80 %: slow the safety sweeps) or ``exhausted`` (stop non-essential reads)."""
    return state_of(app_reads(session, month_of(now or utcnow())), settings.qbo_read_budget_monthly)


def sweep_interval_multiplier(state: BudgetState) -> float:
    """How much longer the periodic safety sweeps wait: 1 normally, :data:`SWEEP_SLOWDOWN` when tight,
    infinite (no sweep) when exhausted."""
    if state is BudgetState.EXHAUSTED:
        return math.inf
    return SWEEP_SLOWDOWN if state is BudgetState.TIGHT else 1.0


@dataclass(frozen=True)
class ReadCounts:
    month: str
    app: int
    budget: int
    company: int | None = None  # None: no company asked
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> BudgetState:
        return state_of(self.app, self.budget)

    @property
    def percent(self) -> float:
        return round(100 * self.app / self.budget, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "company": self.company,
            "company_by_kind": self.by_kind,
            "app": self.app,
            "budget": self.budget,
            "state": self.state.value,
        }

    def line(self) -> str:
        """One line for ``qbconnect status`` and the settings page."""
        company = f"this company {self.company:,} · " if self.company is not None else ""
        text = f"{self.month}: {company}all companies {self.app:,} of {self.budget:,} ({self.percent:g} %)"
        if self.state is BudgetState.TIGHT:
            text += " · near the budget: safety sweeps slowed down"
        elif self.state is BudgetState.EXHAUSTED:
            text += " · budget used up: change checks paused until next month, syncing goes on"
        return text


def read_counts(
    session: Session, settings: Settings, realm_id: str | None = None, *, now: datetime | None = None
) -> ReadCounts:
    month = month_of(now or utcnow())
    by_kind = company_reads(session, month, realm_id) if realm_id else {}
    return ReadCounts(
        month=month,
        app=app_reads(session, month),
        budget=settings.qbo_read_budget_monthly,
        company=sum(by_kind.values()) if realm_id else None,
        by_kind=by_kind,
    )


def exhausted_message(counts: ReadCounts, *, now: datetime | None = None) -> str:
    resume = next_month_start(now or utcnow())
    return (
        f"Skipped to save QuickBooks reads: this month's read budget is used up ({counts.app:,} of "
        f"{counts.budget:,}). Checks that only look for changes wait until {resume:%B} {resume.day}; "
        "invoices, payments and other sales still sync."
    )


def refuse_when_exhausted(runtime: Runtime) -> Callable[[str], None]:
    """The ``read_guard`` of the clients the factory builds: refuses a non-essential read at the budget."""

    def guard(kind: str) -> None:
        now = utcnow()
        with runtime.sessions() as session:
            counts = read_counts(session, runtime.settings, now=now)
        if counts.state is BudgetState.EXHAUSTED:
            log.info("qbo.read_refused", kind=kind, app_reads=counts.app, budget=counts.budget)
            retry_after = (next_month_start(now) - now).total_seconds()
            raise ReadBudgetExhausted(exhausted_message(counts, now=now), retry_after=retry_after)

    return guard

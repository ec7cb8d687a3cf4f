"""Overview of locations for ``qbconnect status`` and the API: connection, jobs, import progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.connections.read_budget import ReadCounts, read_counts
from qbconnect.connections.state import active_connection
from qbconnect.db.models import Location
from qbconnect.sync.engine import jobs


@dataclass
class LocationOverview:
    location_id: str
    name: str | None
    crm_status: str
    qbo_status: str
    company_name: str | None
    realm_id: str | None
    connected_at: datetime | None
    refresh_days_left: int | None
    jobs: dict[str, int] = field(default_factory=dict)
    customer_import: dict[str, Any] = field(default_factory=dict)
    qbo_reads: ReadCounts | None = None  # this month's metered QuickBooks reads (company and whole app)

    def rows(self) -> list[tuple[str, str]]:
        rows = [
            ("CRM app", self.crm_status),
            ("QuickBooks", self.qbo_status),
            ("company", f"{self.company_name or '-'} (realm {self.realm_id or '-'})"),
            ("connected since", self.connected_at.isoformat() if self.connected_at else "-"),
            ("refresh token", f"{self.refresh_days_left} days left" if self.refresh_days_left is not None else "-"),
            ("jobs", ", ".join(f"{k}: {v}" for k, v in sorted(self.jobs.items())) or "none"),
        ]
        if self.qbo_reads is not None:
            rows.append(("QuickBooks reads", self.qbo_reads.line()))
        imp = self.customer_import
        if imp:
            done, total = imp.get("done", 0), imp.get("total")
            bar = _bar(done, total)
            text = f"{imp.get('status', '?')} {bar} {done}/{total if total is not None else '?'}"
            if imp.get("status") in ("running", "interrupted") and imp.get("rate"):
                text += f" at {imp['rate']}/s"
                if imp.get("eta") is not None:
                    text += f", about {int(imp['eta']) // 60} min {int(imp['eta']) % 60} s left"
            rows.append(("customer import", text))
        return rows


def _bar(done: int, total: int | None, width: int = 30) -> str:
    if not total:
        return "[" + " " * width + "]"
    filled = min(width, int(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def location_overviews(
    session: Session, location_id: str | None = None, settings: Settings | None = None
) -> list[LocationOverview]:
    """One overview per location; with ``settings``, this month's QuickBooks reads against the budget too."""
    stmt = select(Location).order_by(Location.installed_at)
    if location_id:
        stmt = stmt.where(Location.id == location_id)
    views: list[LocationOverview] = []
    for location in session.execute(stmt).scalars():
        conn = active_connection(session, location.id)
        days_left = None
        if conn is not None:
            expiries = [d for d in (conn.refresh_expires_at, conn.refresh_hard_expires_at) if d is not None]
            if expiries:
                days_left = max(0, (min(expiries) - utcnow()).days)
        views.append(
            LocationOverview(
                location_id=location.id,
                name=location.name,
                crm_status=location.crm_status,
                qbo_status=conn.status if conn else "not connected",
                company_name=conn.company_name if conn else None,
                realm_id=conn.realm_id if conn else None,
                connected_at=conn.connected_at if conn else None,
                refresh_days_left=days_left,
                jobs=jobs.counts_by_state(session, location.id),
                customer_import=dict(location.state.get("customer_import", {})),
                qbo_reads=read_counts(session, settings, conn.realm_id if conn else None) if settings else None,
            )
        )
    return views

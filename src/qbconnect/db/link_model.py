"""The link table: a CRM object and its QuickBooks counterpart.

Only the link repository (``qbconnect.sync.links``) imports this module; every other module asks it
(an import-linter contract in pyproject.toml keeps it so). The free-form ``data`` JSON column is read
and written by that repository's typed records only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qbconnect.clock import utcnow
from qbconnect.db.models import PK, Base
from qbconnect.db.types import JSONDoc, UTCDateTime, json_default


class Link(Base):
    """A CRM object and its QuickBooks counterpart."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("location_id", "kind", "crm_id", name="uq_links_location_kind_crm"),
        Index("ix_links_location_kind_qbo", "location_id", "kind", "qbo_id"),
        Index("ix_links_location_kind_email", "location_id", "kind", "email"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # customer|invoice|sales_receipt|refund|item|payment_method|…
    crm_id: Mapped[str] = mapped_column(String(128))
    qbo_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    sync_token: Mapped[str | None] = mapped_column(String(32))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=json_default)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

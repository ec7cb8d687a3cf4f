"""sync log: readable titles, problems (resolved/dismissed), the platform's answer, attempts

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qbconnect.db.types

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NEW_COLUMNS = (
    ("label", sa.String(length=255)),
    ("number", sa.String(length=64)),
    ("customer", sa.String(length=255)),
    ("customer_email", sa.String(length=320)),
    ("amount", sa.Numeric(18, 2)),
    ("currency", sa.String(length=3)),
    ("qbo_type", sa.String(length=32)),
    ("crm_url", sa.String(length=500)),
    ("group_key", sa.String(length=160)),
    ("fault_code", sa.String(length=32)),
    ("intuit_tid", sa.String(length=128)),
    ("resolved_at", qbconnect.db.types.UTCDateTime(timezone=True)),
    ("dismissed_at", qbconnect.db.types.UTCDateTime(timezone=True)),
    ("dismissed_by", sa.String(length=128)),
)


def upgrade() -> None:
    with op.batch_alter_table("activity") as batch:
        for name, type_ in NEW_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_activity_location_kind_entity", "activity", ["location_id", "kind", "entity_id"], unique=False)
    op.create_table(
        "activity_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("activity_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("request_summary", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("fault_code", sa.String(length=32), nullable=True),
        sa.Column("intuit_tid", sa.String(length=128), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_attempts")),
        sa.UniqueConstraint("activity_id", "attempt", name="uq_activity_attempts_activity_attempt"),
    )
    op.create_index(op.f("ix_activity_attempts_activity_id"), "activity_attempts", ["activity_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_activity_attempts_activity_id"), table_name="activity_attempts")
    op.drop_table("activity_attempts")
    op.drop_index("ix_activity_location_kind_entity", table_name="activity")
    with op.batch_alter_table("activity") as batch:
        for name, _ in reversed(NEW_COLUMNS):
            batch.drop_column(name)

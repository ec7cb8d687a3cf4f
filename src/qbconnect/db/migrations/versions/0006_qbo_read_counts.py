"""metered QuickBooks reads per month, company and kind (the read budget)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qbconnect.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qbo_read_counts",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("realm_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("reads", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month", "realm_id", "kind", name=op.f("pk_qbo_read_counts")),
    )


def downgrade() -> None:
    op.drop_table("qbo_read_counts")

"""webhook refusal counts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qbconnect.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_refusals",
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "reason", name=op.f("pk_webhook_refusals")),
    )


def downgrade() -> None:
    op.drop_table("webhook_refusals")

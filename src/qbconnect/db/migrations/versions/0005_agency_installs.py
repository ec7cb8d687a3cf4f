"""agency (Company) installs: the company token that mints location tokens

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-03 10:00:00

Chained after 0002 on this branch; the migrations merged before it (0003, 0004) come first at merge.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qbconnect.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_companies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("token_expires_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("installed_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", qbconnect.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_companies")),
    )


def downgrade() -> None:
    op.drop_table("crm_companies")

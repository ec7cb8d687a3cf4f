"""an index for the fair claim: sync_jobs (state, location_id, run_after)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00

``jobs.claim_next`` runs for every queue slot and, for each location with due work in turn, takes that
location's job due first (``state = 'pending' AND location_id = … AND run_after <= now ORDER BY run_after``).
With (state, location_id, run_after) that pick is one short range of this index (PostgreSQL: an index scan on
it, measured with 200,000 jobs over 50 locations), however many finished jobs the table keeps. Before it, the
pick read either every due job of every location (state, run_after) or every job the location ever had,
finished ones included (location_id). Only adds an index, so it may run before a rolling deploy; PostgreSQL
holds writes to sync_jobs while the index is built.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_jobs_state_location_run_after", "sync_jobs", ["state", "location_id", "run_after"])


def downgrade() -> None:
    op.drop_index("ix_sync_jobs_state_location_run_after", table_name="sync_jobs")

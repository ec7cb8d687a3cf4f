"""QuickBooks in the CRM's workflows: trigger subscriptions, events, deliveries, invoice balances, contact
balance fields

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03 14:00:00

Every table here is new. (There is no 0007 on main: the number was kept for the scale-out work.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import qbconnect.db.types

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, qbconnect.db.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workflow_subscriptions",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("trigger_id", sa.String(length=128), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=True),
        sa.Column("company_id", sa.String(length=64), nullable=True),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        _when("ended_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_subscriptions")),
        sa.UniqueConstraint("location_id", "trigger_id", name="uq_workflow_subscriptions_trigger"),
    )
    op.create_index("ix_workflow_subscriptions_key", "workflow_subscriptions", ["location_id", "trigger_key", "active"])
    op.create_table(
        "workflow_events",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("realm_id", sa.String(length=64), nullable=False),
        sa.Column("qbo_customer_id", sa.String(length=64), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False),
        _when("occurred_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_events")),
        sa.UniqueConstraint("location_id", "event_key", name="uq_workflow_events_key"),
    )
    op.create_table(
        "workflow_deliveries",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", _PK, nullable=False),
        sa.Column("event_id", _PK, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        _when("sent_at", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_deliveries")),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_workflow_deliveries_pair"),
    )
    op.create_index(op.f("ix_workflow_deliveries_location_id"), "workflow_deliveries", ["location_id"], unique=False)
    op.create_table(
        "qbo_invoice_balances",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("realm_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("customer_name", sa.String(length=255), nullable=True),
        sa.Column("bill_email", sa.String(length=255), nullable=True),
        sa.Column("doc_number", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("total", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("balance", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("txn_date", sa.String(length=10), nullable=True),
        sa.Column("due_date", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("qbo_updated", sa.String(length=40), nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qbo_invoice_balances")),
        sa.UniqueConstraint("location_id", "realm_id", "invoice_id", name="uq_qbo_invoice_balances_invoice"),
    )
    op.create_index("ix_qbo_invoice_balances_customer", "qbo_invoice_balances", ["location_id", "customer_id"])
    op.create_table(
        "contact_balance_fields",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("open_balance", sa.String(length=32), nullable=True),
        sa.Column("overdue", sa.String(length=32), nullable=True),
        _when("written_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_balance_fields")),
        sa.UniqueConstraint("location_id", "contact_id", name="uq_contact_balance_fields_contact"),
    )


def downgrade() -> None:
    op.drop_table("contact_balance_fields")
    op.drop_index("ix_qbo_invoice_balances_customer", table_name="qbo_invoice_balances")
    op.drop_table("qbo_invoice_balances")
    op.drop_index(op.f("ix_workflow_deliveries_location_id"), table_name="workflow_deliveries")
    op.drop_table("workflow_deliveries")
    op.drop_table("workflow_events")
    op.drop_index("ix_workflow_subscriptions_key", table_name="workflow_subscriptions")
    op.drop_table("workflow_subscriptions")

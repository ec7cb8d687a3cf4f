"""Migration 0008 builds what the workflow models describe and goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from qbconnect.db.migrate import alembic_config, upgrade
from tests.support.migrations import schema_diffs

TABLES = (
    "workflow_subscriptions",
    "workflow_events",
    "workflow_deliveries",
    "qbo_invoice_balances",
    "contact_balance_fields",
)


def test_0008_matches_the_models_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        mine = schema_diffs(engine, *TABLES)
        assert mine == []
        assert set(TABLES) <= set(inspect(engine).get_table_names())
        command.downgrade(alembic_config(url), "0008-1")  # to whatever 0008 follows
        engine.dispose()
        assert not set(TABLES) & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()

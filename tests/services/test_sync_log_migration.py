"""Migration 0004 builds what the models describe (activity columns, activity_attempts) and goes back down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from qbconnect.db.migrate import alembic_config, upgrade
from tests.support.migrations import schema_diffs


def test_0004_matches_the_models_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        mine = schema_diffs(engine, "activity")
        assert mine == []
        columns = {c["name"] for c in inspect(engine).get_columns("activity")}
        assert {"label", "amount", "currency", "customer", "dismissed_at", "dismissed_by", "resolved_at"} <= columns
        command.downgrade(alembic_config(url), "0002")
        engine.dispose()
        assert "activity_attempts" not in inspect(engine).get_table_names()
        assert "label" not in {c["name"] for c in inspect(engine).get_columns("activity")}
    finally:
        engine.dispose()

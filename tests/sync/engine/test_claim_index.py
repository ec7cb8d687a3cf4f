"""Migration 0009: the fair claim's index on sync_jobs (state, location_id, run_after), as the model declares
it, on SQLite and PostgreSQL; it goes back down and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, create_engine, inspect

from qbconnect.db.migrate import alembic_config, upgrade
from tests.support.migrations import schema_diffs

INDEX = "ix_sync_jobs_state_location_run_after"


def _claim_index(engine: Engine) -> list[str | None] | None:
    found = [ix for ix in inspect(engine).get_indexes("sync_jobs") if ix["name"] == INDEX]
    return list(found[0]["column_names"]) if found else None


def test_0009_matches_the_model_and_downgrades(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert schema_diffs(engine, "sync_jobs") == []
        assert _claim_index(engine) == ["state", "location_id", "run_after"]
        command.downgrade(alembic_config(db_url), "0008")
        assert _claim_index(engine) is None
        assert [d[0] for d in schema_diffs(engine, "sync_jobs")] == ["add_index"]  # only this index differs
        upgrade(db_url)
        assert _claim_index(engine) == ["state", "location_id", "run_after"]
        assert schema_diffs(engine, "sync_jobs") == []
    finally:
        engine.dispose()

"""Migration tests: a database migrated to the newest revision, and how its schema differs from the models."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from qbconnect.db.models import Base


def schema_diffs(engine: Engine, *names: str) -> list[Any]:
    """Alembic's differences between the database and the models that mention any of ``names``."""
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    return [d for d in diffs if any(name in repr(d) for name in names)]

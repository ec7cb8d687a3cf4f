"""Apply Alembic migrations programmatically (``qbconnect db upgrade`` and service start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from qbconnect.db.session import normalize_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)

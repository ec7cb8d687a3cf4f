"""Apply Alembic migrations programmatically (``qbconnect db upgrade`` and service start-up), and tell whether
a database is at the code's schema (``--no-migrate`` start-up, ``/readyz``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from qbconnect.db.session import normalize_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def head_revisions() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


@dataclass(frozen=True)
class SchemaState:
    current: frozenset[str]  # the revisions the database is at (empty: never migrated)
    heads: frozenset[str]  # the revisions this code expects

    @property
    def up_to_date(self) -> bool:
        return self.current == self.heads


def schema_state(engine: Engine) -> SchemaState:
    """Where ``engine``'s database stands against the code's migrations (reads ``alembic_version`` only)."""
    with engine.connect() as conn:
        current = frozenset(MigrationContext.configure(conn).get_current_heads())
    return SchemaState(current=current, heads=head_revisions())


def unmigrated_reason(database_url: str) -> str | None:
    """None when the database is at the code's schema; otherwise one line saying what to do."""
    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if on_disk and not Path(str(url.database)).exists():
        return f"no database at {shown}; run `qbconnect db upgrade`"
    engine = create_engine(normalize_url(database_url))
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    if state.up_to_date:
        return None
    at = ", ".join(sorted(state.current)) or "no schema"
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}
    if not state.current <= known:
        return f"the database at {shown} is at {at}, newer than this release knows; start the newer release"
    want = ", ".join(sorted(state.heads))
    return f"the database at {shown} is not migrated (at {at}, this release needs {want}); run `qbconnect db upgrade`"

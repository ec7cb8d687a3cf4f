"""Alembic environment: runs against the URL given by qbconnect.db.migrate."""

from __future__ import annotations

from alembic import context

from qbconnect.db import link_model  # noqa: F401  (registers the link table on the metadata)
from qbconnect.db.models import Base
from qbconnect.db.session import MIGRATE, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url, MIGRATE)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

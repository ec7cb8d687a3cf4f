"""The end-to-end fixture: both emulators + the service over loopback HTTP, one connected location."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs
from tests.conftest import TEST_ADMIN, TEST_SECRET
from tests.support.databases import copy_sqlite_template


@dataclass
class Connected:
    stack: Stack
    location_id: str
    realm_id: str


def build_stack(tmp_path: Path, **kwargs: object) -> Stack:
    jobs.set_dispatcher(None)
    database = tmp_path / "qbconnect.db"
    copy_sqlite_template(database)  # migrated already: the stack's own start-up upgrade finds it at head
    return start_stack(
        database_url=f"sqlite:///{database}",
        queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
        secret_key=TEST_SECRET,
        admin_token=TEST_ADMIN,
        **kwargs,  # type: ignore[arg-type]
    )


def stop_stack(stack: Stack) -> None:
    """``stack.stop()``, its three servers told to exit together first (each takes 0.1-0.2 s to wind down;
    one after the other they added half a second to every test's teardown)."""
    for server in stack.servers:
        server.server.should_exit = True
    stack.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = build_stack(tmp_path)
    yield built
    stop_stack(built)
    jobs.set_dispatcher(None)


@pytest.fixture
def connected(stack: Stack) -> Connected:
    """A US location, installed and connected to a fresh US sandbox company."""
    location_id = stack.install_crm_location(name="Acme Plumbing")
    realm_id = stack.connect_quickbooks(location_id, name="Acme Plumbing LLC", country="US")
    stack.drain()  # whatever connecting enqueued (e.g. the customer import)
    return Connected(stack=stack, location_id=location_id, realm_id=realm_id)

"""Import progress (what the settings page and `qbconnect status` show) and how an import is queued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from qbconnect.db.models import Location, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.importer import ImportProgress, id_key, import_ever_completed, start_customer_import
from qbconnect.sync.contacts.state import IMPORT_KEY, write_state

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_rate_and_eta_count_from_the_latest_start() -> None:
    progress = ImportProgress(total=1000, done=200)
    progress.begin_segment(T0)  # resumed after 200
    progress.done = 300
    progress.touch(T0 + timedelta(seconds=20))
    assert progress.rate == 5.0 and progress.eta == 140
    assert progress.updated_at == (T0 + timedelta(seconds=20)).isoformat(timespec="seconds")


def test_total_grows_when_customers_are_added_while_importing() -> None:
    progress = ImportProgress(total=10, done=12)
    progress.begin_segment(T0)
    progress.touch(T0 + timedelta(seconds=1))
    assert progress.total == 12


def test_restart_resets_counters_but_remembers_the_last_completion() -> None:
    progress = ImportProgress(status="done", run=3, done=50, created=50, completed_at="2026-01-01T00:00:00+00:00")
    progress.skipped_without_email.append({"id": "1", "name": "x"})
    progress.restart(realm_id="r1", reason="Import now", total=70, now=T0)
    assert (progress.run, progress.done, progress.created, progress.total) == (4, 0, 0, 70)
    assert progress.skipped_without_email == [] and progress.next_start == 1 and progress.last_id is None
    assert progress.completed_at == "2026-01-01T00:00:00+00:00" and progress.status == "running"


def test_finish_marks_completion_and_summarises() -> None:
    progress = ImportProgress(total=5, done=5, created=2, updated=1, unchanged=1, skipped=1)
    progress.begin_segment(T0)
    progress.finish(T0 + timedelta(seconds=1))
    assert progress.status == "done" and progress.eta == 0 and progress.completed_at
    assert import_ever_completed({IMPORT_KEY: progress.to_state()})
    assert progress.summary() == ("Imported 5 QuickBooks customers: 2 new contacts, 1 updated, 1 unchanged, 1 skipped")


def test_state_round_trip_ignores_unknown_keys() -> None:
    state = ImportProgress(status="running", done=7, last_id="42").to_state()
    assert {"status", "done", "total", "rate", "eta", "last_id", "next_start", "started_at"} <= state.keys()
    again = ImportProgress.from_state({**state, "something_new": 1})
    assert again == ImportProgress(status="running", done=7, last_id="42")


def test_ids_sort_like_quickbooks_orders_them() -> None:
    assert sorted(["10", "9", "100", "A"], key=id_key) == ["9", "10", "100", "A"]


def _location(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        session.add(Location(id="loc1", name="Acme"))


def _jobs(runtime: Runtime) -> list[SyncJob]:
    with runtime.sessions() as session:
        return list(session.execute(select(SyncJob)).scalars())


def _state(runtime: Runtime) -> dict[str, object]:
    with runtime.sessions() as session:
        location = session.get(Location, "loc1")
        assert location is not None
        return dict(location.state[IMPORT_KEY])


def test_start_queues_one_import_job_and_shows_it_queued(sqlite_runtime: Runtime) -> None:
    _location(sqlite_runtime)
    with sqlite_runtime.sessions.begin() as session:
        first = start_customer_import(session, "loc1", "QuickBooks connected")
        second = start_customer_import(session, "loc1", "Import now")
    assert first == second
    (job,) = _jobs(sqlite_runtime)
    assert (job.kind, job.entity_id, job.state) == ("customer_import", "all", "pending")
    state = _state(sqlite_runtime)
    assert state["status"] == "queued" and state["done"] == 0 and state["reason"] == "Import now"


def test_start_leaves_an_unfinished_import_resumable(sqlite_runtime: Runtime) -> None:
    _location(sqlite_runtime)
    running = ImportProgress(status="interrupted", done=3000, total=10000, next_start=3001, last_id="3000")
    with sqlite_runtime.sessions.begin() as session:
        write_state(session, "loc1", IMPORT_KEY, running.to_state())
        write_state(session, "loc1", "other_feature", {"cursor": "x"})
        start_customer_import(session, "loc1", "Import now")
    state = _state(sqlite_runtime)
    assert (state["status"], state["done"], state["last_id"]) == ("interrupted", 3000, "3000")
    with sqlite_runtime.sessions() as session:
        location = session.get(Location, "loc1")
        assert location is not None and location.state["other_feature"] == {"cursor": "x"}


def test_status_row_shows_rate_and_eta_while_running() -> None:
    from qbconnect.services.status import LocationOverview

    progress = ImportProgress(status="running", total=1000, done=250, rate=9.5, eta=79)
    view = LocationOverview("loc1", "Acme", "installed", "connected", "Acme LLC", "r1", None, None)
    view.customer_import = progress.to_state()
    row = dict(view.rows())["customer import"]
    assert row.startswith("running [#######") and "250/1000 at 9.5/s, about 1 min 19 s left" in row


def test_start_does_nothing_when_contact_import_is_off(sqlite_runtime: Runtime) -> None:
    with sqlite_runtime.sessions.begin() as session:
        session.add(Location(id="loc1", name="Acme", settings={"import_contacts": False}))
    with sqlite_runtime.sessions.begin() as session:
        assert start_customer_import(session, "loc1", "Import now") is None
        assert start_customer_import(session, "nowhere", "Import now") is None
    assert _jobs(sqlite_runtime) == []

"""When a company's safety sweep (a change query nobody rang for) is due, with an injected clock: after
``QBCONNECT_QBO_SWEEP_INTERVAL_SECONDS`` without any change query, counted from the connection when none
ran yet, and per company (a cursor of another company does not count)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.db.models import Location, QboConnection, SyncJob
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.cdc import safety_sweep_interval, sweep_due
from qbconnect.sync.contacts.handler import enqueue_change_sweeps
from qbconnect.sync.engine.routing import QBO_CDC

CONNECTED = datetime.fromisoformat("2026-11-20T09:00:00+00:00")
DAY = timedelta(days=1)


def test_the_default_interval_is_a_day() -> None:
    assert Settings(_env_file=None).qbo_sweep_interval_seconds == 86400  # type: ignore[call-arg]


def test_due_a_full_interval_after_the_last_change_query() -> None:
    last = CONNECTED + timedelta(days=3)
    state = {"realm_id": "9130", "last_run_at": last.isoformat()}
    assert not sweep_due(state, "9130", CONNECTED, now=last + DAY - timedelta(seconds=1), interval=DAY)
    assert sweep_due(state, "9130", CONNECTED, now=last + DAY, interval=DAY)
    assert not sweep_due(state, "9130", CONNECTED, now=last + timedelta(hours=5), interval=timedelta(hours=6))
    assert sweep_due(state, "9130", CONNECTED, now=last + timedelta(hours=6), interval=timedelta(hours=6))


def test_the_first_one_is_due_a_full_interval_after_connecting() -> None:
    assert not sweep_due({}, "9130", CONNECTED, now=CONNECTED + timedelta(hours=23), interval=DAY)
    assert sweep_due({}, "9130", CONNECTED, now=CONNECTED + DAY, interval=DAY)
    assert sweep_due({}, "9130", None, now=CONNECTED, interval=DAY)  # no connection time known: now


def test_another_company_s_change_query_does_not_count() -> None:
    state = {"realm_id": "4620", "last_run_at": (CONNECTED + timedelta(hours=20)).isoformat()}
    assert sweep_due(state, "9130", CONNECTED, now=CONNECTED + DAY, interval=DAY)
    older = {"last_run_at": (CONNECTED + timedelta(hours=20)).isoformat()}  # written before realms were recorded
    assert not sweep_due(older, "9130", CONNECTED, now=CONNECTED + DAY, interval=DAY)


def _connect(runtime: Runtime, location_id: str, realm_id: str, state: dict[str, object]) -> None:
    with runtime.sessions.begin() as session:
        session.add(Location(id=location_id, name=location_id, crm_status="installed", state=state))
        session.flush()
        session.add(
            QboConnection(
                location_id=location_id,
                realm_id=realm_id,
                active_realm_id=realm_id,
                status="connected",
                connected_at=CONNECTED,
            )
        )


def _sweeps_at(runtime: Runtime, now: datetime) -> list[str]:
    with runtime.sessions.begin() as session:
        enqueue_change_sweeps(runtime, session, now=now)
    with runtime.sessions.begin() as session:
        found = session.execute(select(SyncJob).where(SyncJob.kind == QBO_CDC, SyncJob.state == "pending")).scalars()
        queued = sorted(job.location_id for job in found)
        for job in session.execute(select(SyncJob)).scalars():
            session.delete(job)
    return queued


def test_the_periodic_pass_queues_only_the_companies_whose_sweep_is_due(runtime: Runtime) -> None:
    runtime.settings.qbo_sweep_interval_seconds = 6 * 3600
    assert safety_sweep_interval(runtime) == timedelta(hours=6)
    rang = CONNECTED + timedelta(hours=4)  # a webhook's change query ran then
    _connect(runtime, "quiet", "9130", {})
    _connect(runtime, "rang", "4620", {"qbo_cdc": {"realm_id": "4620", "last_run_at": rang.isoformat()}})

    assert _sweeps_at(runtime, CONNECTED + timedelta(hours=5)) == []
    assert _sweeps_at(runtime, CONNECTED + timedelta(hours=6)) == ["quiet"]
    assert _sweeps_at(runtime, rang + timedelta(hours=6)) == ["quiet", "rang"]


def test_the_read_budget_stretches_the_safety_sweep_and_stops_it_when_spent(runtime: Runtime) -> None:
    from qbconnect.connections.read_budget import month_of
    from qbconnect.db.models import QboReadCount

    runtime.settings.qbo_sweep_interval_seconds = 6 * 3600
    runtime.settings.qbo_read_budget_monthly = 100
    _connect(runtime, "quiet", "9130", {})
    with runtime.sessions.begin() as session:
        session.add(QboReadCount(month=month_of(utcnow()), realm_id="9130", kind="cdc", reads=85))
    with runtime.sessions() as session:
        assert safety_sweep_interval(runtime, session) == timedelta(hours=24)  # tight: four times as long
    with runtime.sessions.begin() as session:
        row = session.execute(select(QboReadCount)).scalar_one()
        row.reads = 100
    with runtime.sessions() as session:
        assert safety_sweep_interval(runtime, session) is None  # spent: no safety sweep
    assert _sweeps_at(runtime, utcnow() + timedelta(days=30)) == []

"""Group commit of HighLevel deliveries (``intake.intake_crm_many``): one transaction for those arriving
together, and still one result per event; an Intuit notification stored in one pass (``intake.intake_qbo``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from qbconnect.clock import utcnow
from qbconnect.crm.events import CrmEvent, parse_event
from qbconnect.db.models import InboxEvent
from qbconnect.qbo.webhooks import QboEvent, parse_events
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import intake
from tests.support.webhooks import connect, counts, crm_invoice, qbo_entity, qbo_legacy


def _invoice(location_id: str, webhook_id: str, invoice_id: str) -> tuple[CrmEvent, str]:
    body = crm_invoice(location_id, webhook_id, _id=invoice_id)
    return parse_event(body), body.decode()


@contextmanager
def _statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


@contextmanager
def _transactions(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_commit(conn) -> None:  # type: ignore[no-untyped-def]
        seen.append("COMMIT")

    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


def test_a_batch_is_one_transaction_with_one_status_read_per_location(runtime: Runtime) -> None:
    connect(runtime, "loc-a", "9201")
    connect(runtime, "loc-b", "9202")
    deliveries = [_invoice("loc-a", f"wh-a{n}", f"inv-a{n}") for n in range(5)]
    deliveries += [_invoice("loc-b", f"wh-b{n}", f"inv-b{n}") for n in range(3)]
    with _statements() as statements, _transactions(runtime.engine) as commits:
        stored = intake.intake_crm_many(runtime, deliveries)
    assert stored.results == ["queued"] * 8
    assert len(stored.dispatches) == 8
    assert commits == ["COMMIT"]
    # Per event: the inbox row, the job, its sync-log row, the job's link to it. One status read per location.
    assert statements.count("SELECT") == 2
    assert statements.count("INSERT") == 8 * 3 and statements.count("UPDATE") == 8
    assert counts(runtime) == (8, 8)


def test_a_redelivery_inside_the_batch_is_a_duplicate(runtime: Runtime) -> None:
    connect(runtime, "loc-a", "9201")
    first = _invoice("loc-a", "wh-1", "inv-1")
    stored = intake.intake_crm_many(runtime, [first, first, _invoice("loc-a", "wh-2", "inv-1")])
    assert stored.results == ["queued", "duplicate", "queued"]
    assert counts(runtime) == (2, 1)  # two events, one job for the invoice


def test_an_unstorable_event_is_refused_alone(runtime: Runtime) -> None:
    connect(runtime, "loc-a", "9201")
    poison = _invoice("loc-a", "wh-poison", "x" * 500)  # longer than the entity id column
    stored = intake.intake_crm_many(runtime, [_invoice("loc-a", "wh-1", "inv-1"), poison])
    assert stored.results[0] == "queued"
    assert isinstance(stored.results[1], intake.UnstorableEvent)
    assert counts(runtime) == (1, 1)


def test_when_the_shared_transaction_fails_each_event_is_stored_alone(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(runtime, "loc-a", "9201")
    real = intake._intake_crm

    def fails_on_one(session, event: CrmEvent, body_text: str, statuses):  # type: ignore[no-untyped-def]
        if event.entity_id == "inv-bad":
            raise RuntimeError("a defect that only this event meets")
        return real(session, event, body_text, statuses)

    monkeypatch.setattr(intake, "_intake_crm", fails_on_one)
    deliveries = [_invoice("loc-a", "wh-1", "inv-1"), _invoice("loc-a", "wh-2", "inv-bad")]
    deliveries.append(_invoice("loc-a", "wh-3", "inv-3"))
    stored = intake.intake_crm_many(runtime, deliveries)
    assert stored.results[0] == "queued" and stored.results[2] == "queued"
    assert isinstance(stored.results[1], RuntimeError)
    assert len(stored.dispatches) == 2
    with runtime.sessions() as session:
        kept = set(session.scalars(select(InboxEvent.event_id)))
    assert kept == {"wh-1", "wh-3"}


def test_storage_down_fails_every_event_of_the_batch_without_retrying_each(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(runtime, "loc-a", "9201")
    calls: list[str] = []

    def locked(session, event: CrmEvent, body_text: str, statuses):  # type: ignore[no-untyped-def]
        calls.append(event.event_id)
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(intake, "_intake_crm", locked)
    deliveries = [_invoice("loc-a", f"wh-{n}", f"inv-{n}") for n in range(4)]
    stored = intake.intake_crm_many(runtime, deliveries)
    assert all(isinstance(r, OperationalError) for r in stored.results)
    assert calls == ["wh-0"]  # one attempt for the batch: storage that is down is not asked four more times
    assert counts(runtime) == (0, 0)


# --- Intuit notifications: one transaction, one status read per company, one upsert per job ---------------
def _intuit(realm_id: str, count: int, *, operation: str = "Update") -> list[QboEvent]:
    changed = utcnow().isoformat()  # recent: the doorbell's change query (older changes are read by id)
    entities = [{**qbo_entity(str(100 + n), operation=operation), "lastUpdated": changed} for n in range(count)]
    return parse_events(qbo_legacy(realm_id, *entities))


def test_an_intuit_batch_reads_its_company_once_and_asks_for_its_change_query_once(runtime: Runtime) -> None:
    connect(runtime, "loc-a", "9201")
    events = _intuit("9201", 40)
    with _statements() as statements:
        stored = intake.intake_qbo(runtime, events, "{}")
    assert stored.outcomes == ["queued"] * 40 and stored.refusals == []
    assert "SAVEPOINT" not in statements
    assert statements.count("SELECT") == 1
    # 40 inbox rows, then the doorbell's one job: its upsert, its sync-log row, the job's link to it.
    assert statements.count("INSERT") == 40 + 2 and statements.count("UPDATE") == 1
    assert counts(runtime) == (40, 1)
    assert len(stored.dispatches) == 1


def test_a_value_postgresql_refuses_leaves_out_only_its_event(
    runtime: Runtime, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first defence (``check_qbo_event``) is switched off to reach the second: the batch is stored
    again with a savepoint per event, and only the event PostgreSQL refuses is left out."""
    if backend != "postgresql":
        pytest.skip("SQLite stores a NUL character; only PostgreSQL refuses it")
    connect(runtime, "loc-a", "9201")
    monkeypatch.setattr(intake, "check_qbo_event", lambda event: None)
    poison = parse_events(qbo_legacy("9201", {**qbo_entity("bad\x00id"), "lastUpdated": utcnow().isoformat()}))
    events = [*poison, *_intuit("9201", 3)]
    stored = intake.intake_qbo(runtime, events, "{}")
    assert stored.outcomes == [intake.REFUSED, "queued", "queued", "queued"]
    assert stored.refusals == ["a value storage cannot hold"]
    assert counts(runtime) == (3, 1)  # the doorbell's job is there although the first event was refused
    assert len(stored.dispatches) == 1

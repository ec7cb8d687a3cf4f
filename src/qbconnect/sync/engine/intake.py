"""Intake: a verified, parsed platform event becomes an inbox row and the sync jobs it asks for.

The web route verifies the signature, parses the body and answers; everything that touches storage is
here. HighLevel deliveries that arrive together are stored in one transaction (:func:`intake_crm_many`, a
group commit); in an Intuit batch each event is stored under its own savepoint, so
an event storage cannot hold is refused alone and its siblings are still stored. An Intuit event rings the
doorbell (:func:`routing.jobs_for_qbo_event`): one debounced change query per company, however many events
a burst holds. The jobs' hand-off to the queue is returned to the caller, to be done after the answer (see
:func:`hand_off`).

Values storage cannot hold (ids longer than their columns, NUL characters, lone surrogates) are refused
before any query: PostgreSQL would raise a DataError for them, which must not look like "storage down"
(the platforms would retry a poison message for ever).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import String, Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from qbconnect.clock import as_utc, utcnow
from qbconnect.connections import service as connections_service
from qbconnect.connections import state as connections_state
from qbconnect.connections.state import SyncStatus
from qbconnect.crm.events import CrmEvent
from qbconnect.db.models import CrmCompany, InboxEvent, Location, WebhookRefusal, inbox_body_needed
from qbconnect.qbo.webhooks import QboEvent
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs, routing
from qbconnect.sync.links import echoes

log = structlog.get_logger(__name__)

UNINSTALL_TYPES = frozenset({"UNINSTALL", "AppUninstall"})
INSTALL_TYPES = frozenset({"INSTALL", "AppInstall"})
REFUSED = "refused"


class UnstorableEvent(ValueError):
    """An event carries a value storage cannot hold; the message says which and why (no value in it)."""


@dataclass
class Intake:
    """What intake did: one outcome per event, the refusal reasons, and the jobs still to hand to the queue."""

    outcomes: list[str]
    refusals: list[str] = field(default_factory=list)
    dispatches: dict[int, datetime | None] = field(default_factory=dict)


def _column_limit(column: str) -> int:
    kind = InboxEvent.__table__.c[column].type
    assert isinstance(kind, String) and kind.length is not None
    return kind.length


def check_storable(values: dict[str, str | None], limits: dict[str, int] | None = None) -> None:
    """Raise :class:`UnstorableEvent` when a value is longer than its column, holds a NUL character or is
    not valid Unicode (a lone surrogate such as ``\\ud800`` cannot be encoded as UTF-8)."""
    for name, value in values.items():
        if value is None:
            continue
        limit = (limits or {}).get(name) or _column_limit(name)
        if len(value) > limit:
            raise UnstorableEvent(f"{name} is longer than {limit} characters")
        if "\x00" in value:
            raise UnstorableEvent(f"{name} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnstorableEvent(f"{name} is not valid Unicode (a lone surrogate)") from exc


def check_crm_event(event: CrmEvent) -> None:
    check_storable(
        {
            "event_id": event.event_id,
            "event_type": event.type,
            "location_id": event.location_id,
            "entity_kind": event.entity_kind,
            "entity_id": event.entity_id,
        }
    )


def check_qbo_event(event: QboEvent) -> None:
    check_storable(
        {
            "event_id": event.event_id,
            "event_type": f"{event.entity}.{event.operation}",
            "realm_id": event.realm_id,
            "entity_kind": event.entity,
            "entity_id": event.entity_id,
            "deleted_id": event.deleted_id,
        },
        limits={"deleted_id": _column_limit("entity_id")},
    )


def _stale_uninstall(event: CrmEvent, location: Location) -> bool:
    """An uninstall dated before the location's latest install (a late or replayed delivery)."""
    installed_at = as_utc(location.installed_at)
    if event.timestamp is None or installed_at is None:
        return False
    # Webhook timestamps carry whole seconds; the install time is exact.
    return event.timestamp < installed_at.replace(microsecond=0)


def intake_crm(runtime: Runtime, event: CrmEvent, body_text: str) -> Intake:
    """Store one HighLevel event (deduplicated by its id) and enqueue its jobs; one transaction."""
    check_crm_event(event)
    with runtime.sessions.begin() as session:
        outcome = _intake_crm(session, event, body_text, {})
        dispatches = jobs.take_dispatches(session)
    return Intake(outcomes=[outcome], dispatches=dispatches)


# Errors that say storage itself is locked, slow or down: the same for every event of a batch.
STORAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, PoolTimeout, TimeoutError, OSError)


@dataclass
class BatchIntake:
    """What :func:`intake_crm_many` did: per delivery its outcome or the exception that kept it out, and the
    jobs still to hand to the queue (of the whole batch)."""

    results: list[str | Exception]
    dispatches: dict[int, datetime | None] = field(default_factory=dict)


def intake_crm_many(runtime: Runtime, deliveries: Sequence[tuple[CrmEvent, str]]) -> BatchIntake:
    """Store HighLevel events that arrived together in one transaction (a group commit): one BEGIN and
    COMMIT, and one status read per location, for the whole batch.

    Each event keeps its own result: one storage cannot hold is refused before any query
    (:class:`UnstorableEvent`); when storage is locked or down (:data:`STORAGE_ERRORS`) every event gets that
    error; when the shared transaction fails for any other reason, each event is stored again in a
    transaction of its own, so that one event's failure stays its own."""
    results: list[str | Exception] = []
    storable: list[int] = []
    for index, (event, _body) in enumerate(deliveries):
        try:
            check_crm_event(event)
        except UnstorableEvent as exc:
            results.append(exc)
            continue
        results.append("")
        storable.append(index)
    if not storable:
        return BatchIntake(results)
    try:
        with runtime.sessions.begin() as session:
            statuses: dict[str, SyncStatus | None] = {}
            for index in storable:
                results[index] = _intake_crm(session, *deliveries[index], statuses)
            dispatches = jobs.take_dispatches(session)
        return BatchIntake(results, dispatches)
    except STORAGE_ERRORS as exc:
        for index in storable:
            results[index] = exc
        return BatchIntake(results)
    except Exception as exc:
        if len(storable) == 1:
            results[storable[0]] = exc
            return BatchIntake(results)
        log.warning("intake.crm.batch_retried_one_by_one", events=len(storable), error=type(exc).__name__)
    batch = BatchIntake(results)
    for index in storable:
        try:
            alone = intake_crm(runtime, *deliveries[index])
        except Exception as exc:
            results[index] = exc
            continue
        results[index] = alone.outcomes[0]
        batch.dispatches.update(alone.dispatches)
    return batch


def _intake_crm(session: Session, event: CrmEvent, body_text: str, statuses: dict[str, SyncStatus | None]) -> str:
    """One event in ``session``. ``statuses`` keeps the locations' status read earlier in the same
    transaction (a lifecycle event, which changes a location, empties it)."""
    if event.type in INSTALL_TYPES or event.type in UNINSTALL_TYPES:
        statuses.clear()
        return _intake_crm_lifecycle(session, event, body_text)
    # The hot path (every invoice, order and payment event): one read, then inserts only, no savepoint.
    status = _status_of(session, event.location_id, statuses)
    requests = routing.jobs_for_crm_event(event)
    if status is None or status.uninstalled:
        outcome = "unknown_location"
    elif not requests or not status.syncing:
        outcome = "ignored"
    else:
        outcome = "queued"
    row = _crm_row(event, body_text)
    if not _insert(session, row, outcome):
        return "duplicate"
    if status is not None and outcome == "queued":
        for req in requests:
            jobs.enqueue(session, status.location_id, req.kind, req.entity_id, req.reason)
    return outcome


def _status_of(session: Session, location_id: str | None, statuses: dict[str, SyncStatus | None]) -> SyncStatus | None:
    if not location_id:
        return None
    if location_id not in statuses:
        statuses[location_id] = connections_state.sync_status(session, location_id)
    return statuses[location_id]


def _crm_row(event: CrmEvent, body_text: str) -> dict[str, str | None]:
    return {
        "source": "crm",
        "event_id": event.event_id,
        "event_type": event.type,
        "location_id": event.location_id,
        "entity_kind": event.entity_kind,
        "entity_id": event.entity_id,
        "body": body_text,
    }


def _insert(session: Session, row: dict[str, str | None], outcome: str) -> bool:
    """Insert the inbox row with its outcome, keeping the body only when something will read it (one
    statement); False when this event was already received (a redelivery)."""
    if not inbox_body_needed(str(row["source"]), str(row["event_type"]), outcome):
        row = {**row, "body": ""}
    connection = session.connection()
    stored = connection.execute(_insert_inbox(connection.dialect.name), {**row, "outcome": outcome})
    return stored.first() is not None


@functools.cache
def _insert_inbox(dialect: str) -> Any:
    """The inbox insert, built once: nothing on a redelivery (same source and event id)."""
    table = cast(Table, InboxEvent.__table__)
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.source, table.c.event_id]).returning(table.c.id)


def _intake_crm_lifecycle(session: Session, event: CrmEvent, body_text: str) -> str:
    """INSTALL and UNINSTALL: rare, and they change the location itself (only when the event is new)."""
    location = session.get(Location, event.location_id) if event.location_id else None
    company_id = _installing_agency(session, event, location) if event.type in INSTALL_TYPES else None
    if company_id is not None:
        outcome = "agency_install"
    elif event.type in UNINSTALL_TYPES:
        stale = location is not None and _stale_uninstall(event, location)
        outcome = "stale_uninstall" if stale else "uninstalled"
    else:
        outcome = "unknown_location" if location is None or location.crm_status == "uninstalled" else "ignored"
    if not _insert(session, _crm_row(event, body_text), outcome):
        return "duplicate"
    if company_id is not None and event.location_id:
        connections_service.install_agency_location(session, company_id, event.location_id)
        log.info("intake.crm.agency_location_installed", location_id=event.location_id, company_id=company_id)
    elif outcome == "stale_uninstall":
        log.warning("intake.crm.stale_uninstall", event_id=event.event_id, location_id=event.location_id)
    elif outcome == "uninstalled" and location is not None:
        connections_state.uninstall_location(session, location)
    return outcome


# --- Agency installs -------------------------------------------------------------------------------
def _installing_agency(session: Session, event: CrmEvent, location: Location | None) -> str | None:
    """The agency's company id when this INSTALL is of a location under an agency that installed the app
    (a location added to a bulk install: the location is installed, its token minted from the company's on
    first use). None: not that case (the event is handled as before)."""
    company_id = event.body.get("companyId")
    if not event.location_id or not isinstance(company_id, str) or not company_id:
        return None
    if location is not None and location.crm_status != "uninstalled":
        return None
    company = session.get(CrmCompany, company_id)
    if company is None or company.status != "installed":
        return None
    return company_id


def intake_qbo(runtime: Runtime, events: list[QboEvent], body_text: str) -> Intake:
    """Store a batch of Intuit events in one transaction: an event storage cannot hold is refused (outcome
    ``refused``) and the others are still stored.

    Intuit puts up to hundreds of events in one notification and wants the answer within 3 s, so the batch is
    first stored without a savepoint per event, one status read per company and one job upsert per job it
    asks for (the doorbell: every event of a company asks for the same change query). Only when that fails for
    another reason than storage being down (a value PostgreSQL refuses) is it stored again with a savepoint
    per event, so that the refused event is the only one left out."""
    debounce, now = runtime.settings.qbo_cdc_debounce_seconds, utcnow()
    refusals: dict[int, str] = {}
    for index, event in enumerate(events):
        try:
            check_qbo_event(event)
        except UnstorableEvent as exc:
            refusals[index] = str(exc)
    try:
        return _intake_qbo_batch(runtime, events, body_text, refusals, debounce=debounce, now=now, savepoints=False)
    except STORAGE_ERRORS:
        raise
    except DataError as exc:
        log.warning("intake.qbo.batch_stored_event_by_event", events=len(events), error=type(exc).__name__)
    return _intake_qbo_batch(runtime, events, body_text, refusals, debounce=debounce, now=now, savepoints=True)


def _intake_qbo_batch(
    runtime: Runtime,
    events: list[QboEvent],
    body_text: str,
    refusals: dict[int, str],
    *,
    debounce: float,
    now: datetime,
    savepoints: bool,
) -> Intake:
    result = Intake(outcomes=[])
    refused = dict(refusals)
    statuses: dict[str, SyncStatus | None] = {}
    enqueued: set[tuple[str, str, str]] = set()
    with runtime.sessions.begin() as session:
        for index, event in enumerate(events):
            if index not in refused:
                asked = set(enqueued)
                try:
                    if savepoints:
                        with session.begin_nested():
                            outcome = _intake_qbo_event(
                                session, event, body_text, statuses, enqueued, debounce=debounce, now=now
                            )
                    else:
                        outcome = _intake_qbo_event(
                            session, event, body_text, statuses, enqueued, debounce=debounce, now=now
                        )
                except DataError:
                    if not savepoints:
                        raise
                    refused[index] = "a value storage cannot hold"
                    enqueued.intersection_update(asked)  # what the rolled-back savepoint asked for is undone
            if index in refused:
                log.warning("intake.qbo.refused", event_id=_loggable(event.event_id), reason=refused[index])
                result.refusals.append(refused[index])
                outcome = REFUSED
            result.outcomes.append(outcome)
        result.dispatches = jobs.take_dispatches(session)
    return result


def _intake_qbo_event(
    session: Session,
    event: QboEvent,
    body_text: str,
    statuses: dict[str, SyncStatus | None],
    enqueued: set[tuple[str, str, str]],
    *,
    debounce: float,
    now: datetime,
) -> str:
    """One Intuit event in ``session``. ``statuses`` keeps the companies' status read earlier in the batch;
    ``enqueued`` the jobs the batch already asked for (asking again in the same transaction changes nothing)."""
    if event.realm_id not in statuses:
        statuses[event.realm_id] = connections_state.sync_status_of_realm(session, event.realm_id)
    status = statuses[event.realm_id]
    if status is None:
        outcome = "unknown_location"
    elif not status.syncing:
        outcome = "ignored"
    elif event.operation == "Create" and echoes.is_own_create(
        session, status.location_id, event.entity, event.entity_id
    ):
        outcome = "own_write"  # the echo of the product's own create: nothing new to learn, no read
    else:
        outcome = "queued"
    requests = routing.jobs_for_qbo_event(event, debounce_seconds=debounce, now=now) if outcome == "queued" else []
    if outcome == "queued" and not requests:
        outcome = "ignored"
    row = {
        "source": "qbo",
        "event_id": event.event_id,
        "event_type": f"{event.entity}.{event.operation}",
        "location_id": status.location_id if status else None,
        "realm_id": event.realm_id,
        "entity_kind": event.entity,
        "entity_id": event.entity_id,
        "body": body_text,
    }
    if not _insert(session, row, outcome):
        return "duplicate"
    for req in requests:
        assert status is not None
        key = (status.location_id, req.kind, req.entity_id)
        if key in enqueued:
            continue
        enqueued.add(key)
        jobs.enqueue(session, status.location_id, req.kind, req.entity_id, req.reason, delay=req.delay)
    return outcome


def _loggable(value: str) -> str:
    """An id safe to put in a log line (bounded, printable)."""
    return value[:64].encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")


def hand_off(dispatches: dict[int, datetime | None]) -> None:
    """Hand committed job ids to the queue. A failure is logged, not raised: the event and its job are
    already stored, and the sweeper re-sends a pending job whose task never arrived."""
    for job_id, eta in dispatches.items():
        try:
            jobs.dispatch_now(job_id, eta)
        except Exception as exc:
            log.warning("intake.dispatch_failed", job_id=job_id, error=type(exc).__name__)


def record_refusal(runtime: Runtime, source: str, reason: str, count: int = 1) -> None:
    """Count refused signed events (per source + reason); their bodies are never kept."""
    now = utcnow()
    values = {"source": source, "reason": reason, "count": count, "first_at": now, "last_at": now}
    with runtime.sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(WebhookRefusal).values(**values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["source", "reason"],
                set_={"count": WebhookRefusal.count + count, "last_at": now},
            )
        )


def refusal_counts(session: Session) -> dict[tuple[str, str], int]:
    rows = session.execute(select(WebhookRefusal.source, WebhookRefusal.reason, WebhookRefusal.count))
    return {(source, reason): int(count) for source, reason, count in rows}

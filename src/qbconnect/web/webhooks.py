"""The one door for platform events: verify the signature on the raw bytes, store, enqueue, answer.

HighLevel retries only on 429, so when our storage is down the CRM endpoint answers 429; Intuit retries on
anything but a 200 within 3 s, so the QBO endpoint answers 503. Unsigned or forged bodies get 401 and
nothing is stored.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from qbconnect.connections import state as connections_state
from qbconnect.crm.events import CrmEvent, EventParseError, parse_event
from qbconnect.crm.webhooks import HIGHLEVEL_RSA_PUBLIC_KEY_PEM, verify_webhook
from qbconnect.db.models import InboxEvent, Location, QboConnection
from qbconnect.qbo.webhooks import QboEvent, parse_events, verify_signature
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs, routing

log = structlog.get_logger(__name__)
router = APIRouter()
MAX_BODY_BYTES = 5 * 1024 * 1024


def _answer(http_status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=http_status)


def _store(session: Session, row: InboxEvent) -> bool:
    """Insert the inbox row; False when this event was already received (a redelivery)."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False
    return True


@router.post("/webhooks/crm")
async def crm_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _answer(413, error="body too large")
    rsa_key = settings.crm_webhook_rsa_public_key or HIGHLEVEL_RSA_PUBLIC_KEY_PEM
    if not verify_webhook(body, request.headers, ed25519_key=settings.crm_webhook_public_key, rsa_key_pem=rsa_key):
        return _answer(401, error="invalid or missing webhook signature")
    try:
        event = parse_event(body)
    except EventParseError as exc:
        return _answer(400, error=str(exc))
    try:
        outcome = _intake_crm(runtime, event, body)
    except SQLAlchemyError:
        log.exception("webhook.crm.storage_unavailable", event_id=event.event_id)
        return _answer(429, error="temporarily unable to store the event; please retry")
    log.info("webhook.crm", event_id=event.event_id, type=event.type, location_id=event.location_id, outcome=outcome)
    return _answer(200, status=outcome)


def _intake_crm(runtime: Runtime, event: CrmEvent, body: bytes) -> str:
    with runtime.sessions.begin() as session:
        location = session.get(Location, event.location_id) if event.location_id else None
        row = InboxEvent(
            source="crm",
            event_id=event.event_id,
            event_type=event.type,
            location_id=event.location_id,
            entity_kind=event.entity_kind,
            entity_id=event.entity_id,
            body=body.decode("utf-8", errors="replace"),
        )
        if not _store(session, row):
            return "duplicate"
        if event.type in ("UNINSTALL", "AppUninstall"):
            if location is not None:
                connections_state.uninstall_location(session, location)
            row.outcome = "uninstalled"
            return row.outcome
        if location is None or location.crm_status == "uninstalled":
            row.outcome = "unknown_location"
            return row.outcome
        requests = routing.jobs_for_crm_event(event)
        if not requests or not connections_state.is_syncing(session, location.id):
            row.outcome = "ignored"
            return row.outcome
        for req in requests:
            jobs.enqueue(session, location.id, req.kind, req.entity_id, req.reason)
        row.outcome = "queued"
        return row.outcome


@router.post("/webhooks/qbo")
async def qbo_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _answer(413, error="body too large")
    token = settings.qbo_webhook_verifier_token
    verifier = token.get_secret_value() if token else ""
    if not verify_signature(body, request.headers.get("intuit-signature"), verifier):
        return _answer(401, error="invalid or missing intuit-signature")
    try:
        events = parse_events(body)
    except ValueError as exc:
        return _answer(400, error=str(exc))
    try:
        outcomes = _intake_qbo(runtime, events, body)
    except SQLAlchemyError:
        log.exception("webhook.qbo.storage_unavailable", events=len(events))
        return _answer(503, error="temporarily unable to store the events; please retry")
    log.info("webhook.qbo", events=len(events), outcomes=outcomes)
    return _answer(200, status="ok", events=outcomes)


def _intake_qbo(runtime: Runtime, events: list[QboEvent], body: bytes) -> list[str]:
    outcomes: list[str] = []
    text = body.decode("utf-8", errors="replace")
    with runtime.sessions.begin() as session:
        for event in events:
            connection = session.execute(
                select(QboConnection).where(QboConnection.active_realm_id == event.realm_id)
            ).scalar_one_or_none()
            row = InboxEvent(
                source="qbo",
                event_id=event.event_id,
                event_type=f"{event.entity}.{event.operation}",
                location_id=connection.location_id if connection else None,
                realm_id=event.realm_id,
                entity_kind=event.entity,
                entity_id=event.entity_id,
                body=text,
            )
            if not _store(session, row):
                outcomes.append("duplicate")
                continue
            if connection is None:
                row.outcome = "unknown_location"
            elif not connections_state.is_syncing(session, connection.location_id):
                row.outcome = "ignored"
            else:
                requests = routing.jobs_for_qbo_event(event)
                for req in requests:
                    jobs.enqueue(session, connection.location_id, req.kind, req.entity_id, req.reason)
                row.outcome = "queued" if requests else "ignored"
            outcomes.append(row.outcome)
    return outcomes

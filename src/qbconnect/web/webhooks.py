"""The one door for platform events: read the body (bounded), verify the signature on the raw bytes,
parse, hand to intake (``sync/engine/intake.py``), answer.

HighLevel retries only on 429, so when our storage cannot take the event the CRM endpoint answers 429;
Intuit retries on anything but a 200 within 3 s, so the QBO endpoint answers 503. Either answer comes
within :data:`INTAKE_DEADLINE_SECONDS` whatever storage does (locked, slow, not answering): intake runs
on its own threads and is waited for only that long (HighLevel deliveries through the app's
:class:`~qbconnect.web.intake_writer.IntakeWriter`, which stores those arriving together in one transaction).
200 means stored. Unsigned or forged bodies get 401
and nothing is stored; signed bodies that are malformed, stale or hold values storage cannot hold get a
4xx with the reason, and are kept only as a refusal count.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.crm.events import CrmEvent, EventParseError, parse_event, within_replay_window
from qbconnect.crm.webhooks import HIGHLEVEL_RSA_PUBLIC_KEY_PEM, verify_webhook
from qbconnect.qbo.webhooks import parse_events, verify_signature
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import intake
from qbconnect.web.limits import MAX_BODY_BYTES, BodyTooLarge

log = structlog.get_logger(__name__)
router = APIRouter()
T = TypeVar("T")

# Intuit wants an answer within 3 s; we answer within about 2 s whatever storage does.
INTAKE_DEADLINE_SECONDS = 1.75
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="qbconnect-intake")


class StorageUnavailable(Exception):
    """Intake did not finish in time or storage failed: the event is not (known to be) stored."""


def _answer(http_status: int, background: BackgroundTask | None = None, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=http_status, background=background)


async def _bounded(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking storage work off the event loop and wait at most the intake deadline for it.

    On timeout the work is abandoned, not interrupted: its own storage timeouts end it soon after, and a
    late commit is harmless (a platform retry of that event is then answered "duplicate")."""
    loop = asyncio.get_running_loop()
    return await _within_deadline(loop.run_in_executor(_executor, functools.partial(fn, *args)))


async def _within_deadline(work: Awaitable[T]) -> T:
    """Wait at most the intake deadline; anything but an unstorable event becomes :class:`StorageUnavailable`."""
    try:
        return await asyncio.wait_for(work, INTAKE_DEADLINE_SECONDS)
    except TimeoutError as exc:
        raise StorageUnavailable(f"storage did not answer within {INTAKE_DEADLINE_SECONDS}s") from exc
    except intake.UnstorableEvent:
        raise
    except Exception as exc:  # SQLAlchemyError, driver errors, anything else: not stored
        raise StorageUnavailable(type(exc).__name__) from exc


async def _stored(answer: Future[str]) -> str:
    """Wait at most the intake deadline for a delivery handed to the intake writer; on timeout the writer
    drops it if it has not started storing it."""
    return await _within_deadline(asyncio.wrap_future(answer))


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than the limit (counted while it streams, never buffered whole)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
    except BodyTooLarge:
        return None
    return b"".join(chunks)


async def _refused(runtime: Runtime, source: str, reason: str, count: int = 1) -> None:
    """Count refused signed events; a storage failure here is only logged (the answer stays the refusal)."""
    try:
        await _bounded(intake.record_refusal, runtime, source, reason, count)
    except Exception as exc:
        log.warning("webhook.refusal_not_counted", source=source, reason=reason, error=str(exc))


def _freshness_problem(event: CrmEvent, settings: Settings) -> str | None:
    """ "stale" or "future" when the signed delivery ``timestamp`` is outside the replay window."""
    window = timedelta(seconds=settings.crm_webhook_replay_window_seconds)
    max_age = window + timedelta(seconds=settings.crm_webhook_retry_grace_seconds)
    now = utcnow()
    if within_replay_window(event, now=now, max_age=max_age, max_ahead=window, allow_missing=True):
        return None
    assert event.timestamp is not None
    return "stale" if event.timestamp < now else "future"


@router.post("/webhooks/crm")
async def crm_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    body = await _read_body(request)
    if body is None:
        return _answer(413, error=f"body larger than {MAX_BODY_BYTES} bytes")
    rsa_key = settings.crm_webhook_rsa_public_key or HIGHLEVEL_RSA_PUBLIC_KEY_PEM
    if not verify_webhook(body, request.headers, ed25519_key=settings.crm_webhook_public_key, rsa_key_pem=rsa_key):
        return _answer(401, error="invalid or missing webhook signature")
    try:
        event = parse_event(body)
    except EventParseError as exc:
        await _refused(runtime, "crm", "malformed")
        return _answer(400, error=str(exc))
    problem = _freshness_problem(event, settings)
    if problem is not None:
        log.warning("webhook.crm.refused", reason=problem, event_id=_id(event.event_id), type=_id(event.type))
        await _refused(runtime, "crm", problem)
        return _answer(400, error=f"webhook timestamp is outside the replay window ({problem})")
    try:
        outcome = await _stored(request.app.state.intake_writer.submit(event, body.decode("utf-8")))
    except intake.UnstorableEvent as exc:
        log.warning("webhook.crm.refused", reason="unstorable", detail=str(exc), event_id=_id(event.event_id))
        await _refused(runtime, "crm", "unstorable")
        return _answer(422, error=f"event cannot be stored: {exc}")
    except StorageUnavailable as exc:
        log.error("webhook.crm.storage_unavailable", event_id=_id(event.event_id), error=str(exc))
        return _answer(429, error="temporarily unable to store the event; please retry")
    log.info(
        "webhook.crm",
        event_id=event.event_id,
        type=event.type,
        location_id=event.location_id,
        outcome=outcome,
    )
    return _answer(200, status=outcome)


@router.post("/webhooks/qbo")
async def qbo_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    body = await _read_body(request)
    if body is None:
        return _answer(413, error=f"body larger than {MAX_BODY_BYTES} bytes")
    token = settings.qbo_webhook_verifier_token
    verifier = token.get_secret_value() if token else ""
    if not verify_signature(body, request.headers.get("intuit-signature"), verifier):
        return _answer(401, error="invalid or missing intuit-signature")
    try:
        events = parse_events(body)
    except ValueError as exc:
        await _refused(runtime, "qbo", "malformed")
        return _answer(400, error=str(exc))
    try:
        result = await _bounded(intake.intake_qbo, runtime, events, body.decode("utf-8"))
    except StorageUnavailable as exc:
        log.error("webhook.qbo.storage_unavailable", events=len(events), error=str(exc))
        return _answer(503, error="temporarily unable to store the events; please retry")
    if result.refusals:
        await _refused(runtime, "qbo", "unstorable", len(result.refusals))
    realms = sorted({_id(e.realm_id) for e in events})
    log.info("webhook.qbo", events=len(events), realms=realms, outcomes=result.outcomes)
    if events and len(result.refusals) == len(events):
        return _answer(422, error="no event of this notification can be stored", reasons=result.refusals)
    body_out: dict[str, Any] = {"status": "ok", "events": result.outcomes}
    if result.refusals:
        body_out["refused"] = result.refusals
    return _answer(200, background=_hand_off(result), **body_out)


def _hand_off(result: intake.Intake) -> BackgroundTask | None:
    """The queue hand-off runs after the answer is sent: a slow or failing queue never delays or fails it."""
    return BackgroundTask(intake.hand_off, result.dispatches) if result.dispatches else None


def _id(value: str) -> str:
    """An id from a signed body, bounded and printable for a log line."""
    return value[:64].encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")

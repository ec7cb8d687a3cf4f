"""The routes HighLevel's workflow builder calls (docs/workflows.md):

- ``POST /workflows/crm/subscription`` — each trigger's *Subscription URL*: HighLevel posts the trigger's
  configuration when a workflow starts (``CREATED``), changes (``UPDATED``) or stops (``DELETED``) using it;
- ``POST /workflows/crm/actions/balance`` — the "Get QuickBooks balance" action's *Action Execution* URL.

HighLevel signs neither call (its docs offer custom headers per URL): both require
``Authorization: Bearer <the Marketplace app's Shared Secret>`` (``QBCONNECT_CRM_SHARED_SECRET``), set as a
header in the trigger's and the action's settings. Without the secret configured every call is refused.
"""

from __future__ import annotations

import hmac
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from qbconnect.db.models import Location
from qbconnect.json_body import decode_json
from qbconnect.runtime import Runtime
from qbconnect.sync.workflows import store
from qbconnect.sync.workflows.action import ActionRefused, balance_answer, contact_of
from qbconnect.web.limits import MAX_BODY_BYTES

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/workflows/crm")
MAX_WORKFLOW_BODY = min(MAX_BODY_BYTES, 256 * 1024)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _refuse(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status)


def _authorized(runtime: Runtime, request: Request) -> bool:
    secret = runtime.settings.crm_shared_secret
    expected = secret.get_secret_value() if secret is not None else ""
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if not expected or scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_WORKFLOW_BODY:
        raise ValueError("body is too large")
    return decode_json(raw)


def _installed(runtime: Runtime, location_id: str) -> bool:
    with runtime.sessions() as session:
        location = session.get(Location, location_id)
        return location is not None and location.crm_status != "uninstalled"


def _keep(runtime: Runtime, change: store.SubscriptionChange) -> bool:
    with runtime.sessions.begin() as session:
        location = session.get(Location, change.location_id)
        if location is None or location.crm_status == "uninstalled":
            return False
        store.apply_subscription(session, change)
        return True


@router.post("/subscription")
async def trigger_subscription(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    if not _authorized(runtime, request):
        return _refuse(401, "missing or wrong shared secret")
    try:
        change = store.parse_subscription(await _body(request))
    except (ValueError, store.SubscriptionRefused) as exc:
        return _refuse(422, str(exc))
    prefix = f"{runtime.settings.crm_api_base.rstrip('/')}/workflows-marketplace/"
    if change.event_type != "DELETED" and not change.target_url.startswith(prefix):
        return _refuse(422, "targetUrl is not on HighLevel's API")
    if not await run_in_threadpool(_keep, runtime, change):
        return _refuse(403, "the app is not installed in this location")
    log.info(
        "workflow.subscription",
        location_id=change.location_id,
        trigger=change.trigger_key,
        event_type=change.event_type,
        trigger_id=change.trigger_id,
    )
    return JSONResponse({"ok": True, "eventType": change.event_type, "triggerId": change.trigger_id})


def _answer(runtime: Runtime, location_id: str, contact_id: str) -> dict[str, Any]:
    with runtime.sessions() as session:
        return balance_answer(session, location_id, contact_id)


@router.post("/actions/balance")
async def balance_action(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    if not _authorized(runtime, request):
        return _refuse(401, "missing or wrong shared secret")
    try:
        location_id, contact_id = contact_of(await _body(request))
    except (ValueError, ActionRefused) as exc:
        return _refuse(422, str(exc))
    if not await run_in_threadpool(_installed, runtime, location_id):
        return _refuse(403, "the app is not installed in this location")
    answer = await run_in_threadpool(_answer, runtime, location_id, contact_id)
    log.info("workflow.balance_action", location_id=location_id, found=answer["found"])
    return JSONResponse(answer)

"""The JSON API (``/api/*``): location state, settings, the sync log, retry, disconnect.

The admin reaches every location; a location session from ``POST /sso/crm`` only its own (web/auth.py,
:func:`require_location_access`, checked for the whole router: ids in the path name the location).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from qbconnect.connections.state import is_syncing
from qbconnect.db.models import Activity, Location
from qbconnect.domain import location_settings
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services import flows
from qbconnect.services.activity_log import RETRYABLE, activity_json, list_activity
from qbconnect.services.overview import location_json
from qbconnect.sync.engine import jobs
from qbconnect.web.auth import require_location_access

router = APIRouter(prefix="/api", dependencies=[Depends(require_location_access)])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _location(session: Session, location_id: str) -> Location | None:
    return session.get(Location, location_id)


def _unknown(location_id: str) -> JSONResponse:
    return _error(404, f"unknown location {location_id}")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic errors as ``{field: message}`` (nested fields joined with dots)."""
    errors: dict[str, str] = {}
    for item in exc.errors():
        name = ".".join(str(part) for part in item["loc"]) or "__root__"
        errors.setdefault(name, item["msg"])
    return errors


@router.get("/locations/{location_id}")
def get_location(request: Request, location_id: str) -> JSONResponse:
    with _runtime(request).sessions() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        return JSONResponse(location_json(session, location))


@router.get("/locations/{location_id}/settings")
def get_settings(request: Request, location_id: str) -> JSONResponse:
    with _runtime(request).sessions() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        return JSONResponse(location_settings.dump(location_settings.load(location.settings)))


@router.patch("/locations/{location_id}/settings")
def patch_settings(request: Request, location_id: str, patch: dict[str, Any] = Body(...)) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        try:
            updated = location_settings.apply_patch(location_settings.load(location.settings), patch)
        except ValidationError as exc:
            return _error(422, "Some settings are not valid.", errors=field_errors(exc))
        location.settings = location_settings.dump(updated)
        return JSONResponse(location.settings)


@router.get("/locations/{location_id}/activity")
def get_activity(
    request: Request,
    location_id: str,
    status: str | None = None,
    kind: str | None = None,
    limit: int = Query(50, ge=1, le=200),
    before_id: int | None = Query(None, ge=1),
) -> JSONResponse:
    with _runtime(request).sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
        rows = list_activity(session, location_id, status=status, kind=kind, limit=limit, before_id=before_id)
        items = [activity_json(row) for row in rows]
    next_before = items[-1]["id"] if len(items) == limit else None
    return JSONResponse({"items": items, "next_before_id": next_before})


@router.post("/activity/{activity_id}/retry")
def retry(request: Request, activity_id: int) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        activity = session.get(Activity, activity_id)
        if activity is None:
            return _error(404, f"no sync log row {activity_id}")
        if activity.status not in RETRYABLE:
            return _error(409, f"only failed or skipped rows can be retried; this one is {activity.status}")
        if not is_syncing(session, activity.location_id):
            return _error(409, "QuickBooks is not connected for this location; reconnect it before retrying")
        job_id = jobs.retry_activity(session, activity_id)
        if job_id is None:
            return _error(409, "this row cannot be retried")
    return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)


@router.post("/locations/{location_id}/disconnect")
def disconnect(request: Request, location_id: str) -> JSONResponse:
    runtime = _runtime(request)
    with runtime.sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
    try:
        outcome = flows.disconnect(runtime, location_id)
    except SyncError as exc:
        return _error(409, exc.message)
    return JSONResponse({"status": "disconnected", "revoked": outcome.revoked, "message": outcome.message})

"""The JSON API (``/api/*``): location state, settings, the sync log, retry, disconnect.

The admin reaches every location; a location session from ``POST /sso/crm`` only its own (web/auth.py,
:func:`require_location_access`, checked for the whole router: ids in the path name the location).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from qbconnect.connections.state import is_syncing
from qbconnect.db.models import Activity, Location
from qbconnect.domain import location_settings
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services import activity_log, checks, flows, log_actions
from qbconnect.services.activity_log import LogFilter, activity_json, attempt_json, attempts_of
from qbconnect.services.overview import location_json
from qbconnect.web.auth import Admin, require_location_access
from qbconnect.web.params import MAX_ROW_ID, PLAIN_TEXT, LocationIdPath, RowIdPath

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
def get_location(request: Request, location_id: LocationIdPath) -> JSONResponse:
    with _runtime(request).sessions() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        return JSONResponse(location_json(session, location, _runtime(request).settings))


@router.get("/locations/{location_id}/settings")
def get_settings(request: Request, location_id: LocationIdPath) -> JSONResponse:
    with _runtime(request).sessions() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        return JSONResponse(location_settings.dump(location_settings.load(location.settings)))


@router.patch("/locations/{location_id}/settings")
def patch_settings(request: Request, location_id: LocationIdPath, patch: dict[str, Any] = Body(...)) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        location = _location(session, location_id)
        if location is None:
            return _unknown(location_id)
        try:
            updated = location_settings.apply_patch(location_settings.load(location.settings), patch)
        except ValidationError as exc:
            return _error(422, "Some settings are not valid.", errors=field_errors(exc))
        before = dict(location.settings or {})
        location.settings = location_settings.dump(updated)
        changed = {key for key, value in location.settings.items() if before.get(key) != value}
        retried = log_actions.retry_after_settings_change(session, location_id, changed)
        return JSONResponse(location.settings, headers={"X-Retried-Rows": str(len(retried))})


def _when(value: str | None, *, end: bool) -> datetime | None:
    """``from``/``to``: a date (whole day) or an ISO date-time; naive means UTC."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO date-time)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filter(
    status: str | None, kind: str | None, date_from: str | None, date_to: str | None, q: str | None, internal: bool
) -> LogFilter:
    return LogFilter(
        status=status or None,
        kind=kind or None,
        date_from=_when(date_from, end=False),
        date_to=_when(date_to, end=True),
        search=q or None,
        include_internal=internal,
    )


def _row_context(request: Request, session: Session, location_id: str) -> dict[str, Any]:
    settings = _runtime(request).settings
    return {
        "environment": settings.qbo_environment,
        "crm_app_host": crm_app_host(settings.crm_auth_url),
        "connected": is_syncing(session, location_id),
    }


def crm_app_host(auth_url: str) -> str | None:
    """The CRM app's host (where its records open), from the app-install URL's host."""
    from urllib.parse import urlsplit

    parts = urlsplit(auth_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


Status = Annotated[
    str | None,
    Query(
        max_length=16, pattern=PLAIN_TEXT, description="needs_attention|failed|synced|skipped|waiting, or a raw status"
    ),
]
From = Annotated[str | None, Query(alias="from", max_length=40, pattern=PLAIN_TEXT)]
To = Annotated[str | None, Query(alias="to", max_length=40, pattern=PLAIN_TEXT)]


@router.get("/locations/{location_id}/activity")
def get_activity(
    request: Request,
    location_id: LocationIdPath,
    status: Status = None,
    kind: str | None = Query(None, max_length=48, pattern=PLAIN_TEXT),
    date_from: From = None,
    date_to: To = None,
    q: str | None = Query(
        None, max_length=200, pattern=PLAIN_TEXT, description="customer name, email, invoice or order number"
    ),
    include_internal: bool = False,
    page: int = Query(1, ge=1, le=100_000),
    per_page: int | None = Query(None, ge=1, le=200),
    limit: int | None = Query(None, ge=1, le=200),
    before_id: int | None = Query(None, ge=1, le=MAX_ROW_ID),
) -> JSONResponse:
    try:
        flt = _filter(status, kind, date_from, date_to, q, include_internal)
    except ValueError as exc:
        return _error(422, str(exc))
    with _runtime(request).sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
        context = _row_context(request, session, location_id)
        size = per_page or limit or 50
        if before_id is not None:  # the older cursor: newest first below an id
            stmt = activity_log.filtered(location_id, flt).where(Activity.id < before_id)
            rows = list(session.execute(stmt.order_by(Activity.id.desc()).limit(size)).scalars())
            total = activity_log.page_of(session, location_id, flt, per_page=1).total
            result = activity_log.Page(rows=rows, total=total, page=1, per_page=size)
        else:
            result = activity_log.page_of(session, location_id, flt, page=page, per_page=size)
        items = [activity_json(row, **context) for row in result.rows]
    next_before = items[-1]["id"] if len(items) == size else None
    return JSONResponse(
        {
            "items": items,
            "total": result.total,
            "page": result.page,
            "per_page": result.per_page,
            "pages": result.pages,
            "next_before_id": next_before,
        }
    )


@router.get("/locations/{location_id}/activity.csv")
def get_activity_csv(
    request: Request,
    location_id: LocationIdPath,
    status: Status = None,
    kind: str | None = Query(None, max_length=48, pattern=PLAIN_TEXT),
    date_from: From = None,
    date_to: To = None,
    q: str | None = Query(None, max_length=200, pattern=PLAIN_TEXT),
    include_internal: bool = False,
) -> Response:
    try:
        flt = _filter(status, kind, date_from, date_to, q, include_internal)
    except ValueError as exc:
        return _error(422, str(exc))
    with _runtime(request).sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
        text = activity_log.csv_text(session, location_id, flt)
    filename = f"sync-log-{location_id}.csv".replace('"', "")
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/activity/{activity_id}")
def get_activity_row(request: Request, activity_id: RowIdPath) -> JSONResponse:
    with _runtime(request).sessions() as session:
        row = session.get(Activity, activity_id)
        if row is None:
            return _error(404, f"no sync log row {activity_id}")
        body = activity_json(row, **_row_context(request, session, row.location_id))
        body["timeline"] = [attempt_json(attempt) for attempt in attempts_of(session, activity_id)]
    return JSONResponse(body)


@router.post("/activity/{activity_id}/retry")
def retry(request: Request, activity_id: RowIdPath) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        try:
            job_id = log_actions.retry_one(session, activity_id)
        except log_actions.ActionRefused as exc:
            return _error(exc.status, exc.message)
    return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)


def who(caller: Admin) -> str:
    """Who acted: the CRM user of a location session (name, email and id), else "admin" (the operator, with
    the admin token or the admin login)."""
    if caller.is_admin:
        return "admin"
    return log_actions.actor(user_id=caller.user_id, name=caller.user_name, email=caller.user_email)


@router.post("/activity/{activity_id}/dismiss")
def dismiss(request: Request, activity_id: RowIdPath, admin: Admin = Depends(require_location_access)) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        try:
            row = log_actions.dismiss(session, activity_id, who(admin))
        except log_actions.ActionRefused as exc:
            return _error(exc.status, exc.message)
        body = {
            "id": row.id,
            "dismissed_at": row.dismissed_at.isoformat() if row.dismissed_at else None,
            "dismissed_by": row.dismissed_by,
            "dismissed_text": activity_log.dismissed_text(row),
        }
    return JSONResponse(body)


@router.post("/locations/{location_id}/activity/retry-failed")
def retry_failed(request: Request, location_id: LocationIdPath) -> JSONResponse:
    with _runtime(request).sessions.begin() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
        if not is_syncing(session, location_id):
            return _error(409, "QuickBooks is not connected for this location; reconnect it before retrying")
        retried = log_actions.retry_all_failed(session, location_id)
    return JSONResponse({"retried": retried, "count": len(retried)}, status_code=202)


@router.post("/locations/{location_id}/invoices/{number}/sync")
def sync_invoice(
    request: Request,
    location_id: LocationIdPath,
    number: Annotated[str, Path(min_length=1, max_length=128, pattern=PLAIN_TEXT)],
) -> JSONResponse:
    runtime = _runtime(request)
    with runtime.sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
    try:
        job_id, found = log_actions.sync_invoice_now(runtime, location_id, number)
    except log_actions.ActionRefused as exc:
        return _error(exc.status, exc.message)
    return JSONResponse(
        {"job_id": job_id, "invoice_id": found.invoice_id, "number": found.number, "status": "queued"},
        status_code=202,
    )


@router.get("/locations/{location_id}/checks")
def get_checks(request: Request, location_id: LocationIdPath) -> JSONResponse:
    found = checks.run_checks(_runtime(request), location_id)
    if found is None:
        return _unknown(location_id)
    worst = (
        "problem"
        if any(c.status == "problem" for c in found)
        else ("warning" if any(c.status == "warning" for c in found) else "ok")
    )
    return JSONResponse({"location_id": location_id, "status": worst, "checks": [c.as_json() for c in found]})


@router.post("/locations/{location_id}/disconnect")
def disconnect(request: Request, location_id: LocationIdPath) -> JSONResponse:
    runtime = _runtime(request)
    with runtime.sessions() as session:
        if _location(session, location_id) is None:
            return _unknown(location_id)
    try:
        outcome = flows.disconnect(runtime, location_id)
    except SyncError as exc:
        return _error(409, exc.message)
    return JSONResponse({"status": "disconnected", "revoked": outcome.revoked, "message": outcome.message})

"""Settings > Integrations: the server-rendered page, its forms (POST + redirect) and the sync-log partial.

Everything works without JavaScript; htmx only refreshes the sync log in place.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from qbconnect.connections.state import connection_of, is_syncing
from qbconnect.db.models import Activity, Location, QboConnection
from qbconnect.domain import location_settings
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.review import render_review_message
from qbconnect.domain.sources import ReceiptKind
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services import flows
from qbconnect.services.activity_log import DIRECTION_WORDS, STATUS_WORDS, kind_title, list_activity
from qbconnect.services.overview import customer_import_progress, token_health
from qbconnect.services.qbo_lists import pick_lists
from qbconnect.sync.engine import jobs
from qbconnect.web.api import field_errors
from qbconnect.web.auth import Admin, check_form_csrf, reachable_location_ids, require_location_access
from qbconnect.web.oauth import problem_page, settings_url
from qbconnect.web.templating import templates

router = APIRouter()

SYNC_LOG_ROWS = 25
BOOL_FIELDS = (
    "sync_invoices",
    "sync_sales_receipts",
    "import_contacts",
    "review_request_enabled",
    "skip_test_mode_payments",
)
TEXT_FIELDS = (
    "review_request_channel",
    "review_subject",
    "review_message",
    "item_strategy",
    "contacts_without_email",
    "contact_tag",
    "transaction_poll_minutes",
    "refund_lookback_days",
)
OPTIONAL_FIELDS = (
    "review_link",
    "default_item_id",
    "income_account_id",
    "shipping_item_id",
    "discount_account_id",
    "deposit_account_id",
)
MAP_FIELDS = ("product_item_map", "tax_code_map", "payment_method_map")
RECEIPT_KIND_WORDS = {
    ReceiptKind.ORDER_FORM: "Order forms and funnels",
    ReceiptKind.SUBSCRIPTION: "Subscriptions and renewals",
    ReceiptKind.MEMBERSHIP: "Memberships",
    ReceiptKind.CALENDAR: "Calendar bookings",
    ReceiptKind.PAYMENT_LINK: "Payment links",
    ReceiptKind.FORM: "Forms",
    ReceiptKind.SURVEY: "Surveys",
    ReceiptKind.POINT_OF_SALE: "Point of sale",
    ReceiptKind.OTHER_NON_INVOICE: "Other payments",
}
FLASHES = {
    "installed": "The app is installed. Connect QuickBooks to start syncing.",
    "connected": "QuickBooks is connected. Customers are being imported.",
    "reconnected": "QuickBooks is reconnected. Syncing resumed and what was missed is being caught up.",
    "saved": "Settings saved.",
    "disconnected": "QuickBooks is disconnected. Syncing stopped; the history is kept.",
    "retried": "Queued to run again.",
}
PREVIEW_NAME = "Alex"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _map_text(mapping: dict[str, str]) -> str:
    return "\n".join(f"{key} = {value}" for key, value in mapping.items())


def form_values(settings: LocationSettings) -> dict[str, Any]:
    values = location_settings.dump(settings)
    for name in MAP_FIELDS:
        values[name] = _map_text(getattr(settings, name))
    return values


def parse_map(text: str) -> dict[str, str]:
    """``key = value`` lines; raises ValueError naming the bad line."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"line {number} should look like 'key = QuickBooks id'")
        mapping[key.strip()] = value.strip()
    return mapping


@dataclass
class SubmittedSettings:
    patch: dict[str, Any]
    raw: dict[str, Any]
    errors: dict[str, str]


def read_settings_form(form: dict[str, Any], receipt_kinds: list[str]) -> SubmittedSettings:
    patch: dict[str, Any] = {}
    errors: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for name in BOOL_FIELDS:
        patch[name] = raw[name] = name in form
    for name in TEXT_FIELDS:
        if name in form:
            patch[name] = raw[name] = str(form[name])
    for name in OPTIONAL_FIELDS:
        if name in form:
            value = str(form[name]).strip()
            raw[name] = value
            patch[name] = value or None
    for name in MAP_FIELDS:
        if name in form:
            raw[name] = str(form[name])
            try:
                patch[name] = parse_map(raw[name])
            except ValueError as exc:
                errors[name] = str(exc)
    chosen = set(receipt_kinds)
    patch["receipt_kinds_disabled"] = raw["receipt_kinds_disabled"] = [
        kind.value for kind in RECEIPT_KIND_WORDS if kind.value not in chosen
    ]
    return SubmittedSettings(patch=patch, raw=raw, errors=errors)


def _find_preview_hook() -> Callable[..., Any] | None:
    """``qbconnect.sync.review_*.preview_review_message`` when the review feature provides one."""
    package = importlib.import_module("qbconnect.sync")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("review"):
            module = importlib.import_module(f"qbconnect.sync.{info.name}")
            hook = getattr(module, "preview_review_message", None)
            if callable(hook):
                return hook  # type: ignore[no-any-return]
    return None


def review_preview(settings: LocationSettings, business_name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(preview, why-not): the message as a customer would get it, with a sample first name.

    Uses the review feature's ``preview_review_message`` (a dict with subject/html/text/status) when it
    exists, else renders with :func:`qbconnect.domain.review.render_review_message`.
    """
    hook = _find_preview_hook()
    try:
        if hook is not None:
            result = hook(settings, business_name)
            if isinstance(result, dict):
                return dict(result), None
        link = str(settings.review_link) if settings.review_link else "https://example.com/your-review-link"
        template = f"Subject: {settings.review_subject}\n{settings.review_message}"
        subject, html, text = render_review_message(template, PREVIEW_NAME, business_name, link)
    except ValueError as exc:
        return None, f"The message cannot be shown: {exc}"
    channel = settings.review_request_channel
    return {
        "channel": channel,
        "subject": subject if channel == "Email" else None,
        "html": html if channel == "Email" else None,
        "text": text,
        "status": None,
    }, None


def sync_rows(session: Session, location_id: str) -> list[dict[str, Any]]:
    rows = list_activity(session, location_id, limit=SYNC_LOG_ROWS)
    return [_row(row) for row in rows]


def _row(row: Activity) -> dict[str, Any]:
    return {
        "id": row.id,
        "when": row.updated_at.strftime("%b %d %H:%M") if row.updated_at else "",
        "title": f"{kind_title(row.kind)}" + (f" {row.entity_id}" if row.entity_id and row.entity_id != "all" else ""),
        "direction_text": DIRECTION_WORDS.get(row.direction, row.direction),
        "status": row.status,
        "status_text": STATUS_WORDS.get(row.status, row.status),
        "summary": row.summary,
        "error_message": row.error_message,
        "attempts": row.attempts or 0,
        "crm_id": row.crm_id,
        "entity_id": row.entity_id if row.entity_id != "all" else None,
        "qbo_id": row.qbo_id,
        "retryable": row.status in ("failed", "skipped"),
    }


def _connection(session: Session, location_id: str) -> QboConnection | None:
    return connection_of(session, location_id)


def render_page(
    request: Request,
    admin: Admin,
    location_id: str,
    *,
    flashes: list[str] | None = None,
    problem: str | None = None,
    raw_values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The page. Call it with no session open: SQLite sessions hold the write lock, and the pick lists
    may need a token refresh (its own transaction) before the page's own reads."""
    runtime = _runtime(request)
    with runtime.sessions() as session:
        connection = _connection(session, location_id)
        realm_id = connection.realm_id if connection is not None else None
        usable = connection is not None and connection.active_realm_id is not None and connection.status == "connected"
    lists = pick_lists(runtime, location_id, realm_id) if usable and realm_id else None
    with runtime.sessions() as session:
        location = session.get(Location, location_id)
        if location is None:
            return problem_page(request, 404, "Unknown location", f"No location {location_id} has installed the app.")
        settings = location_settings.load(location.settings)
        connection = _connection(session, location_id)
        connected = connection is not None and connection.active_realm_id is not None
        needs_reconnect = connected and connection is not None and connection.status == "needs_reconnect"
        values = form_values(settings)
        values.update(raw_values or {})
        business = (connection.company_name if connection else None) or location.name or "our business"
        preview, preview_error = review_preview(settings, business)
        context = {
            "location": location,
            "connection": connection,
            "connected": connected,
            "needs_reconnect": needs_reconnect,
            "health": token_health(connection),
            "syncing": is_syncing(session, location.id),
            "values": values,
            "errors": errors or {},
            "lists": lists,
            "review_active": settings.review_requests_active,
            "preview": preview,
            "preview_error": preview_error,
            "receipt_kinds": [(kind.value, words) for kind, words in RECEIPT_KIND_WORDS.items()],
            "import_progress": customer_import_progress(location),
            "rows": sync_rows(session, location.id),
            "poll": True,
            "flashes": flashes or [],
            "problem": problem,
            "csrf_token": admin.csrf_token,
        }
    return templates.TemplateResponse(request, "integrations.html", context, status_code=status_code)


def _back(location_id: str, flag: str) -> RedirectResponse:
    return RedirectResponse(settings_url(location_id, **{flag: "1"}), status_code=303)


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/settings/integrations", status_code=303)


@router.get("/settings/integrations", response_class=HTMLResponse)
def integrations(
    request: Request, location_id: str | None = None, admin: Admin = Depends(require_location_access)
) -> Response:
    with _runtime(request).sessions() as session:
        if not location_id:
            locations = list(session.execute(select(Location).order_by(Location.installed_at)).scalars())
            reachable = reachable_location_ids(session, admin)  # a location session lists only its own
            if reachable is not None:
                locations = [loc for loc in locations if loc.id in reachable]
            if len(locations) == 1:
                return RedirectResponse(
                    f"/settings/integrations?location_id={quote(locations[0].id, safe='')}", status_code=303
                )
            rows = []
            for loc in locations:
                conn = _connection(session, loc.id)
                rows.append(
                    {
                        "id": loc.id,
                        "name": loc.name,
                        "crm_status": loc.crm_status,
                        "qbo_status": conn.status if conn else "not connected",
                        "company_name": conn.company_name if conn else None,
                    }
                )
            return templates.TemplateResponse(
                request, "locations.html", {"locations": rows, "csrf_token": admin.csrf_token}
            )
        if session.get(Location, location_id) is None:
            return problem_page(request, 404, "Unknown location", f"No location {location_id} has installed the app.")
    flashes = [text for flag, text in FLASHES.items() if request.query_params.get(flag)]
    return render_page(request, admin, location_id, flashes=flashes)


@router.get("/settings/integrations/sync-log", response_class=HTMLResponse)
def sync_log_partial(request: Request, location_id: str, admin: Admin = Depends(require_location_access)) -> Response:
    with _runtime(request).sessions() as session:
        location = session.get(Location, location_id)
        if location is None:
            return HTMLResponse("", status_code=404)
        context = {
            "location": location,
            "rows": sync_rows(session, location_id),
            "poll": True,
            "csrf_token": admin.csrf_token,
        }
        return templates.TemplateResponse(request, "_sync_log.html", context)


@router.post("/settings/integrations/settings", response_class=HTMLResponse)
async def save_settings(request: Request, admin: Admin = Depends(require_location_access)) -> Response:
    form = await request.form()
    check_form_csrf(admin, _text(form.get("csrf_token")))
    location_id = _text(form.get("location_id"))
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    submitted = read_settings_form(fields, [str(v) for v in form.getlist("receipt_kind")])
    # Storage work never runs on the event loop: a slow or locked database would stall every request.
    return await run_in_threadpool(_save_settings, request, admin, location_id, submitted)


def _save_settings(request: Request, admin: Admin, location_id: str, submitted: SubmittedSettings) -> Response:
    with _runtime(request).sessions.begin() as session:
        location = session.get(Location, location_id)
        if location is None:
            return problem_page(request, 404, "Unknown location", f"No location {location_id} has installed the app.")
        errors = dict(submitted.errors)
        if not errors:
            try:
                updated = location_settings.apply_patch(location_settings.load(location.settings), submitted.patch)
            except ValidationError as exc:
                errors = field_errors(exc)
            else:
                location.settings = location_settings.dump(updated)
    if not errors:
        return _back(location_id, "saved")
    return render_page(
        request,
        admin,
        location_id,
        problem="The settings were not saved: please fix the fields marked below.",
        raw_values=submitted.raw,
        errors=errors,
        status_code=422,
    )


@router.post("/settings/integrations/disconnect", response_class=HTMLResponse)
def disconnect_form(
    request: Request,
    location_id: str = Form(...),
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    try:
        flows.disconnect(_runtime(request), location_id)
    except SyncError as exc:
        return problem_page(request, 409, "Nothing to disconnect", exc.message, location_id=location_id)
    return _back(location_id, "disconnected")


@router.post("/settings/integrations/retry", response_class=HTMLResponse)
def retry_form(
    request: Request,
    location_id: str = Form(...),
    activity_id: int = Form(...),
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    with _runtime(request).sessions.begin() as session:
        activity = session.get(Activity, activity_id)
        if activity is None or activity.location_id != location_id:
            return problem_page(request, 404, "Not found", "That sync log row does not exist.", location_id=location_id)
        if not is_syncing(session, location_id):
            return problem_page(
                request, 409, "Cannot retry yet", "Reconnect QuickBooks first, then retry.", location_id=location_id
            )
        if jobs.retry_activity(session, activity_id) is None:
            return problem_page(
                request, 409, "Cannot retry", "Only failed or skipped rows can be retried.", location_id=location_id
            )
    return _back(location_id, "retried")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""

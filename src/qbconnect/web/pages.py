"""Settings > Integrations: the server-rendered page, its forms (POST + redirect) and the sync-log partial.

Everything works without JavaScript; htmx only refreshes the sync log in place.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from qbconnect.clock import as_utc
from qbconnect.connections.read_budget import read_counts
from qbconnect.connections.state import connection_of, is_syncing
from qbconnect.db.models import Activity, ActivityAttempt, Location, QboConnection
from qbconnect.domain import location_settings
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.domain.review import render_review_message
from qbconnect.domain.sources import ReceiptKind
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services import activity_log, flows, log_actions
from qbconnect.services.activity_log import DIRECTION_WORDS, LogFilter, activity_json, attempt_json, kind_title
from qbconnect.services.checks import run_checks
from qbconnect.services.mappings import CrmCatalogue, crm_catalogue, mapping_tables, read_mapping_rows
from qbconnect.services.overview import customer_import_progress, token_health
from qbconnect.services.qbo_lists import PickLists, pick_lists
from qbconnect.sync.engine import registry
from qbconnect.web.api import crm_app_host, field_errors, who
from qbconnect.web.auth import (
    Admin,
    check_form_csrf,
    reachable_location_ids,
    require_location_access,
)
from qbconnect.web.oauth import problem_page, settings_url
from qbconnect.web.params import (
    PLAIN_TEXT,
    LocationIdForm,
    LocationIdQuery,
    OptionalLocationIdQuery,
    RowIdForm,
    is_location_id,
)
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
    "dismissed": "Dismissed; it no longer needs attention.",
    "queued": "Queued to sync now.",
}
PREVIEW_NAME = "Alex"


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def form_values(settings: LocationSettings) -> dict[str, Any]:
    return location_settings.dump(settings)


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
        mapping = read_mapping_rows(form, name)
        if mapping is not None:
            patch[name] = raw[name] = mapping
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


STATUS_CHOICES = (
    ("", "Everything"),
    ("needs_attention", "Needs attention"),
    ("failed", "Failed"),
    ("synced", "Synced"),
    ("skipped", "Skipped"),
    ("waiting", "Waiting"),
)


@dataclass
class LogQuery:
    status: str = ""
    kind: str = ""
    date_from: str = ""
    date_to: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def from_params(cls, params: Any) -> LogQuery:
        def text(name: str) -> str:
            value = params.get(name)
            return value.strip()[:200] if isinstance(value, str) else ""

        try:
            page = max(1, int(text("page") or "1"))
        except ValueError:
            page = 1
        return cls(text("status"), text("kind"), text("from"), text("to"), text("q"), page)

    def log_filter(self) -> LogFilter:
        return LogFilter(
            status=self.status or None,
            kind=self.kind or None,
            date_from=_day_start(self.date_from, end=False),
            date_to=_day_start(self.date_to, end=True),
            search=self.q or None,
        )

    def query(self, location_id: str, *, with_page: bool) -> str:
        pairs = [("location_id", location_id), ("status", self.status), ("kind", self.kind)]
        pairs += [("from", self.date_from), ("to", self.date_to), ("q", self.q)]
        if with_page and self.page > 1:
            pairs.append(("page", str(self.page)))
        return urlencode([(k, v) for k, v in pairs if v])


def _day_start(value: str, *, end: bool) -> datetime | None:
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    if day is None:
        return None
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def _row_context(request: Request, session: Session, location_id: str) -> dict[str, Any]:
    settings = _runtime(request).settings
    return {
        "environment": settings.qbo_environment,
        "crm_app_host": crm_app_host(settings.crm_auth_url),
        "connected": is_syncing(session, location_id),
    }


def _when_text(value: datetime | None) -> str:
    value = as_utc(value)
    return value.strftime("%b %d %H:%M") if value else ""


def _readable(row: Activity, context: dict[str, Any]) -> dict[str, Any]:
    view = activity_json(row, **context)
    view["when"] = _when_text(row.updated_at)
    view["direction_text"] = DIRECTION_WORDS.get(row.direction, row.direction)
    return view


def history(request: Request, session: Session, location_id: str, query: LogQuery) -> dict[str, Any]:
    context = _row_context(request, session, location_id)
    result = activity_log.page_of(session, location_id, query.log_filter(), page=query.page, per_page=SYNC_LOG_ROWS)
    rows = [_readable(row, context) for row in result.rows]
    ids = [row["id"] for row in rows]
    timelines: dict[int, list[dict[str, Any]]] = {}
    if ids:
        found = session.execute(
            select(ActivityAttempt)
            .where(ActivityAttempt.activity_id.in_(ids))
            .order_by(ActivityAttempt.activity_id, ActivityAttempt.attempt)
        ).scalars()
        for attempt in found:
            item = attempt_json(attempt)
            item["when"] = _when_text(attempt.started_at)
            timelines.setdefault(attempt.activity_id, []).append(item)
    for row in rows:
        row["timeline"] = timelines.get(row["id"], [])
    kinds = sorted((kind, kind_title(kind)) for kind, spec in registry.HANDLERS.items() if spec.direction != "internal")
    return {
        "rows": rows,
        "total": result.total,
        "page": result.page,
        "pages": result.pages,
        "filters": query,
        "filtered": any((query.status, query.kind, query.date_from, query.date_to, query.q)),
        "status_choices": STATUS_CHOICES,
        "kind_choices": kinds,
        "query": query.query(location_id, with_page=True),
        "filter_query": query.query(location_id, with_page=False),
    }


def status_context(request: Request, session: Session, location_id: str) -> dict[str, Any]:
    context = _row_context(request, session, location_id)
    problems = [_readable(row, context) for row in activity_log.open_problems(session, location_id, limit=50)]
    return {
        "sync_health": activity_log.health(session, location_id),
        "problems": problems,
        "can_act": context["connected"],
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
    catalogue = crm_catalogue(runtime, location_id) if usable else None
    found_checks = run_checks(runtime, location_id) if usable else None
    checks = [check.as_json() for check in found_checks or []]
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
            "mappings": mapping_tables(values, catalogue or CrmCatalogue(), lists or PickLists()),
            "catalogue_error": catalogue.error if catalogue else None,
            "review_active": settings.review_requests_active,
            "preview": preview,
            "preview_error": preview_error,
            "receipt_kinds": [(kind.value, words) for kind, words in RECEIPT_KIND_WORDS.items()],
            "import_progress": customer_import_progress(location),
            "qbo_reads": read_counts(session, runtime.settings, connection.realm_id) if connection else None,
            "log": history(request, session, location.id, LogQuery.from_params(request.query_params)),
            **status_context(request, session, location.id),
            "checks": checks,
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
    request: Request, location_id: OptionalLocationIdQuery = None, admin: Admin = Depends(require_location_access)
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
def sync_log_partial(
    request: Request, location_id: LocationIdQuery, admin: Admin = Depends(require_location_access)
) -> Response:
    with _runtime(request).sessions() as session:
        location = session.get(Location, location_id)
        if location is None:
            return HTMLResponse("", status_code=404)
        context = {
            "location": location,
            "log": history(request, session, location_id, LogQuery.from_params(request.query_params)),
            "csrf_token": admin.csrf_token,
        }
        return templates.TemplateResponse(request, "_sync_log.html", context)


def _status_partial(
    request: Request, admin: Admin, location_id: str, message: str | None = None, status_code: int = 200
) -> Response:
    with _runtime(request).sessions() as session:
        location = session.get(Location, location_id)
        if location is None:
            return HTMLResponse("", status_code=404)
        context = {
            "location": location,
            **status_context(request, session, location_id),
            "action_message": message,
            "csrf_token": admin.csrf_token,
        }
        response = templates.TemplateResponse(request, "_sync_status.html", context, status_code=status_code)
    response.headers["HX-Trigger"] = "sync-log-changed"
    return response


@router.get("/settings/integrations/sync-status", response_class=HTMLResponse)
def sync_status_partial(
    request: Request, location_id: LocationIdQuery, admin: Admin = Depends(require_location_access)
) -> Response:
    response = _status_partial(request, admin, location_id)
    del response.headers["HX-Trigger"]
    return response


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _acted(request: Request, admin: Admin, location_id: str, flag: str, message: str) -> Response:
    """After an action: the refreshed status in place (htmx), else back to the page with a flash."""
    if _is_htmx(request):
        return _status_partial(request, admin, location_id, message)
    return _back(location_id, flag)


def _refused(request: Request, admin: Admin, location_id: str, status: int, title: str, message: str) -> Response:
    if _is_htmx(request):
        # htmx swaps only 2xx answers: the reason shows in place of the status, the action changed nothing.
        return _status_partial(request, admin, location_id, f"{title}: {message}")
    return problem_page(request, status, title, message, location_id=location_id)


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
    if not is_location_id(location_id):
        return problem_page(request, 404, "Unknown location", "No such location has installed the app.")
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
                before = dict(location.settings or {})
                location.settings = location_settings.dump(updated)
                changed = {key for key, value in location.settings.items() if before.get(key) != value}
                log_actions.retry_after_settings_change(session, location_id, changed)
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
    location_id: LocationIdForm,
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    try:
        flows.disconnect(_runtime(request), location_id)
    except SyncError as exc:
        return problem_page(request, 409, "Nothing to disconnect", exc.message, location_id=location_id)
    return _back(location_id, "disconnected")


def _act_on_row(
    request: Request,
    admin: Admin,
    location_id: str,
    activity_id: int,
    action: Callable[[Session], object],
    refused_title: str,
    flag: str,
    message: str | None = None,
) -> Response:
    """Retry or dismiss one sync-log row of ``location_id`` from the page's forms."""
    refused: log_actions.ActionRefused | None = None
    with _runtime(request).sessions.begin() as session:
        activity = session.get(Activity, activity_id)
        if activity is None or activity.location_id != location_id:
            return problem_page(request, 404, "Not found", "That sync log row does not exist.", location_id=location_id)
        try:
            action(session)
        except log_actions.ActionRefused as exc:
            refused = exc
    if refused is not None:
        return _refused(request, admin, location_id, refused.status, refused_title, refused.message)
    return _acted(request, admin, location_id, flag, message or FLASHES[flag])


@router.post("/settings/integrations/retry", response_class=HTMLResponse)
def retry_form(
    request: Request,
    location_id: LocationIdForm,
    activity_id: RowIdForm,
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    return _act_on_row(
        request,
        admin,
        location_id,
        activity_id,
        lambda session: log_actions.retry_one(session, activity_id),
        "Cannot retry",
        "retried",
    )


@router.post("/settings/integrations/dismiss", response_class=HTMLResponse)
def dismiss_form(
    request: Request,
    location_id: LocationIdForm,
    activity_id: RowIdForm,
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    actor = who(admin)
    return _act_on_row(
        request,
        admin,
        location_id,
        activity_id,
        lambda session: log_actions.dismiss(session, activity_id, actor),
        "Cannot dismiss",
        "dismissed",
        f"Dismissed by {actor}; it no longer needs attention (it stays in the history).",
    )


@router.post("/settings/integrations/retry-failed", response_class=HTMLResponse)
def retry_failed_form(
    request: Request,
    location_id: LocationIdForm,
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    with _runtime(request).sessions.begin() as session:
        if session.get(Location, location_id) is None:
            return problem_page(request, 404, "Unknown location", f"No location {location_id} has installed the app.")
        retried = log_actions.retry_all_failed(session, location_id) if is_syncing(session, location_id) else None
    if retried is None:
        return _refused(request, admin, location_id, 409, "Cannot retry yet", "Reconnect QuickBooks first.")
    return _acted(request, admin, location_id, "retried", f"{len(retried)} queued to run again.")


@router.post("/settings/integrations/sync-invoice", response_class=HTMLResponse)
def sync_invoice_form(
    request: Request,
    location_id: LocationIdForm,
    number: str = Form("", max_length=128, pattern=PLAIN_TEXT),
    csrf_token: str = Form(""),
    admin: Admin = Depends(require_location_access),
) -> Response:
    check_form_csrf(admin, csrf_token)
    if not number.strip():
        return _refused(request, admin, location_id, 422, "Cannot sync", "type the CRM invoice number")
    try:
        _, found = log_actions.sync_invoice_now(_runtime(request), location_id, number)
    except log_actions.ActionRefused as exc:
        return _refused(request, admin, location_id, exc.status, "Cannot sync", exc.message)
    label = f"Invoice #{found.number}" if found.number else f"Invoice {found.invoice_id}"
    return _acted(request, admin, location_id, "queued", f"{label} is queued to sync now.")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""

"""OAuth routes: the CRM app install callback, "QB Connect" and Intuit's callback.

Callbacks authenticate by what they carry (HighLevel's code; our signed, single-use ``state``), the
``/connect/quickbooks`` start needs the admin. Failures answer a page that says what happened in plain words.
"""

from __future__ import annotations

from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from qbconnect.connections.oauth_state import StateError
from qbconnect.connections.service import RealmConflictError
from qbconnect.errors import ErrorCategory, SyncError
from qbconnect.runtime import Runtime
from qbconnect.services import flows
from qbconnect.web.auth import Admin, require_location_access, require_page_admin
from qbconnect.web.params import LocationIdQuery
from qbconnect.web.templating import templates

log = structlog.get_logger(__name__)
router = APIRouter()


def settings_url(location_id: str, **flags: str) -> str:
    extra = "".join(f"&{key}={quote(value)}" for key, value in flags.items())
    return f"/settings/integrations?location_id={quote(location_id, safe='')}{extra}"


def problem_page(
    request: Request, status: int, title: str, message: str, *, location_id: str | None = None
) -> Response:
    return templates.TemplateResponse(
        request,
        "problem.html",
        {"title": title, "message": message, "location_id": location_id},
        status_code=status,
    )


def _status_for(exc: SyncError) -> int:
    return 502 if exc.category is ErrorCategory.TRANSIENT else 400


@router.get("/install/crm")
def install_crm(request: Request, admin: Admin = Depends(require_page_admin)) -> Response:
    """The product's own install link: HighLevel's choose-location page with a signed ``state``."""
    runtime: Runtime = request.app.state.runtime
    return RedirectResponse(flows.crm_install_url(runtime), status_code=302)


@router.get("/oauth/crm/callback", response_class=HTMLResponse)
def crm_callback(
    request: Request, code: str | None = None, state: str | None = None, error: str | None = None
) -> Response:
    runtime: Runtime = request.app.state.runtime
    if error or not code:
        return problem_page(
            request, 400, "The app was not installed", f"The CRM did not finish the install ({error or 'no code'})."
        )
    try:
        location_id = flows.finish_crm_install(runtime, code, state)
    except StateError as exc:
        log.warning("crm.install_state_refused", reason=str(exc))
        return problem_page(request, 400, "This install link cannot be used", str(exc))
    except SyncError as exc:
        log.warning("crm.install_failed", error=exc.message)
        return problem_page(request, _status_for(exc), "The app could not be installed", exc.message)
    if location_id is None:  # an agency install of several locations: pick one
        return RedirectResponse("/settings/integrations?installed=1", status_code=303)
    return RedirectResponse(settings_url(location_id, installed="1"), status_code=303)


@router.get("/connect/quickbooks")
def connect_quickbooks(
    request: Request, location_id: LocationIdQuery, admin: Admin = Depends(require_location_access)
) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        url = flows.begin_qbo_connect(runtime, location_id)
    except flows.NotInstalledError as exc:
        return problem_page(request, 404, "Unknown location", exc.message)
    return RedirectResponse(url, status_code=302)


@router.get("/oauth/quickbooks/callback", response_class=HTMLResponse)
def quickbooks_callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    realmId: str | None = None,  # noqa: N803 (Intuit's name)
    error: str | None = None,
) -> Response:
    runtime: Runtime = request.app.state.runtime
    if error:
        message = (
            "You cancelled the connection in QuickBooks; nothing was changed."
            if error == "access_denied"
            else f"QuickBooks did not connect ({error})."
        )
        return problem_page(request, 400, "QuickBooks was not connected", message)
    if not code or not state:
        return problem_page(request, 400, "QuickBooks was not connected", "The answer from QuickBooks is incomplete.")
    try:
        result = flows.finish_qbo_connect(runtime, code=code, state=state, realm_id=realmId or "")
    except StateError as exc:
        log.warning("qbo.callback_state_refused", reason=str(exc))
        return problem_page(request, 400, "This QuickBooks sign-in cannot be used", str(exc))
    except RealmConflictError as exc:
        return problem_page(request, 409, "This QuickBooks company is already connected", exc.message)
    except SyncError as exc:
        log.warning("qbo.connect_failed", error=exc.message)
        return problem_page(request, _status_for(exc), "QuickBooks could not be connected", exc.message)
    flag = "reconnected" if result.reconnected else "connected"
    return RedirectResponse(settings_url(result.location_id, **{flag: "1"}), status_code=303)

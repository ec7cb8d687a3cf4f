"""Single sign-on inside the CRM: the settings page as a Marketplace custom page.

The CRM frames our page; ``static/sso.js`` asks the parent frame for the encrypted user context
(``REQUEST_USER_DATA`` → ``REQUEST_USER_DATA_RESPONSE``) and posts it here as ``{"encryptedData": "…"}``.
``POST /sso/crm`` decrypts it with ``QBCONNECT_CRM_SHARED_SECRET`` (crm/user_context.py) and opens a
location session (web/auth.py, cookie ``qbc_crm_session``) bound to that user and location:

- 401 when the payload does not decrypt or is not a user context;
- 403 when the location has not installed the app (or uninstalled it), when the user's company is not the
  location's, or when an agency user names no location and the company has none installed;
- 404 when no Shared Secret is configured (SSO is off).

The cookie is HttpOnly, and inside the CRM's iframe it must be ``SameSite=None; Secure`` (and
``Partitioned``, so browsers that block third-party cookies keep it for our frame): that is set when
``QBCONNECT_PUBLIC_URL`` is https. Over plain http (a local demo) browsers refuse ``SameSite=None`` without
``Secure``, so the cookie is ``SameSite=Lax`` there. Logs carry ids only, never the decrypted names or emails.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from qbconnect.crm.user_context import UserContext, UserContextError, decrypt_user_context
from qbconnect.db.models import Location
from qbconnect.runtime import Runtime
from qbconnect.web.auth import (
    CRM_SESSION_COOKIE,
    SESSION_SECONDS,
    Admin,
    make_crm_session_cookie,
    reachable_location_ids,
    read_crm_session_cookie,
)
from qbconnect.web.templating import templates

log = structlog.get_logger(__name__)
router = APIRouter()

SSO_PATH = "/sso/crm"


class SsoRefused(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _secret(runtime: Runtime) -> str | None:
    value = runtime.settings.crm_shared_secret
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _refusal(request: Request, status: int, message: str) -> Response:
    if _wants_html(request):
        return templates.TemplateResponse(
            request,
            "problem.html",
            {"title": "QB Connect cannot open here", "message": message, "location_id": None},
            status_code=status,
        )
    return JSONResponse({"detail": message}, status_code=status)


def settings_path(location_id: str | None) -> str:
    if location_id is None:
        return "/settings/integrations"
    return f"/settings/integrations?location_id={quote(location_id, safe='')}"


def resolve_location(runtime: Runtime, context: UserContext) -> str | None:
    """The location the session opens (None: an agency user's company-wide session). Raises SsoRefused."""
    with runtime.sessions() as session:
        if context.active_location is None:
            # An agency user outside any location: the company's installed locations, if there are any.
            probe = Admin(via="crm", session_id=None, csrf_token=None, company_id=context.company_id)
            if not reachable_location_ids(session, probe):
                raise SsoRefused(
                    403, "None of this agency's locations has installed the app yet.", "agency_without_installs"
                )
            return None
        location = session.get(Location, context.active_location)
        if location is None or location.crm_status == "uninstalled":
            raise SsoRefused(
                403,
                "The app is not installed in this location. Install it from the marketplace, then open it again.",
                "not_installed",
            )
        if location.company_id is None and context.type == "agency":
            raise SsoRefused(403, "This agency user has no access to this location.", "agency_no_access")
        if location.company_id is not None and location.company_id != context.company_id:
            message = (
                "This agency user has no access to this location."
                if context.type == "agency"
                else "This user does not belong to the location's agency."
            )
            raise SsoRefused(403, message, "company_mismatch")
        return location.id


@router.get(SSO_PATH, response_class=HTMLResponse, include_in_schema=False)
def sso_landing(request: Request) -> Response:
    """The page to register as the app's custom page: it signs in with the CRM's user context, then opens
    the settings page (static/sso.js)."""
    if _secret(_runtime(request)) is None:
        return _refusal(request, 404, "Single sign-on from the CRM is not configured on this server.")
    return templates.TemplateResponse(request, "sso.html", {})


@router.post(SSO_PATH)
async def sso_crm(request: Request) -> Response:
    runtime = _runtime(request)
    secret = _secret(runtime)
    if secret is None:
        return _refusal(request, 404, "Single sign-on from the CRM is not configured on this server.")
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    payload = body.get("encryptedData") if isinstance(body, dict) else None
    if not isinstance(payload, str):
        log.info("sso.refused", reason="no_payload")
        return _refusal(request, 401, 'The request has no user context (send {"encryptedData": "…"}).')
    try:
        context = decrypt_user_context(payload, secret)
    except UserContextError as exc:
        log.info("sso.refused", reason="undecryptable", detail=str(exc))
        return _refusal(request, 401, "The CRM's user context could not be verified. Reload the page inside the CRM.")
    try:
        location_id = await run_in_threadpool(resolve_location, runtime, context)
    except SsoRefused as exc:
        log.info(
            "sso.refused",
            reason=exc.reason,
            user_id=context.user_id,
            company_id=context.company_id,
            location_id=context.active_location,
        )
        return _refusal(request, exc.status, exc.message)
    log.info(
        "sso.opened",
        user_id=context.user_id,
        company_id=context.company_id,
        location_id=location_id,
        user_type=context.type,
    )
    response = JSONResponse({"location_id": location_id, "redirect": settings_path(location_id)})
    current = read_crm_session_cookie(runtime, request.cookies.get(CRM_SESSION_COOKIE))
    if current is not None and (current.user_id, current.company_id, current.location_id) == (
        context.user_id,
        context.company_id,
        location_id,
    ):
        # Every framed page signs in again (the CRM user may have switched location); the same user in
        # the same location keeps the session, so the forms already on the page keep a valid CSRF token.
        return response
    secure = runtime.settings.https
    response.set_cookie(
        CRM_SESSION_COOKIE,
        make_crm_session_cookie(
            runtime,
            user_id=context.user_id,
            company_id=context.company_id,
            location_id=location_id,
            user_name=context.user_name,
            user_email=context.email,
        ),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
    )
    if secure:
        _partition_last_cookie(response)
    return response


def _partition_last_cookie(response: Response) -> None:
    """Add ``Partitioned`` (CHIPS) to the cookie just set (Starlette offers it only on Python 3.14+)."""
    for index in range(len(response.raw_headers) - 1, -1, -1):
        name, value = response.raw_headers[index]
        if name == b"set-cookie":
            response.raw_headers[index] = (name, value + b"; Partitioned")
            return

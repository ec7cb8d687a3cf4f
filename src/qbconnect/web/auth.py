"""Admin authentication: a bearer token for scripts, a signed session cookie for the pages, CSRF on forms.

- ``Authorization: Bearer $QBCONNECT_ADMIN_TOKEN`` works everywhere admin access is needed.
- ``GET /login`` shows a token form; ``POST /login`` checks the token and sets ``qbc_session``: an
  HttpOnly, SameSite=Lax cookie ``base64url(json {sid, exp}) "." HMAC`` (key derived from
  ``QBCONNECT_SECRET_KEY``, purpose ``admin-session``). No server-side session store is needed.
- ``POST /login`` is throttled per client address: after ``QBCONNECT_LOGIN_MAX_FAILURES`` wrong tokens within
  ``QBCONNECT_LOGIN_WINDOW_SECONDS`` the answer is 429 with ``Retry-After`` (rate-limit storage: memory on
  one machine, Redis when scaled out).
- Every POST form carries ``csrf_token`` = HMAC(purpose ``csrf``, session id). Requests authenticated by
  the bearer token need none (no ambient credential to abuse). JSON API writes made with the cookie must
  send the token in ``X-CSRF-Token``. The login form itself uses a double-submit cookie.

Location sessions (``POST /sso/crm``, web/sso.py) are a second kind of cookie, ``qbc_crm_session``, signed
with purpose ``crm-session``: bound to one CRM user and one location (or, for an agency user opening the
app outside a location, to that user's company). :func:`require_location_access` is THE dependency of
every location-scoped route (``/api/*``, ``/settings/*``, ``/connect/*``): the admin (bearer or admin
session) passes everywhere; a location session passes only when the request addresses a location it
may reach, found in the path (``{location_id}``, or ``{activity_id}`` → that sync-log row's location), the
query (``?location_id=``) or a form field (``location_id``, ``activity_id``). A request that addresses no
location is refused to a location session (default deny: new routes are closed until they name one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from qbconnect.config import Settings
from qbconnect.db.crypto import derive_key
from qbconnect.db.models import Activity, Location
from qbconnect.runtime import Runtime
from qbconnect.web.templating import templates

SESSION_COOKIE = "qbc_session"
CRM_SESSION_COOKIE = "qbc_crm_session"
LOGIN_CSRF_COOKIE = "qbc_login_csrf"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "x-csrf-token"

router = APIRouter()


@dataclass(frozen=True)
class Admin:
    """Who is asking: the admin (``bearer``/``session``), or a CRM user's location session (``crm``)."""

    via: Literal["bearer", "session", "crm"]
    session_id: str | None
    csrf_token: str | None
    # Location sessions only: the one location reached, or (agency user, no location) the company whose
    # installed locations are reached.
    location_id: str | None = None
    company_id: str | None = None
    user_id: str | None = None
    user_name: str | None = None  # the CRM user's name and email, as the user context gave them
    user_email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.via != "crm"


class LoginRequired(Exception):
    """A page needs the admin session; answered with a redirect to ``/login``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class LoginThrottle:
    """Failed admin logins per client address, in a moving window."""

    def __init__(self, settings: Settings) -> None:
        self._window = RateLimitItemPerSecond(settings.login_max_failures, settings.login_window_seconds)
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.resolved_ratelimit_url))

    def retry_after(self, client: str) -> int | None:
        """Seconds until this client may try again, or None when it may try now."""
        if self._limiter.test(self._window, "login-failures", client):
            return None
        stats = self._limiter.get_window_stats(self._window, "login-failures", client)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def failed(self, client: str) -> None:
        self._limiter.hit(self._window, "login-failures", client)

    def succeeded(self, client: str) -> None:
        self._limiter.clear(self._window, "login-failures", client)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _mac(runtime: Runtime, purpose: str, message: str) -> str:
    key = derive_key(runtime.settings.secret("secret_key"), purpose)
    return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest())


def make_session_cookie(runtime: Runtime, *, now: float | None = None) -> str:
    payload = _b64(
        json.dumps({"sid": secrets.token_urlsafe(18), "exp": int((now or time.time()) + SESSION_SECONDS)}).encode()
    )
    return f"{payload}.{_mac(runtime, 'admin-session', payload)}"


def read_session_cookie(runtime: Runtime, value: str | None, *, now: float | None = None) -> str | None:
    """The session id of a valid, unexpired cookie, else None."""
    if not value:
        return None
    payload, sep, signature = value.partition(".")
    if not sep or not hmac.compare_digest(signature, _mac(runtime, "admin-session", payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        sid, expires = str(data["sid"]), int(data["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < (now or time.time()):
        return None
    return sid


@dataclass(frozen=True)
class CrmSession:
    session_id: str
    user_id: str
    company_id: str
    location_id: str | None
    user_name: str | None = None
    user_email: str | None = None


def make_crm_session_cookie(
    runtime: Runtime,
    *,
    user_id: str,
    company_id: str,
    location_id: str | None,
    user_name: str | None = None,
    user_email: str | None = None,
    now: float | None = None,
) -> str:
    """A location session: bound to the CRM user and the location (or the company, for an agency user). The
    user's name and email ride along (the user's own, in their own HttpOnly cookie) so what they do, e.g.
    dismissing a problem, is recorded with who did it."""
    data = {
        "sid": secrets.token_urlsafe(18),
        "exp": int((now or time.time()) + SESSION_SECONDS),
        "uid": user_id,
        "cid": company_id,
        "loc": location_id,
        "un": user_name,
        "em": user_email,
    }
    payload = _b64(json.dumps(data, separators=(",", ":")).encode())
    return f"{payload}.{_mac(runtime, 'crm-session', payload)}"


def read_crm_session_cookie(runtime: Runtime, value: str | None, *, now: float | None = None) -> CrmSession | None:
    """The location session of a valid, unexpired cookie, else None."""
    if not value:
        return None
    payload, sep, signature = value.partition(".")
    if not sep or not hmac.compare_digest(signature, _mac(runtime, "crm-session", payload)):
        return None
    try:
        data = json.loads(_unb64(payload))
        session = CrmSession(
            session_id=str(data["sid"]),
            user_id=str(data["uid"]),
            company_id=str(data["cid"]),
            location_id=None if data["loc"] is None else str(data["loc"]),
            user_name=_as_text(data.get("un")),
            user_email=_as_text(data.get("em")),
        )
        expires = int(data["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < (now or time.time()):
        return None
    return session


def csrf_token_for(runtime: Runtime, session_id: str) -> str:
    return _mac(runtime, "csrf", session_id)


def bearer_ok(runtime: Runtime, header: str | None) -> bool:
    if not header or not header.lower().startswith("bearer "):
        return False
    expected = runtime.settings.admin_token
    if expected is None or not expected.get_secret_value():
        return False
    return hmac.compare_digest(header[7:].strip().encode(), expected.get_secret_value().encode())


def admin_of(request: Request) -> Admin | None:
    runtime = _runtime(request)
    if bearer_ok(runtime, request.headers.get("authorization")):
        return Admin(via="bearer", session_id=None, csrf_token=None)
    sid = read_session_cookie(runtime, request.cookies.get(SESSION_COOKIE))
    if sid is not None:
        return Admin(via="session", session_id=sid, csrf_token=csrf_token_for(runtime, sid))
    return None


def caller_of(request: Request) -> Admin | None:
    """The admin, else a location session from ``POST /sso/crm``, else None."""
    admin = admin_of(request)
    if admin is not None:
        return admin
    runtime = _runtime(request)
    crm = read_crm_session_cookie(runtime, request.cookies.get(CRM_SESSION_COOKIE))
    if crm is None:
        return None
    return Admin(
        via="crm",
        session_id=crm.session_id,
        csrf_token=csrf_token_for(runtime, crm.session_id),
        location_id=crm.location_id,
        company_id=crm.company_id,
        user_id=crm.user_id,
        user_name=crm.user_name,
        user_email=crm.user_email,
    )


class LocationForbidden(Exception):
    """A location session asked for something outside its location: 403 (JSON for the API, else a page)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def may_reach(session: Session, caller: Admin, location_id: str) -> bool:
    """Whether ``caller`` may see and change ``location_id`` (the admin may reach every location)."""
    if caller.is_admin:
        return True
    location = session.get(Location, location_id)
    if location is None or location.crm_status == "uninstalled":
        return False
    if caller.location_id is not None:
        return location.id == caller.location_id
    return caller.company_id is not None and location.company_id == caller.company_id


def reachable_location_ids(session: Session, caller: Admin) -> set[str] | None:
    """The locations a location session reaches; None for the admin (every location)."""
    if caller.is_admin:
        return None
    if caller.location_id is not None:
        return {caller.location_id} if may_reach(session, caller, caller.location_id) else set()
    rows = session.execute(
        select(Location.id).where(Location.company_id == caller.company_id, Location.crm_status != "uninstalled")
    ).scalars()
    return set(rows)


# Pages a location session may open without naming a location (they list only what it reaches).
LOCATION_PICKER_PATHS = frozenset({"/settings/integrations"})


def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def _addressed(request: Request) -> tuple[set[str], set[int]]:
    """The location ids and sync-log row ids a request names (path, query, form)."""
    locations: set[str] = set()
    activities: set[int] = set()
    for source in (request.path_params, request.query_params):
        if (value := _as_text(source.get("location_id"))) is not None:
            locations.add(value)
        if (row := _as_text(source.get("activity_id"))) is not None:
            activities.add(int(row) if row.isdigit() else -1)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # cached on the request: the route reads the same form
        if (value := _as_text(form.get("location_id"))) is not None:
            locations.add(value)
        if (row := _as_text(form.get("activity_id"))) is not None:
            activities.add(int(row) if row.isdigit() else -1)
    return locations, activities


def _check_reach(runtime: Runtime, caller: Admin, locations: set[str], activities: set[int]) -> None:
    with runtime.sessions() as session:
        for activity_id in activities:
            row = session.get(Activity, activity_id) if activity_id > 0 else None
            if row is not None:
                locations.add(row.location_id)
            # An unknown row belongs to nobody: the route answers 404 as it does for the admin.
        for location_id in locations:
            if not may_reach(session, caller, location_id):
                raise LocationForbidden("This session can only open its own location.")


async def require_location_access(request: Request) -> Admin:
    """THE dependency of location-scoped routes (``/api/*``, ``/settings/*``, ``/connect/*``).

    Without credentials: 401 for ``/api/*``, the login page otherwise. Cookie-authenticated API writes need
    ``X-CSRF-Token`` (forms check ``csrf_token`` themselves, :func:`check_form_csrf`). A location session
    gets 403 (:class:`LocationForbidden`) for any location it may not reach, and for a request that names
    no location at all (except the location picker).
    """
    is_api = request.url.path.startswith("/api/")
    caller = caller_of(request)
    if caller is None:
        if is_api:
            raise HTTPException(
                status_code=401,
                detail="authentication required (Authorization: Bearer <QBCONNECT_ADMIN_TOKEN>, or open the app "
                "from the CRM)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    if is_api:
        check_csrf_header(caller, request)
    if caller.is_admin:
        return caller
    locations, activities = await _addressed(request)
    if not locations and not activities:
        if request.url.path in LOCATION_PICKER_PATHS:
            return caller
        raise LocationForbidden("This session can only open its own location's pages.")
    await run_in_threadpool(_check_reach, _runtime(request), caller, locations, activities)
    return caller


async def location_forbidden_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LocationForbidden)
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": exc.message}, status_code=403)
    return templates.TemplateResponse(
        request,
        "problem.html",
        {"title": "Not available", "message": exc.message, "location_id": None},
        status_code=403,
    )


def require_api_admin(request: Request) -> Admin:
    """Dependency for ``/api/*``: 401 without credentials; cookie-authenticated writes need X-CSRF-Token."""
    admin = admin_of(request)
    if admin is None:
        raise HTTPException(
            status_code=401,
            detail="admin authentication required (Authorization: Bearer <QBCONNECT_ADMIN_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in ("GET", "HEAD", "OPTIONS") and admin.via == "session":
        sent = request.headers.get(CSRF_HEADER, "")
        if not admin.csrf_token or not hmac.compare_digest(sent, admin.csrf_token):
            raise HTTPException(status_code=403, detail="missing or wrong X-CSRF-Token header")
    return admin


def check_csrf_header(admin: Admin, request: Request) -> None:
    """Cookie-authenticated JSON writes must send ``X-CSRF-Token``."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and admin.via != "bearer":
        sent = request.headers.get(CSRF_HEADER, "")
        if not admin.csrf_token or not hmac.compare_digest(sent, admin.csrf_token):
            raise HTTPException(status_code=403, detail="missing or wrong X-CSRF-Token header")


def require_page_admin(request: Request) -> Admin:
    """Dependency for ``/settings/*`` and ``/connect/*``: redirects to the login page without credentials."""
    admin = admin_of(request)
    if admin is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return admin


def check_form_csrf(admin: Admin, token: str | None) -> None:
    """POST forms: the session's CSRF token must come back (bearer requests need none)."""
    if admin.via == "bearer":
        return
    if not token or not admin.csrf_token or not hmac.compare_digest(token, admin.csrf_token):
        raise HTTPException(
            status_code=403, detail="This form has expired or was not sent from our page; reload and try again."
        )


def safe_next(value: str | None) -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/settings/integrations"
    return value


def _secure(request: Request) -> bool:
    return _runtime(request).settings.public_url.startswith("https://")


async def login_required_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    settings = _runtime(request).settings
    if request.headers.get("sec-fetch-dest") == "iframe" and settings.crm_shared_secret is not None:
        # Inside the CRM's frame: sign in with the user context the CRM hands over (web/sso.py), not a token.
        return RedirectResponse("/sso/crm", status_code=303)
    return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    token = secrets.token_urlsafe(18)
    response = templates.TemplateResponse(
        request, "login.html", {"next": safe_next(next), "csrf_token": token, "error": None}
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax", secure=_secure(request), max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    token: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/settings/integrations"),
) -> Response:
    runtime = _runtime(request)
    throttle: LoginThrottle = request.app.state.login_throttle
    client = _client(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = safe_next(next)
    status = 401
    headers: dict[str, str] = {}
    wait = throttle.retry_after(client)
    if wait is not None:
        error = f"Too many wrong tokens from this address; try again in {math.ceil(wait / 60)} minute(s)."
        status, headers = 429, {"Retry-After": str(wait)}
    elif not cookie or not hmac.compare_digest(cookie, csrf_token):
        error = "This login form has expired; please try again."
    elif not bearer_ok(runtime, f"Bearer {token}"):
        throttle.failed(client)
        error = "That admin token is not right."
    else:
        throttle.succeeded(client)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            make_session_cookie(runtime),
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            max_age=SESSION_SECONDS,
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response
    fresh = secrets.token_urlsafe(18)
    context = {"next": target, "csrf_token": fresh, "error": error}
    page = templates.TemplateResponse(request, "login.html", context, status_code=status, headers=headers)
    page.set_cookie(LOGIN_CSRF_COOKIE, fresh, httponly=True, samesite="lax", secure=_secure(request), max_age=3600)
    return page


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    admin = caller_of(request)
    if admin is not None:
        check_form_csrf(admin, csrf_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CRM_SESSION_COOKIE, path="/")
    return response

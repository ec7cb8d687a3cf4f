"""Response headers for every page, and the API docs behind the admin token.

- Every response: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``; with an https
  ``QBCONNECT_PUBLIC_URL`` also ``Strict-Transport-Security``.
- Every HTML response: a ``Content-Security-Policy`` allowing only our own scripts, styles and requests,
  and ``frame-ancestors`` limited to ``QBCONNECT_FRAME_ANCESTORS`` (the CRM's own origins by default: the
  settings page is meant to live inside HighLevel as a custom page).
- ``/api/docs`` and ``/api/openapi.json`` need the admin (bearer token or admin session): 401 without it (a
  browser asking for the docs page is sent to the login page).

A plain ASGI middleware (no body buffering): it only adds headers to ``http.response.start``.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qbconnect.config import Settings
from qbconnect.web.auth import Admin, require_api_admin, require_page_admin

DOCS_URL = "/api/docs"
OPENAPI_URL = "/api/openapi.json"
HSTS = "max-age=31536000"
_SOURCE = re.compile(r"^('self'|'none'|\*|(https?://)?(\*\.)?[A-Za-z0-9.-]+(:[0-9*]+)?)$")


def frame_ancestors(settings: Settings) -> str:
    """``QBCONNECT_FRAME_ANCESTORS`` (space- or comma-separated) as CSP sources; malformed entries are dropped."""
    sources = [item for item in re.split(r"[\s,]+", settings.frame_ancestors) if item and _SOURCE.match(item)]
    return " ".join(sources) or "'none'"


def page_policy(ancestors: str) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        f"frame-ancestors {ancestors}"
    )


def docs_policy(ancestors: str) -> str:
    """Swagger UI loads from its CDN and starts with an inline script (admin-only page)."""
    cdn = "https://cdn.jsdelivr.net"
    return (
        f"default-src 'self'; script-src 'self' 'unsafe-inline' {cdn}; style-src 'self' 'unsafe-inline' {cdn}; "
        "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; "
        f"base-uri 'self'; frame-ancestors {ancestors}"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        ancestors = frame_ancestors(settings)
        self.page_csp = page_policy(ancestors)
        self.docs_csp = docs_policy(ancestors)
        self.hsts = settings.https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", self.docs_csp if path == DOCS_URL else self.page_csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)


docs_router = APIRouter(include_in_schema=False)


@docs_router.get(OPENAPI_URL)
def openapi_document(request: Request, admin: Admin = Depends(require_api_admin)) -> JSONResponse:
    app: FastAPI = request.app
    return JSONResponse(app.openapi())


def require_docs_admin(request: Request) -> Admin:
    """``/api/docs`` is under ``/api``: 401 without the admin, as every ``/api`` route; a browser (it asks for
    HTML) is sent to the login page instead."""
    if "text/html" in request.headers.get("accept", ""):
        return require_page_admin(request)
    return require_api_admin(request)


@docs_router.get(DOCS_URL)
def api_docs(request: Request, admin: Admin = Depends(require_docs_admin)) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title="qbconnect API")

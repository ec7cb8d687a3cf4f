"""The CRM emulator as an ASGI app: HighLevel API paths plus ``/_sandbox`` controls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .contacts_api import contacts_router
from .control_api import control_errors, control_router
from .conversations_api import conversations_router
from .custom_page import build_custom_page_router
from .errors import HLError
from .invoices_api import invoices_router
from .oauth_api import oauth_router
from .payments_api import payments_router
from .state import CrmSandbox
from .workflows import custom_fields_router, workflows_router

# The ``Version`` header each API family requires (openapi/v2/apps/*.json).
API_VERSIONS = {
    "contacts": "2021-07-28",
    "invoices": "2021-07-28",
    "payments": "2021-07-28",
    "conversations": "2021-04-15",
    "workflows-marketplace": "2021-07-28",  # a trigger's targetUrl [inferred: HighLevel names none]
    "locations": "2021-07-28",  # contact custom fields (workflows.py)
}


def create_app(sandbox: CrmSandbox) -> FastAPI:
    app = FastAPI(
        title="HighLevel (LeadConnector) sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = sandbox

    @app.middleware("http")
    async def gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        family = path.strip("/").split("/", 1)[0]
        if family not in API_VERSIONS:
            response = await call_next(request)
            if not path.startswith(("/_sandbox", "/ui/")):
                sandbox.record_request(request.method, path, None, response.status_code)
            return response
        now = sandbox.now()
        query_location = request.query_params.get("locationId") or request.query_params.get("altId")
        try:
            grant = sandbox.tokens.authenticate(request.headers.get("authorization"), now)
        except HLError as exc:
            sandbox.record_request(request.method, path, query_location, exc.status)
            return exc.response()
        verdict = sandbox.limiter.hit(grant.resource, now)
        if not verdict.allowed:
            sandbox.record_request(request.method, path, grant.resource, 429)
            return HLError(429, "Too many requests, please retry later.").response(headers=verdict.headers)
        version = request.headers.get("version")
        expected = API_VERSIONS[family]
        if version != expected:
            message = (
                "Version header was not found" if not version else f"Version {version} is not supported, use {expected}"
            )
            sandbox.record_request(request.method, path, grant.resource, 400)
            return HLError(400, message).response(headers=verdict.headers)
        request.state.grant = grant
        delay = sandbox.answer_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        response = await call_next(request)
        response.headers.update(verdict.headers)
        sandbox.record_request(request.method, path, grant.resource, response.status_code)
        return response

    @app.exception_handler(HLError)
    async def hl_error(_: Request, exc: HLError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [f"{'.'.join(str(p) for p in e['loc'][1:])} {e['msg']}" for e in exc.errors()]
        return HLError(422, messages).response()

    @app.exception_handler(KeyError)
    async def missing(_: Request, exc: KeyError) -> JSONResponse:
        return control_errors(exc)

    @app.exception_handler(ValueError)
    async def refused(_: Request, exc: ValueError) -> JSONResponse:
        return control_errors(exc)

    app.include_router(oauth_router(sandbox))
    app.include_router(contacts_router(sandbox))
    app.include_router(invoices_router(sandbox))
    app.include_router(payments_router(sandbox))
    app.include_router(conversations_router(sandbox))
    app.include_router(control_router(sandbox))
    app.include_router(build_custom_page_router(sandbox))
    app.include_router(workflows_router(sandbox))
    app.include_router(custom_fields_router(sandbox))

    return app

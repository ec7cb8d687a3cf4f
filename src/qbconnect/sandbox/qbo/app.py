"""``create_app(sandbox)``: the FastAPI app serving Intuit's OAuth, the v3 API and the control API."""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from .api import build_router
from .control import build_control_router
from .oauth import OAuthError, basic_credentials
from .state import QboSandbox, RequestRecord

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
_LOGGED_PREFIXES = ("/v3/", "/oauth2/", "/v2/oauth2/", "/connect/")


def create_app(sandbox: QboSandbox) -> FastAPI:
    app = FastAPI(title="QuickBooks Online sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.qbo_sandbox = sandbox

    @app.middleware("http")
    async def intuit_tid(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["intuit_tid"] = str(uuid.uuid4())
        path = (
            request.url.path[len(request.scope.get("root_path", "")) :]
            if request.scope.get("root_path")
            else request.url.path
        )
        if any(marker in path for marker in _LOGGED_PREFIXES):
            note = getattr(request.state, "qbo", None) or {}
            with sandbox.lock:
                sandbox.request_log.append(
                    RequestRecord(
                        method=request.method,
                        path=request.url.path,
                        realm_id=note.get("realm_id"),
                        entity=note.get("entity"),
                        operation=note.get("operation", "oauth"),
                        status=response.status_code,
                        request_id=note.get("request_id"),
                    )
                )
        return response

    app.include_router(build_router(sandbox))
    app.include_router(build_control_router(sandbox))

    @app.get("/connect/oauth2")
    def authorize(request: Request) -> Response:
        params = request.query_params
        problem = _authorize_problem(
            sandbox,
            params.get("client_id"),
            params.get("response_type"),
            params.get("scope"),
            params.get("redirect_uri"),
            params.get("state"),
        )
        if problem:
            return HTMLResponse(f"<h1>Invalid request</h1><p>{html.escape(problem)}</p>", status_code=400)
        if sandbox.auto_approve:
            return _approve(
                sandbox,
                params.get("client_id", ""),
                params.get("redirect_uri", ""),
                params.get("scope", ""),
                params.get("state", ""),
                sandbox.default_realm(),
            )
        return HTMLResponse(_consent_page(sandbox, dict(params)))

    @app.post("/connect/oauth2")
    async def consent(request: Request) -> Response:
        form = await request.form()
        values = {k: str(v) for k, v in form.items()}
        problem = _authorize_problem(
            sandbox,
            values.get("client_id"),
            values.get("response_type"),
            values.get("scope"),
            values.get("redirect_uri"),
            values.get("state"),
        )
        if problem or values.get("realm_id") not in sandbox.companies:
            return HTMLResponse(f"<h1>Invalid request</h1><p>{html.escape(problem or 'pick a company')}</p>", 400)
        return _approve(
            sandbox, values["client_id"], values["redirect_uri"], values["scope"], values["state"], values["realm_id"]
        )

    @app.post("/oauth2/v1/tokens/bearer")
    async def token(request: Request) -> Response:
        request.state.qbo = {"operation": "token"}
        if not sandbox.client_ok(basic_credentials(request.headers.get("authorization"))):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        grant_type = str(form.get("grant_type", ""))
        request.state.qbo = {"operation": f"token:{grant_type}"}
        try:
            if grant_type == "authorization_code":
                result = sandbox.exchange_code(str(form.get("code", "")), str(form.get("redirect_uri", "")))
            elif grant_type == "refresh_token":
                result = sandbox.refresh(str(form.get("refresh_token", "")))
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        except OAuthError as error:
            body = {"error": error.error}
            if error.description:
                body["error_description"] = error.description
            return JSONResponse(body, status_code=error.status)
        hard = result.pop("_hard")
        if request.headers.get("x-include-refresh-token-hard-expires-in", "").lower() == "true":
            result["x_refresh_token_hard_expires_in"] = hard
        return JSONResponse(result, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @app.post("/v2/oauth2/tokens/revoke")
    async def revoke(request: Request) -> Response:
        request.state.qbo = {"operation": "revoke"}
        if not sandbox.client_ok(basic_credentials(request.headers.get("authorization"))):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("token"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        sandbox.revoke(str(body["token"]))
        return Response(status_code=200)

    return app


def _authorize_problem(
    sandbox: QboSandbox,
    client_id: str | None,
    response_type: str | None,
    scope: str | None,
    redirect_uri: str | None,
    state: str | None,
) -> str:
    if client_id != sandbox.client_id:
        return "unknown client_id"
    if response_type != "code":
        return "response_type must be code"
    if ACCOUNTING_SCOPE not in (scope or "").split():
        return f"scope must include {ACCOUNTING_SCOPE}"
    if not redirect_uri:
        return "redirect_uri is required"
    if not state:
        return "state is required"
    return ""


def _approve(sandbox: QboSandbox, client_id: str, redirect_uri: str, scope: str, state: str, realm_id: str) -> Response:
    code = sandbox.issue_code(client_id, redirect_uri, scope, realm_id)
    separator = "&" if "?" in redirect_uri else "?"
    query = urlencode({"code": code, "state": state, "realmId": realm_id})
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302)


def _consent_page(sandbox: QboSandbox, params: dict[str, str]) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
        if k in ("client_id", "response_type", "scope", "redirect_uri", "state")
    )
    default = sandbox.default_realm()
    choices = "".join(
        f'<label><input type="radio" name="realm_id" value="{html.escape(realm)}"'
        f"{' checked' if realm == default else ''}> {html.escape(company.name)} ({html.escape(realm)})</label><br>"
        for realm, company in sandbox.companies.items()
    )
    return (
        "<!doctype html><html><head><title>Connect to QuickBooks</title></head><body>"
        '<h1>Connect your app to QuickBooks</h1><form method="post" action="">'
        f"{hidden}<fieldset><legend>Choose a company</legend>{choices}</fieldset>"
        '<button type="submit">Connect</button></form></body></html>'
    )

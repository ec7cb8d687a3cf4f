"""Marketplace install (``/oauth/chooselocation``) and ``POST /oauth/token``."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .errors import HLError
from .oauth import Grant
from .state import CrmSandbox


def _check_install(sandbox: CrmSandbox, params: dict[str, str]) -> None:
    if params.get("response_type") != "code":
        raise HLError(400, "response_type must be code")
    if params.get("client_id") != sandbox.client_id:
        raise HLError(400, "Invalid client_id")
    if not params.get("redirect_uri"):
        raise HLError(400, "redirect_uri is required")


def _redirect_with_code(sandbox: CrmSandbox, params: dict[str, str], location_id: str) -> Response:
    location = sandbox.location(location_id)
    grant = Grant("Location", location.company_id, location_id, params.get("scope", ""))
    code = sandbox.tokens.issue_code(
        grant, client_id=params["client_id"], redirect_uri=params["redirect_uri"], now=sandbox.now()
    )
    query = {"code": code}
    if params.get("state"):
        query["state"] = params["state"]
    separator = "&" if "?" in params["redirect_uri"] else "?"
    return RedirectResponse(params["redirect_uri"] + separator + urlencode(query), status_code=302)


def _page(sandbox: CrmSandbox, params: dict[str, str]) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
    )
    rows = "".join(
        f'<li><form method="post" action="/oauth/chooselocation">{hidden}'
        f'<input type="hidden" name="location_id" value="{html.escape(loc.id)}">'
        f"<strong>{html.escape(loc.name)}</strong> <small>{html.escape(loc.id)}</small> "
        f'<button type="submit">Install</button></form></li>'
        for loc in sandbox.locations.values()
    )
    return (
        "<!doctype html><html><head><title>Choose a location</title></head><body>"
        f"<h1>Install app {html.escape(sandbox.client_id)}</h1>"
        f"<p>Scopes: {html.escape(params.get('scope', ''))}</p><ul>{rows}</ul></body></html>"
    )


def oauth_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter()

    for path in ("/oauth/chooselocation", "/v2/oauth/chooselocation"):

        @router.get(path, response_model=None)
        def choose_location(request: Request) -> Response:
            params = dict(request.query_params)
            try:
                _check_install(sandbox, params)
                if sandbox.auto_approve:
                    return _redirect_with_code(sandbox, params, sandbox.install_location())
            except HLError as exc:
                return exc.response()
            except KeyError as exc:
                return HLError(400, str(exc.args[0])).response()
            return HTMLResponse(_page(sandbox, params))

        @router.post(path, response_model=None)
        async def install(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            location_id = form.pop("location_id", "")
            try:
                _check_install(sandbox, form)
                return _redirect_with_code(sandbox, form, location_id)
            except HLError as exc:
                return exc.response()
            except KeyError:
                return HLError(400, "Unknown location").response()

    @router.post("/oauth/token")
    async def token(request: Request) -> Any:
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" not in content_type and "multipart/form-data" not in content_type:
            return HLError(422, ["body must be application/x-www-form-urlencoded"]).response()
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            return JSONResponse(sandbox.tokens.token(form, sandbox.now()))
        except HLError as exc:
            return exc.response()

    return router

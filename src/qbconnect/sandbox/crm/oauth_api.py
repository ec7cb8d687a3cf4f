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
    if sandbox.next_bulk_install:
        # An agency installs the app in several locations at once: a Company grant approving them.
        approved = tuple(sandbox.next_bulk_install)
        company_id = sandbox.location(approved[0]).company_id
        sandbox.next_bulk_install = None
        sandbox.agency_installs.setdefault(company_id, set()).update(approved)
        grant = Grant("Company", company_id, None, params.get("scope", ""), approved)
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

    def company_grant(request: Request) -> Grant:
        grant = sandbox.tokens.authenticate(request.headers.get("authorization"), sandbox.now())
        if grant.user_type != "Company":
            raise HLError(401, "This route is not yet supported by the IAM Service for this user type (Location)")
        if request.headers.get("version") != "2021-07-28":
            raise HLError(400, "Version header was not found")
        return grant

    @router.post("/oauth/locationToken")
    async def location_token(request: Request) -> Any:
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            grant = company_grant(request)
            company_id, location_id = form.get("companyId", ""), form.get("locationId", "")
            if not company_id or not location_id:
                raise HLError(422, ["companyId should not be empty", "locationId should not be empty"])
            if company_id != grant.company_id:
                raise HLError(403, "The token does not have access to this company")
            if location_id not in sandbox.agency_installs.get(company_id, set()):
                raise HLError(400, "The app is not installed in this location")
            return JSONResponse(sandbox.tokens.location_token(grant, location_id, sandbox.now()), status_code=201)
        except HLError as exc:
            return exc.response()

    @router.get("/oauth/installedLocations")
    def installed_locations(request: Request) -> Any:
        params = request.query_params
        try:
            grant = company_grant(request)
            company_id = params.get("companyId", "")
            if not company_id or not params.get("appId"):
                raise HLError(422, ["companyId should not be empty", "appId should not be empty"])
            if company_id != grant.company_id:
                raise HLError(403, "The token does not have access to this company")
            installed = sandbox.agency_installs.get(company_id, set())
            rows = [
                {"_id": loc.id, "name": loc.name, "address": "", "isInstalled": loc.id in installed}
                for loc in sandbox.locations.values()
                if loc.company_id == company_id
            ]
            if params.get("isInstalled") == "true":
                rows = [row for row in rows if row["isInstalled"]]
            skip, limit = int(params.get("skip", "0") or 0), int(params.get("limit", "20") or 20)
            return JSONResponse({"locations": rows[skip : skip + limit], "count": len(rows)})
        except HLError as exc:
            return exc.response()

    return router

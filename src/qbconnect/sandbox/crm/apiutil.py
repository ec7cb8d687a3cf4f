"""Request helpers shared by the API routers: the caller's grant, location checks, query parsing."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from .errors import HLError
from .oauth import Grant

NO_ACCESS = "The token does not have access to this location."


def grant_of(request: Request) -> Grant:
    grant: Grant = request.state.grant
    return grant


def require_location(request: Request, location_id: str | None) -> str:
    """403 unless the token speaks for ``location_id`` (a company token covers its approved locations)."""
    grant = grant_of(request)
    if not location_id:
        raise HLError(422, ["locationId should not be empty"])
    if grant.location_id == location_id or (grant.location_id is None and location_id in grant.approved_locations):
        return location_id
    raise HLError(403, NO_ACCESS)


def require_query(request: Request, *names: str) -> list[str]:
    missing = [name for name in names if not request.query_params.get(name)]
    if missing:
        raise HLError(422, [f"{name} should not be empty" for name in missing])
    return [request.query_params[name] for name in names]


def query_int(request: Request, name: str, default: int | None = None, *, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise HLError(422, [f"{name} should not be empty"])
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HLError(422, [f"{name} must be a number conforming to the specified constraints"]) from None
    if value < minimum:
        raise HLError(422, [f"{name} must not be less than {minimum}"])
    return value


def check_alt_type(request: Request) -> None:
    alt_type = request.query_params.get("altType")
    if alt_type != "location":
        raise HLError(422, ["altType must be one of the following values: location"])


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HLError(400, f"Unexpected token in JSON at position {exc.pos}") from None


def page(records: list[dict[str, Any]], offset: int, limit: int) -> list[dict[str, Any]]:
    return records[offset : offset + limit]

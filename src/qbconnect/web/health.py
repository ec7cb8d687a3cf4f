"""Health for load balancers and orchestrators, each answered within ~2 s:

- ``GET /healthz`` (fixed by the contract): 200 when the database and the queue answer; 503 naming what does not.
- ``GET /readyz``: ready to take traffic: as ``/healthz``, and the database is at this release's schema
  (a new release started before ``qbconnect db upgrade`` is not sent traffic). 503 naming what is missing.
- ``GET /livez``: the process answers (no dependency checked: a database outage must not get every web
  process restarted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from qbconnect.db.migrate import schema_state
from qbconnect.db.session import ping

router = APIRouter()

CHECK_DEADLINE_SECONDS = 1.8  # above the web engine's SQLite busy timeout, so "locked" is reported as such
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qbconnect-health")


def _describe(exc: BaseException) -> str:
    """What went wrong, in one short line (the driver's first line, never SQL or parameters)."""
    if isinstance(exc, SchemaBehind):
        return str(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        return f"{type(exc.orig).__name__}: {first[:160]}" if first else type(exc.orig).__name__
    return type(exc).__name__


async def _check(name: str, fn: Callable[[], Any]) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(_executor, fn), CHECK_DEADLINE_SECONDS)
    except TimeoutError:
        return f"{name}: no answer within {CHECK_DEADLINE_SECONDS}s"
    except Exception as exc:
        return f"{name}: {_describe(exc)}"
    return None


async def _problems(request: Request, *, schema: bool) -> list[str]:
    runtime = request.app.state.runtime
    checks = [_check("database", lambda: ping(runtime.engine))]
    queue = request.app.state.queue
    if queue is not None:
        checks.append(_check("queue", queue.ping))
    if schema and not getattr(request.app.state, "schema_current", False):
        checks.append(_check("schema", lambda: _require_current_schema(request)))
    return [problem for problem in await asyncio.gather(*checks) if problem is not None]


class SchemaBehind(RuntimeError):
    def __init__(self, current: frozenset[str], heads: frozenset[str]) -> None:
        super().__init__(
            f"database at {', '.join(sorted(current)) or 'no schema'}, "
            f"this release needs {', '.join(sorted(heads))}; run `qbconnect db upgrade`"
        )


def _require_current_schema(request: Request) -> None:
    state = schema_state(request.app.state.runtime.engine)
    if not state.up_to_date:
        raise SchemaBehind(state.current, state.heads)
    request.app.state.schema_current = True  # a schema does not go back: checked until it is current once


def _answer(problems: list[str]) -> JSONResponse:
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    return _answer(await _problems(request, schema=False))


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    return _answer(await _problems(request, schema=True))


@router.get("/livez")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})

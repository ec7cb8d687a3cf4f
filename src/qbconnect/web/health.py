"""``GET /healthz``: 200 when the database and the queue answer; 503 naming what does not, within ~2 s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from qbconnect.db.session import ping

router = APIRouter()

CHECK_DEADLINE_SECONDS = 1.8  # above the web engine's SQLite busy timeout, so "locked" is reported as such
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qbconnect-health")


def _describe(exc: BaseException) -> str:
    """What went wrong, in one short line (the driver's first line, never SQL or parameters)."""
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


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    checks = [_check("database", lambda: ping(runtime.engine))]
    queue = request.app.state.queue
    if queue is not None:
        checks.append(_check("queue", queue.ping))
    problems = [problem for problem in await asyncio.gather(*checks) if problem is not None]
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})

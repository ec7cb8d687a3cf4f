"""``GET /healthz``: 200 when the database and the queue answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from qbconnect.db.session import ping

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    problems: list[str] = []
    try:
        ping(runtime.engine)
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}")
    queue = request.app.state.queue
    if queue is not None:
        try:
            queue.ping()
        except Exception as exc:
            problems.append(f"queue: {type(exc).__name__}")
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})

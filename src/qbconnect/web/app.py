"""The FastAPI application: webhooks, OAuth, settings pages, JSON API, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError

from qbconnect.runtime import Runtime
from qbconnect.web import api, auth, health, oauth, pages, security, sso, webhooks, workflows
from qbconnect.web.intake_writer import IntakeWriter
from qbconnect.web.limits import MAX_BODY_BYTES, BodySizeLimit
from qbconnect.web.templating import STATIC_DIR
from qbconnect.worker import Queue, Ticker, start_consumer

log = structlog.get_logger(__name__)

INTAKE_FLUSH_SECONDS = 5.0  # on stop: webhooks already answered 200 get their jobs handed to the queue


def create_app(runtime: Runtime, *, queue: Queue | None = None, run_worker: bool = False) -> FastAPI:
    """Build the app. With ``run_worker`` the job worker runs in-process (``qbconnect serve``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        consumer = None
        ticker = None
        if queue is not None:
            queue.install()
        if run_worker and queue is not None:
            consumer = start_consumer(queue, threads=runtime.settings.worker_threads, in_process=True)
            ticker = Ticker(runtime, queue=queue)
            ticker.start()
        try:
            yield
        finally:
            app.state.intake_writer.flush(timeout=INTAKE_FLUSH_SECONDS)
            if ticker is not None:
                ticker.stop()
            if consumer is not None:
                consumer.stop(graceful=True)

    # The docs and the OpenAPI document are served by web/security.py, behind the admin token.
    app = FastAPI(title="qbconnect", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # Requests run on an engine with short storage timeouts; the in-process worker keeps ``runtime``.
    app.state.runtime = runtime.web()
    app.state.intake_writer = IntakeWriter(app.state.runtime)
    app.state.queue = queue
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(workflows.router)
    app.include_router(auth.router)
    app.include_router(sso.router)
    app.include_router(oauth.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(security.docs_router)
    app.add_middleware(security.SecurityHeaders, settings=runtime.settings)
    app.state.login_throttle = auth.LoginThrottle(runtime.settings)
    app.add_exception_handler(auth.LoginRequired, auth.login_required_handler)
    app.add_exception_handler(auth.LocationForbidden, auth.location_forbidden_handler)
    app.add_exception_handler(SQLAlchemyError, storage_unavailable_handler)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


async def storage_unavailable_handler(request: Request, exc: Exception) -> Response:
    """Storage locked, slow or down while answering a page or API call: a quick 503, not a hang or a 500."""
    log.warning("http.storage_unavailable", path=request.url.path, error=type(exc).__name__)
    return JSONResponse(
        {"detail": "storage is temporarily unavailable; please try again"},
        status_code=503,
        headers={"Retry-After": "5"},
    )

"""The FastAPI application: webhooks, OAuth, settings pages, JSON API, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from qbconnect.runtime import Runtime
from qbconnect.web import api, auth, health, oauth, pages, security, webhooks
from qbconnect.web.templating import STATIC_DIR
from qbconnect.worker import Queue, Ticker, start_consumer


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
            ticker = Ticker(runtime)
            ticker.start()
        try:
            yield
        finally:
            if ticker is not None:
                ticker.stop()
            if consumer is not None:
                consumer.stop(graceful=True)

    # The docs and the OpenAPI document are served by web/security.py, behind the admin token.
    app = FastAPI(title="qbconnect", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.queue = queue
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(auth.router)
    app.include_router(oauth.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(security.docs_router)
    app.add_middleware(security.SecurityHeaders, settings=runtime.settings)
    app.state.login_throttle = auth.LoginThrottle(runtime.settings)
    app.add_exception_handler(auth.LoginRequired, auth.login_required_handler)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app

"""The ``qbconnect`` command: serve, worker, demo, sandbox, db, status, retry, rotate-key."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qbconnect.config import SERVICE_REQUIRED, MissingSettingError, Settings
from qbconnect.logs import configure_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="QuickBooks Online ⇄ HighLevel sync service.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def _settings(*required: str, strong: bool = False) -> Settings:
    """Load settings; stop with one line naming a missing (or, with ``strong``, a too short) secret."""
    try:
        settings = Settings()
        settings.require(*required)
        if strong:
            settings.require_strong("secret_key", "admin_token")
    except MissingSettingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run the job worker in-process.")] = False,
) -> None:
    """The web service (webhooks, OAuth, settings pages, API), plus the job worker unless --no-worker."""
    import uvicorn

    from qbconnect.db.migrate import upgrade
    from qbconnect.runtime import build_runtime
    from qbconnect.sync.kinds import load_handlers
    from qbconnect.web.app import create_app
    from qbconnect.worker import Queue

    settings = _settings(*SERVICE_REQUIRED, strong=True)
    configure_logging(json=settings.log_json)
    upgrade(settings.database_url)
    load_handlers()
    runtime = build_runtime(settings)
    queue = Queue(runtime)
    web = create_app(runtime, queue=queue, run_worker=not no_worker)
    uvicorn.run(web, host=host, port=port, log_level="info", access_log=False)


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Worker threads (default QBCONNECT_WORKER_THREADS).")] = None,
) -> None:
    """A job worker only (scale-out: run many against PostgreSQL + Redis)."""
    from qbconnect.db.migrate import upgrade
    from qbconnect.runtime import build_runtime
    from qbconnect.sync.kinds import load_handlers
    from qbconnect.worker import Queue, Ticker, start_consumer

    settings = _settings("secret_key", strong=True)
    configure_logging(json=settings.log_json)
    upgrade(settings.database_url)
    load_handlers()
    runtime = build_runtime(settings)
    queue = Queue(runtime)
    queue.install()
    ticker = Ticker(runtime)
    ticker.start()
    consumer = start_consumer(queue, threads=threads or settings.worker_threads, in_process=False)
    try:
        consumer.run()
    finally:
        ticker.stop()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending database migrations."""
    from qbconnect.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("database is up to date")


@app.command()
def status(
    location_id: Annotated[str | None, typer.Option(help="Show one location only.")] = None,
) -> None:
    """Connections, job counts and import progress."""
    from qbconnect.runtime import build_runtime
    from qbconnect.services.status import location_overviews

    settings = _settings()
    runtime = build_runtime(settings)
    with runtime.sessions() as session:
        overviews = location_overviews(session, location_id)
    out = Console()
    if not overviews:
        out.print("no locations yet")
        return
    for view in overviews:
        table = Table(title=f"location {view.location_id} — {view.name or ''}", show_header=False)
        for key, value in view.rows():
            table.add_row(key, value)
        out.print(table)
    runtime.close()


@app.command()
def retry(activity_id: Annotated[int, typer.Argument(help="Sync log row to retry.")]) -> None:
    """Retry one failed sync-log row (same as its Retry button)."""
    from qbconnect.runtime import build_runtime
    from qbconnect.sync.engine import jobs
    from qbconnect.worker import Queue

    settings = _settings()
    runtime = build_runtime(settings)
    Queue(runtime).install()
    with runtime.sessions.begin() as session:
        job_id = jobs.retry_activity(session, activity_id)
    if job_id is None:
        console.print(f"[red]error:[/red] activity {activity_id} does not exist or did not fail")
        raise typer.Exit(1)
    console.print(f"queued job {job_id}")


@app.command("rotate-key")
def rotate_key(
    batch_size: Annotated[int, typer.Option(min=1, help="Rows re-encrypted per transaction.")] = 100,
) -> None:
    """Re-encrypt every stored token under QBCONNECT_SECRET_KEY (older keys in QBCONNECT_SECRET_KEY_PREVIOUS).

    Safe to interrupt and run again: tokens already under the newest key are left as they are.
    """
    from rich.progress import Progress

    from qbconnect.connections.key_rotation import rotate_tokens
    from qbconnect.db.migrate import upgrade
    from qbconnect.runtime import build_runtime

    settings = _settings("secret_key", strong=True)
    upgrade(settings.database_url)
    runtime = build_runtime(settings)
    try:
        with Progress(console=console, transient=False) as bar:
            task = bar.add_task("re-encrypting tokens", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = rotate_tokens(runtime, batch_size=batch_size, progress=advance)
    finally:
        runtime.close()
    console.print(
        f"{report.rows} rows checked: {report.rotated} tokens re-encrypted, {report.already_current} already "
        f"under the newest key, {report.changed_meanwhile} changed meanwhile (run again to check them)"
    )
    if report.unreadable:
        console.print(
            f"[red]error:[/red] {len(report.unreadable)} tokens open with no configured key "
            f"(add the key they were written with to QBCONNECT_SECRET_KEY_PREVIOUS): {', '.join(report.unreadable)}"
        )
        raise typer.Exit(1)


@app.command()
def sandbox(
    platform: Annotated[str, typer.Argument(help="qbo or crm")],
    port: Annotated[int, typer.Option(help="Port to listen on (default 9001 for qbo, 9002 for crm).")] = 0,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    webhook_url: Annotated[str | None, typer.Option(help="Where the emulator sends its webhooks.")] = None,
) -> None:
    """Run one platform emulator alone (QuickBooks Online or HighLevel), with one company/location."""
    import uvicorn

    configure_logging(json=False)
    if platform == "qbo":
        from qbconnect.sandbox.qbo import QboSandbox
        from qbconnect.sandbox.qbo import create_app as create_qbo

        qbo = QboSandbox(webhook_url=webhook_url)
        realm = qbo.add_company()
        typer.echo(f"QuickBooks sandbox: company realm {realm}; client id {qbo.client_id}, secret {qbo.client_secret},")
        typer.echo(f"webhook verifier token {qbo.verifier_token}; control API under /_sandbox/")
        if webhook_url:
            qbo.start_webhook_delivery()
        web = create_qbo(qbo)
        default_port = 9001
    elif platform == "crm":
        from qbconnect.sandbox.crm import CrmSandbox
        from qbconnect.sandbox.crm import create_app as create_crm

        crm = CrmSandbox(webhook_url=webhook_url)
        location = crm.add_location()
        typer.echo(f"HighLevel sandbox: location {location}; client id {crm.client_id}, secret {crm.client_secret}")
        typer.echo(f"webhook public key (QBCONNECT_CRM_WEBHOOK_PUBLIC_KEY): {crm.webhook_public_key}")
        if webhook_url:
            crm.start_webhook_delivery()
        web = create_crm(crm)
        default_port = 9002
    else:
        typer.echo("error: platform must be 'qbo' or 'crm'", err=True)
        raise typer.Exit(2)
    uvicorn.run(web, host=host, port=port or default_port, log_level="warning")


@app.command()
def demo(port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000) -> None:
    """The whole product on one machine: service + both sandboxes + a connected demo location + live traffic."""
    from qbconnect.demo import run_demo

    configure_logging(json=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        run_demo(port=port, stop=stop)


def main() -> None:
    try:
        app()
    except MissingSettingError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""The ``qbconnect`` command: serve, worker, demo, sandbox, db, status, retry, rotate-key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from qbconnect.config import SERVICE_REQUIRED, MissingSettingError, Settings
from qbconnect.logs import configure_logging

if TYPE_CHECKING:
    from qbconnect.runtime import Runtime

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


NO_MIGRATE_HELP = (
    "Do not apply pending migrations on start (QBCONNECT_MIGRATE_ON_START=false does the same); refuse to start "
    "on an unmigrated database. For fleets that run `qbconnect db upgrade` as a release step."
)


def _migrate_or_refuse(settings: Settings, no_migrate: bool) -> None:
    """Apply pending migrations, or (told not to) stop with one line when the database is not migrated."""
    from sqlalchemy.exc import SQLAlchemyError

    from qbconnect.db.migrate import unmigrated_reason, upgrade

    if settings.migrate_on_start and not no_migrate:
        upgrade(settings.database_url)
        return
    try:
        reason = unmigrated_reason(settings.database_url)
    except SQLAlchemyError as exc:
        _fail(f"cannot open the database ({type(exc).__name__}); check QBCONNECT_DATABASE_URL", 2)
    if reason is not None:
        _fail(reason, 2)


MIGRATE_RETRY_SECONDS = 5.0


def _database_problem(database_url: str) -> str | None:
    """None when the database answers within the web's storage timeouts; otherwise what went wrong.

    A SQLite file that does not exist yet has nothing to wait for (the migrations create it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from qbconnect.db.session import WEB, make_engine, ping, sqlite_file

    path = sqlite_file(database_url)
    if path is not None and not Path(path).exists():
        return None
    engine = make_engine(database_url, WEB)
    try:
        ping(engine)
    except SQLAlchemyError as exc:
        return type(getattr(exc, "orig", None) or exc).__name__
    finally:
        engine.dispose()
    return None


def _migrate_when_answering(database_url: str, retry_seconds: float = MIGRATE_RETRY_SECONDS) -> None:
    """Apply pending migrations once the database answers (``serve`` started while it did not)."""
    import time

    import structlog
    from sqlalchemy.exc import SQLAlchemyError

    from qbconnect.db.migrate import upgrade

    log = structlog.get_logger("qbconnect.cli")
    while True:
        time.sleep(retry_seconds)
        if _database_problem(database_url) is not None:
            continue
        try:
            upgrade(database_url)
        except SQLAlchemyError as exc:
            log.warning("serve.migrations_failed", error=type(exc).__name__, retry_in=retry_seconds)
            continue
        log.info("serve.migrations_applied")
        return


def _prepare_database(settings: Settings, no_migrate: bool) -> None:
    """Migrate (or check the schema) before serving. A database that does not answer at start is no reason
    not to serve: webhooks are answered 429/503 and ``/healthz`` 503 until it does (the platforms retry),
    and pending migrations are applied once it answers."""
    import threading

    import structlog

    problem = _database_problem(settings.database_url)
    if problem is None:
        _migrate_or_refuse(settings, no_migrate)
        return
    migrate = settings.migrate_on_start and not no_migrate
    structlog.get_logger("qbconnect.cli").warning(
        "serve.database_not_answering",
        error=problem,
        then="migrations are applied once it answers" if migrate else "the schema is not checked (see /readyz)",
    )
    if migrate:
        threading.Thread(
            target=_migrate_when_answering, args=(settings.database_url,), name="qbconnect-migrate", daemon=True
        ).start()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Do not run the job worker in-process.")] = False,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help=NO_MIGRATE_HELP)] = False,
) -> None:
    """The web service (webhooks, OAuth, settings pages, API), plus the job worker unless --no-worker.

    Starts even when the database does not answer: webhooks get 429/503 until it does, and pending migrations
    are applied then.

    SIGTERM: stops taking requests and jobs; running jobs get QBCONNECT_SHUTDOWN_GRACE_SECONDS to finish and
    the rest are handed back to the queue."""
    import uvicorn

    from qbconnect.runtime import build_runtime
    from qbconnect.sync.kinds import load_handlers
    from qbconnect.web.app import create_app
    from qbconnect.worker import Queue

    settings = _settings(*SERVICE_REQUIRED, strong=True)
    configure_logging(json=settings.log_json)
    _prepare_database(settings, no_migrate)
    load_handlers()
    runtime = build_runtime(settings)
    queue = Queue(runtime)
    web = create_app(runtime, queue=queue, run_worker=not no_worker)
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds)),
    )


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Worker threads (default QBCONNECT_WORKER_THREADS).")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help=NO_MIGRATE_HELP)] = False,
) -> None:
    """A job worker only (scale-out: run many against PostgreSQL + Redis).

    SIGTERM: stops taking jobs; running jobs get QBCONNECT_SHUTDOWN_GRACE_SECONDS to finish and the rest are
    handed back to the queue (pending again); SIGINT hands them back at once."""
    from qbconnect.runtime import build_runtime
    from qbconnect.sync.kinds import load_handlers
    from qbconnect.worker import Queue, Ticker, start_consumer

    settings = _settings("secret_key", strong=True)
    configure_logging(json=settings.log_json)
    _migrate_or_refuse(settings, no_migrate)
    load_handlers()
    runtime = build_runtime(settings)
    queue = Queue(runtime)
    queue.install()
    ticker = Ticker(runtime, queue=queue)
    ticker.start()
    consumer = start_consumer(queue, threads=threads or settings.worker_threads, in_process=False)
    try:
        consumer.run()
    finally:
        ticker.stop()
        typer.echo(f"worker stopped; {len(consumer.handed_back)} running job(s) handed back", err=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending database migrations (run once per release, before starting the new web and workers)."""
    from qbconnect.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("database is up to date")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _installation() -> Runtime:
    """The runtime of an existing installation (the same settings as ``serve``); one clear line and exit 1
    when the database is missing, unreadable or empty — never a traceback, and never a new empty file."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from qbconnect.runtime import build_runtime

    settings = _settings()
    hint = "set QBCONNECT_DATABASE_URL to the installation's database (see the README)"
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        _fail(f"QBCONNECT_DATABASE_URL is not a database URL; {hint}")
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:" or not Path(path).exists():
            _fail(f"no database at {shown}; {hint}, or run `qbconnect db upgrade` to create one")
    try:
        runtime = build_runtime(settings)
        tables = set(inspect(runtime.engine).get_table_names())
    except SQLAlchemyError as exc:
        _fail(f"cannot open the database at {shown} ({type(exc).__name__}); {hint}")
    if not {"locations", "activity", "sync_jobs"} <= tables:
        runtime.close()
        _fail(f"the database at {shown} has no qbconnect tables; run `qbconnect db upgrade` or {hint}")
    return runtime


def _known_location(runtime: Runtime, location_id: str | None) -> None:
    if location_id is None:
        return
    from qbconnect.db.models import Location

    with runtime.sessions() as session:
        if session.get(Location, location_id) is None:
            runtime.close()
            _fail(f"unknown location {location_id}")


@app.command()
def status(
    location_id: Annotated[str | None, typer.Option(help="Show one location only.")] = None,
) -> None:
    """Connections, whether the books are in step, job counts and import progress."""
    from qbconnect.services.activity_log import health
    from qbconnect.services.status import location_overviews

    runtime = _installation()
    _known_location(runtime, location_id)
    with runtime.sessions() as session:
        overviews = location_overviews(session, location_id, runtime.settings)
        healths = {view.location_id: health(session, view.location_id) for view in overviews}
    out = Console()
    if not overviews:
        out.print("no locations yet")
        runtime.close()
        return
    for view in overviews:
        table = Table(title=f"location {view.location_id} — {view.name or ''}", show_header=False)
        table.add_row("sync", healths[view.location_id]["text"])
        for key, value in view.rows():
            table.add_row(key, value)
        out.print(table)
    runtime.close()


@app.command()
def retry(
    activity_id: Annotated[int | None, typer.Argument(help="Sync log row to retry.")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Retry every open problem.")] = False,
    location_id: Annotated[str | None, typer.Option(help="With --all-failed: one location only.")] = None,
) -> None:
    """Retry one failed sync-log row (same as its Retry button), or every open problem with --all-failed."""
    from sqlalchemy import select

    from qbconnect.connections.state import is_syncing
    from qbconnect.db.models import Location
    from qbconnect.services import log_actions
    from qbconnect.worker import Queue

    if (activity_id is None) == (not all_failed):
        _fail("give a sync log row id, or --all-failed", 2)
    runtime = _installation()
    _known_location(runtime, location_id)
    Queue(runtime).install()
    try:
        if activity_id is not None:
            with runtime.sessions.begin() as session:
                try:
                    job_id = log_actions.retry_one(session, activity_id)
                except log_actions.ActionRefused as exc:
                    _fail(f"cannot retry row {activity_id}: {exc.message}")
            console.print(f"queued job {job_id}")
            return
        with runtime.sessions.begin() as session:
            stmt = select(Location.id).order_by(Location.installed_at)
            if location_id:
                stmt = stmt.where(Location.id == location_id)
            total = 0
            for loc in session.execute(stmt).scalars().all():
                if not is_syncing(session, loc):
                    console.print(f"location {loc}: QuickBooks is not connected; nothing retried")
                    continue
                retried = log_actions.retry_all_failed(session, loc)
                total += len(retried)
                console.print(f"location {loc}: {len(retried)} queued to run again")
        console.print(f"{total} queued in all")
    finally:
        runtime.close()


@app.command("log")
def log_command(
    location_id: Annotated[str | None, typer.Option(help="One location only.")] = None,
    status: Annotated[
        str | None, typer.Option(help="needs_attention, failed, synced, skipped or waiting (or a raw status).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="invoice, transaction, order, customer, …")] = None,
    search: Annotated[str | None, typer.Option(help="Customer name, email, invoice or order number.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show.")] = 50,
    include_internal: Annotated[bool, typer.Option("--include-internal", help="Show sweeps and polls.")] = False,
) -> None:
    """The sync log as a table, newest first (the same filters as the page)."""
    from sqlalchemy import select

    from qbconnect.db.models import Location
    from qbconnect.services import activity_log
    from qbconnect.services.fixes import fix_for

    runtime = _installation()
    _known_location(runtime, location_id)
    flt = activity_log.LogFilter(status=status, kind=kind, search=search, include_internal=include_internal)
    table = Table(show_lines=False)
    for column in ("id", "when", "status", "what", "details"):
        table.add_column(column, overflow="fold")
    count = 0
    with runtime.sessions() as session:
        locations = [location_id] if location_id else list(session.execute(select(Location.id)).scalars())
        for loc in locations:
            result = activity_log.page_of(session, loc, flt, per_page=limit)
            for row in result.rows:
                fix = (
                    fix_for(
                        code=row.fault_code,
                        category=row.error_category,
                        message=row.error_message,
                        intuit_tid=row.intuit_tid,
                    )
                    if row.status == "failed"
                    else None
                )
                when = row.updated_at.strftime("%Y-%m-%d %H:%M") if row.updated_at else ""
                details = fix.fix if fix else (row.error_message or row.summary or "")
                table.add_row(
                    str(row.id),
                    when,
                    activity_log.STATUS_WORDS.get(row.status, row.status),
                    activity_log.headline(row),
                    details,
                )
                count += 1
    runtime.close()
    out = Console()
    if not count:
        out.print("no sync log rows match")
        return
    out.print(table)


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
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="Where request, worker and demo-traffic logs go (default: qbconnect-demo-PORT.log in the "
            "system's temporary folder)."
        ),
    ] = None,
) -> None:
    """The whole product on one machine: service + both sandboxes + a connected demo location + live traffic.

    Prints the settings page's URL and the admin token; logs go to a file it names. Ctrl-C (or SIGTERM) stops
    it and removes its temporary data folder."""
    from qbconnect.demo import run_demo

    run_demo(port=port, log_file=log_file)


def main() -> None:
    try:
        app()
    except MissingSettingError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

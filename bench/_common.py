"""What every benchmark shares: the whole product on this machine in a throw-away folder, platform-like
latency, waiting for the worker, and the results file."""

from __future__ import annotations

import inspect
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text

from qbconnect.db.models import SyncJob
from qbconnect.db.session import sqlite_file
from qbconnect.sandbox.crm import CrmSandbox
from qbconnect.sandbox.server import free_port
from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs
from qbconnect.worker import Queue

RESULTS = Path(__file__).parent / "results"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "bench-secret-key-0123456789abcdef-0123456789"  # serve refuses secrets under 32 characters
ADMIN = "bench-admin-token-0123456789abcdef-0123456789"

# What a call to each platform takes, as the benches use it: uniform in these ranges (seconds). A figure
# measured against an emulator that answers at once, or without its limits, says nothing about production.
QBO_LATENCY = (0.150, 0.250)
CRM_LATENCY = (0.100, 0.200)


def platform_options(*, latency: bool = True) -> dict[str, dict[str, Any]]:
    """``qbo_options`` and ``crm_options`` for :func:`bench_stack`: the emulators' own limits (Intuit's 500
    requests per sliding minute, 10 in flight, 40 batches a minute per company; HighLevel's 100 requests per
    sliding 10 s per location) and, with ``latency``, :data:`QBO_LATENCY` and :data:`CRM_LATENCY`."""
    if not latency:
        return {"qbo_options": {}, "crm_options": {}}
    low, high = QBO_LATENCY
    qbo = {"latency": (low + high) / 2, "latency_jitter": (high - low) / 2}
    crm: dict[str, Any] = {}
    if crm_latency_supported():
        crm["latency"] = CRM_LATENCY
    return {"qbo_options": qbo, "crm_options": crm}


def crm_latency_supported() -> bool:
    return "latency" in inspect.signature(CrmSandbox.__init__).parameters


def latency_note(*, latency: bool = True) -> str:
    """One line saying which latencies a figure was measured with."""
    if not latency:
        return "no platform latency (emulators answer at once)"
    qbo = f"QuickBooks {QBO_LATENCY[0] * 1000:.0f}-{QBO_LATENCY[1] * 1000:.0f} ms"
    if crm_latency_supported():
        crm = f"CRM {CRM_LATENCY[0] * 1000:.0f}-{CRM_LATENCY[1] * 1000:.0f} ms"
    else:
        crm = "CRM 0 ms (this CRM emulator has no latency option)"
    return f"latency per call: {qbo}, {crm}"


@contextmanager
def postgres_and_redis() -> Iterator[tuple[str, str]]:
    """A new PostgreSQL database at ``BENCH_PG_ADMIN_URL`` and the Redis database at ``BENCH_REDIS_URL``
    (emptied): yields their URLs; the database is dropped and Redis emptied afterwards."""
    import redis

    name = f"qbc_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", REDIS_URL
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        with admin.connect() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def bench_stack(storage: tuple[str, str] | None = None, **kwargs: Any) -> Iterator[Stack]:
    """Both emulators + the service in a temporary folder, on SQLite or on ``storage`` (database and queue
    URLs, e.g. from :func:`postgres_and_redis`); jobs wait for ``drain`` unless run_worker."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs.set_dispatcher(None)
        database_url, queue_url = storage or (f"sqlite:///{tmp}/bench.db", f"sqlite:///{tmp}/queue.db")
        stack = start_stack(
            database_url=database_url,
            queue_url=queue_url,
            secret_key=SECRET,
            admin_token=ADMIN,
            **kwargs,
        )
        try:
            yield stack
        finally:
            stack.stop()
            jobs.set_dispatcher(None)


@contextmanager
def service_process(stack: Stack, *, separate_worker: bool = False) -> Iterator[str]:
    """The service in processes of its own, on the stack's database and queue, so that the platforms (the
    emulators, in this process) do not share its interpreter, as in production: one ``qbconnect serve`` — web
    and in-process worker, the embedded default — or, with ``separate_worker``, ``qbconnect serve --no-worker``
    and one ``qbconnect worker`` (the scale-out layout). Both emulators deliver their webhooks to it; jobs the
    stack's own (worker-less) service enqueues reach the worker through the queue. Yields its URL."""
    database = sqlite_file(stack.settings.database_url)
    workdir = Path(database).parent if database else Path(tempfile.gettempdir())
    Queue(stack.runtime).install()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "qbconnect.cli", "serve", "--no-migrate", "--port", str(port)]
    commands = [[*serve, "--no-worker"], [sys.executable, "-m", "qbconnect.cli", "worker", "--no-migrate"]]
    env = stack.process_env(QBCONNECT_LOG_JSON="true", PYTHONUNBUFFERED="1")
    with ExitStack() as scope:
        procs = []
        for n, command in enumerate(commands if separate_worker else [serve]):
            output = scope.enter_context((workdir / f"service-{n}.log").open("wb"))
            procs.append(subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT))
            scope.callback(_stop, procs[-1])
        wait_until(lambda: _answers(f"{url}/livez") or procs[0].poll() is not None, timeout=60, what="qbconnect serve")
        if any(proc.poll() is not None for proc in procs):
            logs = "".join(log.read_text()[-2000:] for log in workdir.glob("service-*.log"))
            raise RuntimeError(f"a service process exited: {logs}")
        stack.crm.webhook_url = f"{url}/webhooks/crm"
        stack.qbo.webhook_url = f"{url}/webhooks/qbo"
        yield url
    jobs.set_dispatcher(None)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float = 300.0, every: float = 0.05, what: str = "") -> float:
    """Seconds until ``check()`` holds; TimeoutError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"still waiting after {timeout:.0f} s{': ' + what if what else ''}")
        time.sleep(every)
    return time.monotonic() - start


def active_jobs(stack: Stack) -> int:
    """Jobs pending or running (a debounced job waiting for its time counts)."""
    with stack.runtime.sessions() as session:
        count = session.execute(
            select(func.count()).select_from(SyncJob).where(SyncJob.state.in_(("pending", "running")))
        )
        return int(count.scalar_one())


def wait_idle(stack: Stack, *, timeout: float = 300.0) -> float:
    """With the in-process worker: seconds until no job is pending or running."""
    return wait_until(lambda: active_jobs(stack) == 0, timeout=timeout, every=0.1, what="jobs still active")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(figure: float, limit: float) -> str:
    """``1.14x``: a figure next to the platform's limit."""
    return f"{figure / limit:.2f}x" if limit else "-"


def write_results(name: str, results: Any) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))

"""Health endpoints for load balancers and orchestrators: /healthz (contract), /readyz, /livez."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qbconnect.config import Settings
from qbconnect.db.migrate import upgrade
from qbconnect.runtime import Runtime, build_runtime
from qbconnect.web import health
from qbconnect.web.app import create_app
from qbconnect.worker import Queue
from tests.conftest import make_settings


def _client(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime, queue=Queue(runtime)))


def test_all_three_answer_ok_on_a_migrated_database_and_a_working_queue(runtime: Runtime) -> None:
    with _client(runtime) as client:
        for path in ("/healthz", "/readyz", "/livez"):
            response = client.get(path)
            assert (path, response.status_code, response.json()) == (path, 200, {"status": "ok"})


def test_readyz_is_503_until_the_database_is_migrated_to_this_release(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    settings: Settings = make_settings(url, f"sqlite:///{tmp_path / 'queue.db'}")
    runtime = build_runtime(settings)
    try:
        with _client(runtime) as client:
            assert client.get("/healthz").status_code == 200  # the database and queue do answer
            ready = client.get("/readyz")
            assert ready.status_code == 503
            [problem] = ready.json()["problems"]
            assert problem.startswith("schema: database at 0004, this release needs ")
            assert "qbconnect db upgrade" in problem
            upgrade(url)  # the release step ran
            assert client.get("/readyz").status_code == 200
    finally:
        runtime.close()


def test_livez_stays_up_while_the_database_is_down(sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(engine: object) -> None:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(health, "ping", down)
    with _client(sqlite_runtime) as client:
        assert client.get("/healthz").status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "database: ConnectionRefusedError" in ready.json()["problems"]
        assert client.get("/livez").json() == {"status": "ok"}

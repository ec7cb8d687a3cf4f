"""Security headers on every page, API docs behind the admin token, and the login throttle."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from qbconnect.runtime import Runtime
from qbconnect.web.app import create_app
from tests.conftest import TEST_ADMIN

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def _client(runtime: Runtime, base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(runtime), follow_redirects=False, base_url=base_url)


@pytest.fixture
def client(sqlite_runtime: Runtime) -> Iterator[TestClient]:
    with _client(sqlite_runtime) as test_client:
        yield test_client


def _csp(response: httpx.Response) -> dict[str, str]:
    header = response.headers["content-security-policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in header.split("; ")}


def test_html_pages_carry_csp_with_frame_ancestors_nosniff_and_referrer_policy(client: TestClient) -> None:
    for path in ("/login", "/settings/integrations?location_id=nobody"):
        response = client.get(path, headers=ADMIN)
        assert response.headers["content-type"].startswith("text/html"), path
        policy = _csp(response)
        assert policy["frame-ancestors"].split() == [
            "'self'",
            "https://app.gohighlevel.com",
            "https://*.gohighlevel.com",
            "https://*.leadconnectorhq.com",
        ]
        assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in response.headers  # public URL is http://
    health = client.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"


def test_frame_ancestors_are_a_setting_and_malformed_entries_are_dropped(sqlite_runtime: Runtime) -> None:
    sqlite_runtime.settings.frame_ancestors = "https://app.toplineos.com, https://*.example.org  evil;script-src"
    with _client(sqlite_runtime) as client:
        policy = _csp(client.get("/login"))
    assert policy["frame-ancestors"] == "https://app.toplineos.com https://*.example.org"


def test_https_public_url_adds_hsts_and_secure_cookies(sqlite_runtime: Runtime) -> None:
    sqlite_runtime.settings.public_url = "https://qb.example.com"
    with _client(sqlite_runtime, base_url="https://testserver") as client:
        page = client.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie
        csrf = client.cookies["qbc_login_csrf"]
        login = client.post("/login", data={"token": TEST_ADMIN, "csrf_token": csrf, "next": "/settings/integrations"})
        assert login.status_code == 303
        session_cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("qbc_session="))
        assert "HttpOnly" in session_cookie and "Secure" in session_cookie


def test_api_docs_and_openapi_document_need_the_admin(client: TestClient) -> None:
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/docs").status_code == 401  # as every /api route
    docs = client.get("/api/docs", headers={"Accept": "text/html,application/xhtml+xml"})  # a browser
    assert docs.status_code == 303 and docs.headers["location"].startswith("/login")
    document = client.get("/api/openapi.json", headers=ADMIN)
    assert document.status_code == 200 and "/api/locations/{location_id}" in document.json()["paths"]
    page = client.get("/api/docs", headers=ADMIN)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert "frame-ancestors" in page.headers["content-security-policy"]
    assert client.get("/redoc").status_code == 404


def _login(client: TestClient, token: str) -> httpx.Response:
    client.get("/login")
    return client.post(
        "/login", data={"token": token, "csrf_token": client.cookies["qbc_login_csrf"], "next": "/settings"}
    )


def test_login_is_throttled_per_client_after_repeated_wrong_tokens(sqlite_runtime: Runtime) -> None:
    sqlite_runtime.settings.login_max_failures = 3
    app = create_app(sqlite_runtime)
    with TestClient(app, follow_redirects=False, client=("203.0.113.7", 5000)) as attacker:
        for _ in range(3):
            assert _login(attacker, "wrong").status_code == 401
        refused = _login(attacker, "wrong")
        assert refused.status_code == 429
        retry_after = int(refused.headers["retry-after"])
        assert 0 < retry_after <= sqlite_runtime.settings.login_window_seconds
        assert re.search(r"try again in \d+ minute", refused.text)
        # While throttled, even the right token waits: guessing cannot go on.
        assert _login(attacker, TEST_ADMIN).status_code == 429
    with TestClient(app, follow_redirects=False, client=("198.51.100.2", 5000)) as admin:
        assert _login(admin, TEST_ADMIN).status_code == 303

"""Intuit OAuth 2.0 emulation: authorize, code exchange, refresh rotation, revoke, 3200."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from fastapi.testclient import TestClient

from qbconnect.sandbox.qbo import QboSandbox, create_app

from .qbo_fixtures import BASIC, REDIRECT, SCOPE, Qbo, authorize, connect, exchange, qbo_fixture  # noqa: F401


def test_authorize_redirects_with_code_state_and_realm() -> None:
    sandbox = QboSandbox()
    realm = sandbox.add_company()
    params = authorize(TestClient(create_app(sandbox)), state="xyz")
    assert params["state"] == "xyz" and params["realmId"] == realm and params["code"]


def test_authorize_rejects_missing_accounting_scope_and_unknown_client() -> None:
    sandbox = QboSandbox()
    sandbox.add_company()
    client = TestClient(create_app(sandbox))
    base = {"client_id": BASIC[0], "response_type": "code", "scope": "openid", "redirect_uri": REDIRECT, "state": "s"}
    assert client.get("/connect/oauth2", params=base, follow_redirects=False).status_code == 400
    base.update(scope=SCOPE, client_id="nope")
    assert client.get("/connect/oauth2", params=base, follow_redirects=False).status_code == 400


def test_consent_page_lists_companies_and_connect_posts_the_choice() -> None:
    sandbox = QboSandbox(auto_approve=False)
    sandbox.add_company(name="First Co")
    second = sandbox.add_company(name="Second Co")
    client = TestClient(create_app(sandbox))
    params = {"client_id": BASIC[0], "response_type": "code", "scope": SCOPE, "redirect_uri": REDIRECT, "state": "s9"}
    page = client.get("/connect/oauth2", params=params)
    assert page.status_code == 200 and "First Co" in page.text and "Second Co" in page.text
    assert re.search(r"<button[^>]*>Connect</button>", page.text)
    response = client.post("/connect/oauth2", data={**params, "realm_id": second}, follow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlparse(response.headers["location"]).query)
    assert query["realmId"] == [second] and query["state"] == ["s9"]


def test_code_is_single_use_and_bound_to_redirect_uri() -> None:
    sandbox = QboSandbox()
    sandbox.add_company()
    client = TestClient(create_app(sandbox))
    code = authorize(client)["code"]
    wrong = client.post(
        "/oauth2/v1/tokens/bearer",
        auth=BASIC,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "https://evil/cb"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = authorize(client)["code"]
    first = exchange(client, code)
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["x_refresh_token_expires_in"] == 8726400 and "x_refresh_token_hard_expires_in" not in body
    assert exchange(client, code).json() == {"error": "invalid_grant"}


def test_token_endpoint_requires_basic_client_auth() -> None:
    sandbox = QboSandbox()
    sandbox.add_company()
    client = TestClient(create_app(sandbox))
    code = authorize(client)["code"]
    response = client.post(
        "/oauth2/v1/tokens/bearer",
        auth=("sandbox-client", "wrong"),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
    )
    assert response.status_code == 401 and response.json() == {"error": "invalid_client"}


def test_refresh_rotates_and_old_refresh_token_is_invalid(qbo: Qbo) -> None:
    old = qbo.token["refresh_token"]
    response = qbo.client.post(
        "/oauth2/v1/tokens/bearer",
        auth=BASIC,
        data={"grant_type": "refresh_token", "refresh_token": old},
        headers={"x-include-refresh-token-hard-expires-in": "true"},
    )
    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != old and new["access_token"] != qbo.token["access_token"]
    assert 0 < new["x_refresh_token_hard_expires_in"] <= 5 * 365 * 86400
    again = qbo.client.post(
        "/oauth2/v1/tokens/bearer", auth=BASIC, data={"grant_type": "refresh_token", "refresh_token": old}
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    qbo.token = new
    assert qbo.read("customer", "1").status_code in (200, 400)  # authenticated (400 = not found)


def test_expired_access_token_gets_401_fault_3200(qbo: Qbo) -> None:
    assert qbo.query("select * from Customer").status_code == 200
    qbo.sandbox.expire_access_tokens()
    response = qbo.query("select * from Customer")
    assert response.status_code == 401
    error = response.json()["Fault"]["Error"][0]
    assert error["code"] == "3200" and "AuthenticationFailed" in error["Message"]
    missing = qbo.client.get(
        qbo.url("query"), params={"query": "select * from Item"}, headers={"Accept": "application/json"}
    )
    assert missing.status_code == 401 and missing.json()["Fault"]["type"] == "AuthenticationFault"


def test_token_for_another_company_is_403(qbo: Qbo) -> None:
    other = qbo.sandbox.add_company()
    response = qbo.client.get(
        f"/v3/company/{other}/query", params={"query": "select * from Item"}, headers=qbo.headers()
    )
    assert response.status_code == 403 and response.json()["Fault"]["Error"][0]["code"] == "3100"


def test_revoke_and_revoke_all_make_refresh_invalid_grant(qbo: Qbo) -> None:
    response = qbo.client.post("/v2/oauth2/tokens/revoke", json={"token": qbo.token["refresh_token"]}, auth=BASIC)
    assert response.status_code == 200
    assert qbo.query("select * from Item").status_code == 401
    refresh = qbo.client.post(
        "/oauth2/v1/tokens/bearer",
        auth=BASIC,
        data={"grant_type": "refresh_token", "refresh_token": qbo.token["refresh_token"]},
    )
    assert refresh.json()["error"] == "invalid_grant"
    second = connect(qbo.sandbox)
    qbo.sandbox.revoke_all()
    refresh = second.client.post(
        "/oauth2/v1/tokens/bearer",
        auth=BASIC,
        data={"grant_type": "refresh_token", "refresh_token": second.token["refresh_token"]},
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_next_realm_id_picks_the_company_granted() -> None:
    sandbox = QboSandbox()
    sandbox.add_company()
    second = sandbox.add_company("123145")
    assert connect(sandbox, realm=second).realm == "123145"

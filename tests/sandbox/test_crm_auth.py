"""OAuth install, refresh rotation, token expiry, Version header, location checks, rate limits."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from qbconnect.sandbox.crm import CrmSandbox, create_app
from tests.sandbox import crm_fixtures
from tests.sandbox.crm_fixtures import LOCATION, OTHER_LOCATION, V_CONVERSATIONS, Crm, install, make_crm

crm = crm_fixtures.crm


def _refresh(crm: Crm, refresh_token: str) -> Any:
    return crm.client.post(
        "/oauth/token",
        data={
            "client_id": "crm-client",
            "client_secret": "crm-secret",
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "user_type": "Location",
        },
    )


def test_install_gives_a_location_token(crm: Crm) -> None:
    assert crm.token["userType"] == "Location"
    assert crm.token["locationId"] == LOCATION
    assert crm.token["companyId"] == "agency-1"
    assert crm.token["token_type"] == "Bearer" and crm.token["expires_in"] == 86399


def test_code_is_single_use_and_client_secret_checked() -> None:
    sandbox = CrmSandbox()
    sandbox.add_location(LOCATION)
    client = TestClient(create_app(sandbox))
    response = client.get(
        "/oauth/chooselocation",
        params={"response_type": "code", "client_id": "crm-client", "redirect_uri": "https://a/cb", "state": "xyz"},
        follow_redirects=False,
    )
    assert "state=xyz" in response.headers["location"]
    code = response.headers["location"].split("code=")[1].split("&")[0]
    form = {"client_id": "crm-client", "client_secret": "wrong", "grant_type": "authorization_code", "code": code}
    bad_client = client.post("/oauth/token", data=form)
    assert bad_client.status_code == 401
    assert bad_client.json()["error"] == "invalid_client"
    form["client_secret"] = "crm-secret"
    assert client.post("/oauth/token", data=form).status_code == 200
    again = client.post("/oauth/token", data=form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_refresh_token_dies(crm: Crm) -> None:
    first = _refresh(crm, crm.token["refresh_token"])
    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] != crm.token["refresh_token"]
    assert body["locationId"] == LOCATION
    reused = _refresh(crm, crm.token["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["message"] == "Invalid grant: refresh token is invalid"
    assert _refresh(crm, body["refresh_token"]).status_code == 200


def test_access_token_expires() -> None:
    crm = make_crm(access_token_ttl=60)
    assert crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c").status_code == 200
    crm.sandbox.advance_clock(61)
    expired = crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c")
    assert expired.status_code == 401
    assert expired.json() == {**expired.json(), "statusCode": 401, "error": "Unauthorized"}


def test_manual_install_page_lists_locations_and_installs() -> None:
    sandbox = CrmSandbox(auto_approve=False)
    sandbox.add_location(LOCATION, name="Acme Plumbing")
    client = TestClient(create_app(sandbox))
    params = {"response_type": "code", "client_id": "crm-client", "redirect_uri": "https://a/cb", "scope": "x"}
    page = client.get("/oauth/chooselocation", params=params)
    assert page.status_code == 200 and "Acme Plumbing" in page.text and "Install" in page.text
    done = client.post("/oauth/chooselocation", data={**params, "location_id": LOCATION}, follow_redirects=False)
    assert done.status_code == 302 and "code=" in done.headers["location"]


def test_bearer_and_version_are_required(crm: Crm) -> None:
    path = f"/contacts/search/duplicate?locationId={LOCATION}&email=a@b.c"
    assert crm.client.get(path, headers={"Version": "2021-07-28"}).status_code == 401
    missing = crm.client.get(path, headers={"Authorization": f"Bearer {crm.token['access_token']}"})
    assert missing.status_code == 400 and missing.json()["message"] == "Version header was not found"
    wrong = crm.client.get(path, headers=crm.headers(V_CONVERSATIONS))
    assert wrong.status_code == 400
    send = crm.client.post("/conversations/messages", json={}, headers=crm.headers("2021-07-28"))
    assert send.status_code == 400


def test_other_location_is_forbidden(crm: Crm) -> None:
    response = crm.get("/invoices/", altId=OTHER_LOCATION, altType="location", limit=10, offset=0)
    assert response.status_code == 403
    assert response.json()["message"] == "The token does not have access to this location."


def test_rate_limit_window_headers_and_429() -> None:
    crm = make_crm(rate_limit=3, rate_window_seconds=10)
    seen = []
    for _ in range(3):
        response = crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c")
        assert response.status_code == 200
        seen.append(response.headers["X-RateLimit-Remaining"])
    assert seen == ["2", "1", "0"]
    assert response.headers["X-RateLimit-Max"] == "3"
    assert response.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert response.headers["X-RateLimit-Limit-Daily"] == "200000"
    assert response.headers["X-RateLimit-Daily-Remaining"] == "199997"
    limited = crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c")
    assert limited.status_code == 429
    assert limited.json()["statusCode"] == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    crm.sandbox.advance_clock(10.5)
    assert crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c").status_code == 200
    statuses = [r.status for r in crm.sandbox.request_log if r.location == LOCATION and r.path.startswith("/contacts")]
    assert statuses == [200, 200, 200, 429, 200]


def test_rate_limit_is_per_location() -> None:
    crm = make_crm(rate_limit=1, rate_window_seconds=10)
    crm.sandbox.next_location_id = OTHER_LOCATION
    other = install(crm.sandbox, crm.client)
    assert crm.get("/contacts/search/duplicate", locationId=LOCATION, email="a@b.c").status_code == 200
    headers = {"Authorization": f"Bearer {other['access_token']}", "Version": "2021-07-28"}
    response = crm.client.get(f"/contacts/search/duplicate?locationId={OTHER_LOCATION}&email=a@b.c", headers=headers)
    assert response.status_code == 200

"""SSO inside the CRM: the user context decrypts like CryptoJS, opens one location only, and is refused
when forged, wrongly keyed, truncated, or for a location that has not installed the app."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qbconnect.crm.user_context import (
    UserContextError,
    decrypt,
    decrypt_user_context,
    encrypt,
    evp_bytes_to_key,
)
from qbconnect.db.models import Activity, Location
from qbconnect.runtime import Runtime
from qbconnect.web.app import create_app
from tests.conftest import TEST_ADMIN

SECRET = "shared-secret-for-tests"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}
# ``openssl enc -aes-256-cbc -md md5 -S 0102030405060708 -pass pass:shared-secret-for-tests`` of the JSON
# below, with the "Salted__" header: what ``CryptoJS.AES.encrypt(json, secret)`` produces for that salt.
VECTOR_PLAIN = (
    b'{"userId":"u1","companyId":"c1","role":"admin","type":"location","activeLocation":"loc-A",'
    b'"userName":"Ann","email":"ann@example.com"}'
)
VECTOR = (
    "U2FsdGVkX18BAgMEBQYHCPQS/ncNB8zRsZXYNPZnvnp0wyKuGbEBoki1fGzJHlvcQwrdjX9/CWJCLoyYWzgOVC/61O17M+D52daS6Wth"
    "w405K5mhEOQmlShleVtTGuzrdhd2uSpExC3+ip91oCtzjdHiC9lwy3+VtYFW60PTIwNuXfXmLgVB+4v/VA5PTsP07T8MYxh8mHkx9MkG"
    "AS4zkg=="
)


def context(
    location: str | None = "loc-A", *, company: str = "comp-1", kind: str = "location", user: str = "u1"
) -> str:
    data: dict[str, object] = {
        "userId": user,
        "companyId": company,
        "role": "admin",
        "type": kind,
        "userName": "Ann Example",
        "email": "ann@example.com",
    }
    if location is not None:
        data["activeLocation"] = location
    return encrypt(json.dumps(data).encode(), SECRET)


def test_known_cryptojs_vector_decrypts() -> None:
    assert decrypt(VECTOR, SECRET) == VECTOR_PLAIN
    ctx = decrypt_user_context(VECTOR, SECRET)
    assert (ctx.user_id, ctx.company_id, ctx.type, ctx.active_location) == ("u1", "c1", "location", "loc-A")
    assert encrypt(VECTOR_PLAIN, SECRET, salt=bytes(range(1, 9))) == VECTOR


def test_evp_bytes_to_key_matches_openssl() -> None:
    # ``openssl enc -aes-256-cbc -md md5 -S 0102030405060708 -pass pass:shared-secret-for-tests -P``
    key, iv = evp_bytes_to_key(SECRET.encode(), bytes(range(1, 9)))
    assert len(key) == 32 and len(iv) == 16
    raw = base64.b64decode(VECTOR)
    assert raw[:8] == b"Salted__" and raw[8:16] == bytes(range(1, 9))


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not base64 !!",
        base64.b64encode(b"Salted__12345678").decode(),  # no ciphertext
        VECTOR[:-8],  # truncated
        base64.b64encode(base64.b64decode(VECTOR)[:-5]).decode(),  # not whole blocks
        base64.b64encode(b"Xalted__" + base64.b64decode(VECTOR)[8:]).decode(),  # no salt header
        encrypt(b"not json", SECRET),
        encrypt(b'["a list"]', SECRET),
        encrypt(b'{"userId":"u","companyId":"c","type":"robot"}', SECRET),
        encrypt(b'{"userId":"u","companyId":"c","type":"location"}', SECRET),  # no activeLocation
        encrypt(b'{"companyId":"c","type":"agency"}', SECRET),  # no userId
    ],
    ids=lambda payload: f"len{len(payload)}",
)
def test_payloads_that_are_not_user_contexts_are_refused(payload: str) -> None:
    with pytest.raises(UserContextError):
        decrypt_user_context(payload, SECRET)


def test_wrong_key_is_refused() -> None:
    refused = 0
    for _ in range(20):  # a wrong key gives random padding: refused either at the padding or the JSON
        try:
            decrypt_user_context(context(), "another-secret")
        except UserContextError:
            refused += 1
    assert refused == 20


def _add_location(runtime: Runtime, location_id: str, company_id: str | None, status: str = "installed") -> None:
    with runtime.sessions.begin() as session:
        session.add(
            Location(id=location_id, name=location_id, company_id=company_id, crm_status=status, settings={}, state={})
        )


def _add_activity(runtime: Runtime, location_id: str) -> int:
    with runtime.sessions.begin() as session:
        row = Activity(
            location_id=location_id, kind="invoice", entity_id="inv-1", direction="crm_to_qbo", status="failed"
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture
def sso_runtime(sqlite_runtime: Runtime) -> Runtime:
    sqlite_runtime.settings.crm_shared_secret = SecretStr(SECRET)
    _add_location(sqlite_runtime, "loc-A", "comp-1")
    _add_location(sqlite_runtime, "loc-B", "comp-1")
    _add_location(sqlite_runtime, "loc-C", "comp-2")
    _add_location(sqlite_runtime, "loc-gone", "comp-1", status="uninstalled")
    return sqlite_runtime


@pytest.fixture
def client(sso_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(sso_runtime), follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, payload: str) -> dict[str, object]:
    answer = client.post("/sso/crm", json={"encryptedData": payload})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_a_user_context_opens_location_a_and_only_a(client: TestClient, sso_runtime: Runtime) -> None:
    body = sign_in(client, context("loc-A"))
    assert body == {"location_id": "loc-A", "redirect": "/settings/integrations?location_id=loc-A"}
    page = client.get("/settings/integrations", params={"location_id": "loc-A"})
    assert page.status_code == 200 and "loc-A" in page.text
    assert client.get("/api/locations/loc-A").status_code == 200
    assert client.get("/api/locations/loc-A/settings").status_code == 200
    assert client.get("/api/locations/loc-A/activity").status_code == 200
    # The picker sends a one-location session straight to its location.
    picker = client.get("/settings/integrations")
    assert picker.status_code == 303 and picker.headers["location"].endswith("location_id=loc-A")

    # Location B (same agency) and C (another agency): 403 on every location route.
    row_b = _add_activity(sso_runtime, "loc-B")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    token = csrf.group(1)
    header = {"X-CSRF-Token": token}
    for other in ("loc-B", "loc-C", "loc-gone", "nowhere"):
        assert client.get(f"/api/locations/{other}").status_code == 403, other
        assert client.get(f"/api/locations/{other}/settings").status_code == 403
        assert client.patch(f"/api/locations/{other}/settings", json={}, headers=header).status_code == 403
        assert client.get(f"/api/locations/{other}/activity").status_code == 403
        assert client.post(f"/api/locations/{other}/disconnect", headers=header).status_code == 403
        assert client.get("/settings/integrations", params={"location_id": other}).status_code == 403
        assert client.get("/settings/integrations/sync-log", params={"location_id": other}).status_code == 403
        assert client.get("/connect/quickbooks", params={"location_id": other}).status_code == 403
        form = {"location_id": other, "csrf_token": token}
        assert client.post("/settings/integrations/settings", data=form).status_code == 403
        assert client.post("/settings/integrations/disconnect", data=form).status_code == 403
    assert client.post(f"/api/activity/{row_b}/retry", headers=header).status_code == 403
    # A row of B addressed through A's form is still B's row.
    form = {"location_id": "loc-A", "activity_id": str(row_b), "csrf_token": token}
    assert client.post("/settings/integrations/retry", data=form).status_code == 403
    # Routes that name no location are closed to a location session; the admin-only pages stay admin-only.
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/install/crm").status_code == 303
    # An HTML refusal for the page, JSON for the API.
    refused = client.get("/settings/integrations", params={"location_id": "loc-B"}, headers={"Accept": "text/html"})
    assert refused.status_code == 403 and "its own location" in refused.text


def test_location_session_keeps_csrf_on_writes(client: TestClient) -> None:
    sign_in(client, context("loc-A"))
    assert client.patch("/api/locations/loc-A/settings", json={"sync_invoices": False}).status_code == 403
    page = client.get("/settings/integrations", params={"location_id": "loc-A"})
    found = CSRF.search(page.text)
    assert found is not None
    ok = client.patch(
        "/api/locations/loc-A/settings", json={"sync_invoices": False}, headers={"X-CSRF-Token": found.group(1)}
    )
    assert ok.status_code == 200 and ok.json()["sync_invoices"] is False
    forged = client.post("/settings/integrations/settings", data={"location_id": "loc-A", "csrf_token": "forged"})
    assert forged.status_code == 403


def test_the_admin_still_reaches_every_location(client: TestClient) -> None:
    for location_id in ("loc-A", "loc-B", "loc-C"):
        assert client.get(f"/api/locations/{location_id}", headers=ADMIN).status_code == 200
        page = client.get("/settings/integrations", params={"location_id": location_id}, headers=ADMIN)
        assert page.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        encrypt(json.dumps({"userId": "u", "companyId": "comp-1", "type": "location"}).encode(), "wrong-secret"),
        VECTOR[:40],
        "forged-" + "A" * 40,
        encrypt(b'{"hello": "world"}', SECRET),
    ],
    ids=["wrong-key", "truncated", "forged", "not-a-user-context"],
)
def test_forged_wrongly_keyed_or_truncated_payloads_get_401(client: TestClient, payload: str) -> None:
    answer = client.post("/sso/crm", json={"encryptedData": payload})
    assert answer.status_code == 401
    assert "could not be verified" in answer.json()["detail"]
    assert "qbc_crm_session" not in answer.headers.get("set-cookie", "")
    assert client.get("/api/locations/loc-A").status_code == 401


def test_a_request_without_a_payload_gets_401(client: TestClient) -> None:
    assert client.post("/sso/crm", json={"key": "x"}).status_code == 401
    assert client.post("/sso/crm", content=b"not json", headers={"content-type": "application/json"}).status_code == 401


def test_a_location_that_has_not_installed_the_app_gets_403(client: TestClient) -> None:
    for location_id in ("loc-unknown", "loc-gone"):
        answer = client.post("/sso/crm", json={"encryptedData": context(location_id)})
        assert answer.status_code == 403 and "not installed" in answer.json()["detail"]
    html = client.post("/sso/crm", json={"encryptedData": context("loc-unknown")}, headers={"Accept": "text/html"})
    assert html.status_code == 403 and html.headers["content-type"].startswith("text/html")


def test_users_of_another_company_are_refused(client: TestClient) -> None:
    answer = client.post("/sso/crm", json={"encryptedData": context("loc-C", company="comp-1")})
    assert answer.status_code == 403
    agency = client.post("/sso/crm", json={"encryptedData": context("loc-C", company="comp-1", kind="agency")})
    assert agency.status_code == 403 and "no access" in agency.json()["detail"]


def test_an_agency_user_picks_among_the_company_locations(client: TestClient) -> None:
    body = sign_in(client, context(None, kind="agency"))
    assert body == {"location_id": None, "redirect": "/settings/integrations"}
    picker = client.get("/settings/integrations")
    assert picker.status_code == 200
    assert "loc-A" in picker.text and "loc-B" in picker.text and "loc-C" not in picker.text
    assert client.get("/api/locations/loc-A").status_code == 200
    assert client.get("/api/locations/loc-B").status_code == 200
    assert client.get("/api/locations/loc-C").status_code == 403
    assert client.get("/api/locations/loc-gone").status_code == 403
    # An agency user opening the app inside one of its locations gets that location.
    assert sign_in(client, context("loc-B", kind="agency"))["location_id"] == "loc-B"


def test_sso_is_off_without_a_shared_secret(sqlite_runtime: Runtime) -> None:
    with TestClient(create_app(sqlite_runtime), follow_redirects=False) as client:
        assert client.post("/sso/crm", json={"encryptedData": context()}).status_code == 404
        assert client.get("/sso/crm").status_code == 404


def test_session_cookie_is_httponly_and_lax_over_http(client: TestClient) -> None:
    answer = client.post("/sso/crm", json={"encryptedData": context("loc-A")})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("qbc_crm_session=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie
    assert "ann@example.com" not in cookie and "Ann" not in cookie


def test_session_cookie_is_samesite_none_secure_over_https(sso_runtime: Runtime) -> None:
    sso_runtime.settings.public_url = "https://qb.example.com"
    with TestClient(create_app(sso_runtime), follow_redirects=False, base_url="https://testserver") as client:
        answer = client.post("/sso/crm", json={"encryptedData": context("loc-A")})
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=none" in cookie.lower()
        assert "Partitioned" in cookie
        assert client.get("/api/locations/loc-A").status_code == 200


def test_a_tampered_session_cookie_is_no_session(client: TestClient) -> None:
    sign_in(client, context("loc-A"))
    value = client.cookies["qbc_crm_session"]
    payload, _, signature = value.partition(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["loc"] = "loc-B"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    client.cookies.clear()
    client.cookies.set("qbc_crm_session", f"{forged}.{signature}")
    assert client.get("/api/locations/loc-B").status_code == 401


def test_landing_page_and_framed_login_redirect(client: TestClient) -> None:
    landing = client.get("/sso/crm")
    assert landing.status_code == 200 and '<script src="/static/sso.js"' in landing.text
    policy = landing.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    framed = client.get("/settings/integrations", params={"location_id": "loc-A"}, headers={"Sec-Fetch-Dest": "iframe"})
    assert framed.status_code == 303 and framed.headers["location"] == "/sso/crm"
    script = client.get("/static/sso.js").text
    assert "REQUEST_USER_DATA" in script and "REQUEST_USER_DATA_RESPONSE" in script and "/sso/crm" in script


def test_signing_in_again_keeps_the_session_and_its_csrf_token(client: TestClient) -> None:
    """Every framed page asks the CRM again; the same user in the same location keeps the session, so the
    form already on the page still posts (the browser test found the settings form refused otherwise)."""
    first = client.post("/sso/crm", json={"encryptedData": context("loc-A")})
    assert "set-cookie" in first.headers
    token = CSRF.search(client.get("/settings/integrations", params={"location_id": "loc-A"}).text)
    assert token is not None
    again = client.post("/sso/crm", json={"encryptedData": context("loc-A")})
    assert again.status_code == 200 and "set-cookie" not in again.headers
    saved = client.post(
        "/settings/integrations/settings",
        data={"location_id": "loc-A", "csrf_token": token.group(1), "item_strategy": "match_or_create"},
    )
    assert saved.status_code == 303
    switched = client.post("/sso/crm", json={"encryptedData": context("loc-B")})
    assert switched.status_code == 200 and "set-cookie" in switched.headers  # another location: a new session

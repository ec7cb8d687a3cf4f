"""HighLevel OAuth: install URL, code exchange and refresh (form-encoded, user_type=Location)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from qbconnect.crm import oauth
from qbconnect.errors import AuthError, PermanentError, TransientError
from tests.support.reference import reference_dir

TOKEN_URL = "https://services.leadconnectorhq.com/oauth/token"
NOW = datetime(2025, 1, 28, 14, 0, tzinfo=UTC)
TOKEN_BODY = {
    "access_token": "ab12dc0ae1234a7898f9ff06d4f69gh",
    "token_type": "Bearer",
    "expires_in": 86399,
    "refresh_token": "xy34dc0ae1234a4858f9ff06d4f66ba",
    "scope": "contacts.readonly contacts.write",
    "userType": "Location",
    "locationId": "l1C08ntBrFjLS0elLIYU",
    "companyId": "c0mpany",
    "userId": "u1",
}


def _token_spec() -> dict[str, object]:
    spec = json.loads((reference_dir("highlevel", "openapi", "v2", "apps") / "oauth.json").read_text())
    schema = spec["components"]["schemas"]["GetAccessCodebodyDto"]
    assert isinstance(schema, dict)
    return schema


def _form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_install_url_white_label() -> None:
    url = oauth.install_url(
        auth_url="https://marketplace.leadconnectorhq.com/v2/oauth/chooselocation",
        client_id="cid",
        redirect_uri="https://app.example.com/oauth/crm/callback",
        scopes=["contacts.readonly", "conversations/message.write"],
        state="s1",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "marketplace.leadconnectorhq.com",
        "/v2/oauth/chooselocation",
    )
    query = parse_qs(parts.query)
    assert query == {
        "response_type": ["code"],
        "redirect_uri": ["https://app.example.com/oauth/crm/callback"],
        "client_id": ["cid"],
        "scope": ["contacts.readonly conversations/message.write"],
        "state": ["s1"],
    }
    assert "+" not in parts.query  # spaces as %20, as in the documented template


def test_install_url_keeps_existing_query_and_omits_absent_state() -> None:
    url = oauth.install_url(
        auth_url="https://x.example/v2/oauth/chooselocation?loginWindowOpenMode=self",
        client_id="cid",
        redirect_uri="https://r",
        scopes=oauth.SCOPES,
    )
    query = parse_qs(urlsplit(url).query)
    assert query["loginWindowOpenMode"] == ["self"]
    assert "state" not in query
    assert query["scope"] == [" ".join(oauth.SCOPES)]


def test_scopes_exist_in_scopes_md() -> None:
    text = (reference_dir("highlevel", "docs") / "Scopes.md").read_text()
    documented = set(re.findall(r"^\|\s*([a-z][a-z/.-]*\.(?:readonly|write))\s*\|", text, flags=re.MULTILINE))
    for scope in oauth.SCOPES:
        assert scope in documented, scope
    assert len(set(oauth.SCOPES)) == len(oauth.SCOPES)


@respx.mock
def test_exchange_code_request_and_result() -> None:
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=TOKEN_BODY))
    with httpx.Client() as http:
        tokens = oauth.exchange_code(
            http,
            token_url=TOKEN_URL,
            client_id="cid",
            client_secret="secret",
            code="the-code",
            redirect_uri="https://app.example.com/oauth/crm/callback",
            now=NOW,
        )
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = _form(request)
    assert form == {
        "client_id": "cid",
        "client_secret": "secret",
        "grant_type": "authorization_code",
        "code": "the-code",
        "user_type": "Location",
        "redirect_uri": "https://app.example.com/oauth/crm/callback",
    }
    schema = _token_spec()
    assert set(form) <= set(schema["properties"])  # type: ignore[call-overload]
    assert set(schema["required"]) <= set(form)  # type: ignore[call-overload]
    assert tokens == oauth.CrmTokenSet(
        access_token=TOKEN_BODY["access_token"],  # type: ignore[arg-type]
        refresh_token=TOKEN_BODY["refresh_token"],  # type: ignore[arg-type]
        expires_at=NOW + timedelta(seconds=86399),
        location_id="l1C08ntBrFjLS0elLIYU",
        company_id="c0mpany",
        scope="contacts.readonly contacts.write",
    )


@respx.mock
def test_exchange_code_without_redirect_uri() -> None:
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=TOKEN_BODY))
    with httpx.Client() as http:
        oauth.exchange_code(
            http, token_url=TOKEN_URL, client_id="c", client_secret="s", code="x", redirect_uri=None, now=NOW
        )
    assert "redirect_uri" not in _form(route.calls.last.request)


@respx.mock
def test_refresh_request_and_rotation() -> None:
    rotated = {**TOKEN_BODY, "access_token": "new-access", "refresh_token": "new-refresh", "expires_in": 3600}
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=rotated))
    with httpx.Client() as http:
        tokens = oauth.refresh(
            http, token_url=TOKEN_URL, client_id="cid", client_secret="secret", refresh_token="old", now=NOW
        )
    assert _form(route.calls.last.request) == {
        "client_id": "cid",
        "client_secret": "secret",
        "grant_type": "refresh_token",
        "refresh_token": "old",
        "user_type": "Location",
    }
    assert tokens.access_token == "new-access"
    assert tokens.refresh_token == "new-refresh"
    assert tokens.expires_at == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant", "error_description": "Invalid grant: refresh token is invalid"}),
        (401, {"statusCode": 401, "message": "Invalid token", "error": "Unauthorized"}),
        (400, {"statusCode": 400, "message": "Bad Request"}),
    ],
)
@respx.mock
def test_refresh_refused_is_auth_error(status: int, body: dict[str, object]) -> None:
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(status, json=body))
    with httpx.Client() as http, pytest.raises(AuthError) as info:
        oauth.refresh(http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="rt-secret-1", now=NOW)
    assert route.call_count == 1  # never retried: the refresh token may already be spent
    assert "Reconnect" in info.value.message
    assert "rt-secret-1" not in info.value.message


@respx.mock
def test_invalid_grant_code_is_reported() -> None:
    respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(400, json={"error": "invalid_grant", "error_description": "code expired"})
    )
    with httpx.Client() as http, pytest.raises(AuthError) as info:
        oauth.exchange_code(
            http, token_url=TOKEN_URL, client_id="c", client_secret="s", code="x", redirect_uri=None, now=NOW
        )
    assert info.value.code == "invalid_grant"
    assert "code expired" in info.value.message


@pytest.mark.parametrize("status", [429, 500, 503])
@respx.mock
def test_token_endpoint_outage_is_transient(status: int) -> None:
    route = respx.post(TOKEN_URL).mock(return_value=httpx.Response(status, text="oops"))
    with httpx.Client() as http, pytest.raises(TransientError):
        oauth.refresh(http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="r", now=NOW)
    assert route.call_count == 1


@respx.mock
def test_token_endpoint_timeout_is_transient() -> None:
    respx.post(TOKEN_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with httpx.Client() as http, pytest.raises(TransientError):
        oauth.refresh(http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="r", now=NOW)


@respx.mock
def test_other_statuses_and_tokenless_answers_are_permanent() -> None:
    respx.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(422, json={"statusCode": 422, "message": ["user_type must be valid"]}),
            httpx.Response(200, json={"token_type": "Bearer"}),
        ]
    )
    with httpx.Client() as http:
        with pytest.raises(PermanentError) as info:
            oauth.refresh(http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="r", now=NOW)
        assert "user_type must be valid" in info.value.message
        with pytest.raises(PermanentError):
            oauth.refresh(http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="r", now=NOW)


def test_naive_now_is_refused() -> None:
    with httpx.Client() as http, pytest.raises(ValueError):
        oauth.refresh(
            http,
            token_url=TOKEN_URL,
            client_id="c",
            client_secret="s",
            refresh_token="r",
            now=datetime(2025, 1, 1),
        )

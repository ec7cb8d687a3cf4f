"""Intuit OAuth: authorize URL, code exchange, refresh (rotation, hard expiry), revoke, errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from qbconnect.errors import AuthError, PermanentError, TransientError
from qbconnect.qbo import oauth
from qbconnect.qbo.oauth import SCOPE_ACCOUNTING, QboTokenSet
from tests.support.reference import reference_dir

TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
AUTH_URL = "https://appcenter.intuit.com/connect/oauth2"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BASIC = "Basic " + base64.b64encode(b"cid:csecret").decode()


def oauth_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reference_dir("qbo", "examples", "oauth", name).read_text())
    return data


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def test_discovery_example_matches_the_endpoints_we_default_to() -> None:
    discovery = oauth_example("dotnet-sdk-test-discovery.json")
    assert discovery["authorization_endpoint"] == AUTH_URL
    assert discovery["token_endpoint"] == TOKEN_URL
    assert discovery["revocation_endpoint"] == REVOKE_URL
    assert "client_secret_basic" in discovery["token_endpoint_auth_methods_supported"]


def test_authorize_url() -> None:
    url = oauth.authorize_url(auth_url=AUTH_URL, client_id="cid", redirect_uri="https://app.example/cb", state="s t")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH_URL
    assert parse_qs(parts.query) == {
        "client_id": ["cid"],
        "response_type": ["code"],
        "scope": [SCOPE_ACCOUNTING],
        "redirect_uri": ["https://app.example/cb"],
        "state": ["s t"],
    }
    assert SCOPE_ACCOUNTING == "com.intuit.quickbooks.accounting"


def test_authorize_url_keeps_an_existing_query() -> None:
    url = oauth.authorize_url(
        auth_url="http://127.0.0.1:9/authorize?tenant=x", client_id="c", redirect_uri="r", state="s"
    )
    assert parse_qs(urlsplit(url).query)["tenant"] == ["x"]


def test_exchange_code_with_example_response(http: httpx.Client) -> None:
    example = oauth_example("dotnet-sdk-test-success_refreshtoken_response.json")
    with respx.mock:
        route = respx.post(TOKEN_URL).respond(200, json=example, headers={"intuit_tid": "tid-oauth"})
        tokens = oauth.exchange_code(
            http,
            token_url=TOKEN_URL,
            client_id="cid",
            client_secret="csecret",
            code="the-code",
            redirect_uri="https://app.example/cb",
            now=NOW,
        )
    request = route.calls.last.request
    assert request.headers["Authorization"] == BASIC
    assert request.headers["x-include-refresh-token-hard-expires-in"] == "true"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["authorization_code"],
        "code": ["the-code"],
        "redirect_uri": ["https://app.example/cb"],
    }
    assert tokens.access_token == example["access_token"]
    assert tokens.refresh_token == example["refresh_token"]
    assert tokens.access_expires_at == NOW + timedelta(seconds=3600)
    assert tokens.refresh_expires_at == NOW + timedelta(seconds=15552000)
    assert tokens.refresh_hard_expires_at is None  # the example predates the hard-expiry field


def test_refresh_reads_hard_expiry_and_rotated_token(http: httpx.Client) -> None:
    example = oauth_example("dotnet-sdk-test-success_refreshtoken_response.json")
    answer = {**example, "refresh_token": "rotated", "x_refresh_token_hard_expires_in": 157680000}
    with respx.mock:
        route = respx.post(TOKEN_URL).respond(200, json=answer)
        tokens = oauth.refresh(
            http, token_url=TOKEN_URL, client_id="cid", client_secret="csecret", refresh_token="old", now=NOW
        )
    request = route.calls.last.request
    assert request.headers["x-include-refresh-token-hard-expires-in"] == "true"
    assert request.headers["Authorization"] == BASIC
    assert parse_qs(request.content.decode()) == {"grant_type": ["refresh_token"], "refresh_token": ["old"]}
    assert tokens.refresh_token == "rotated"
    assert tokens.refresh_hard_expires_at == NOW + timedelta(seconds=157680000)


def test_refresh_without_new_refresh_token_keeps_the_old_one(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(200, json={"access_token": "a2", "expires_in": "3600", "token_type": "bearer"})
        tokens = oauth.refresh(
            http, token_url=TOKEN_URL, client_id="cid", client_secret="csecret", refresh_token="keep", now=NOW
        )
    assert tokens == QboTokenSet("a2", "keep", NOW + timedelta(hours=1), None, None)


def test_token_set_repr_hides_tokens() -> None:
    tokens = QboTokenSet("secret-access", "secret-refresh", NOW, None, None)
    assert "secret" not in repr(tokens)


def _refresh(http: httpx.Client) -> QboTokenSet:
    return oauth.refresh(
        http, token_url=TOKEN_URL, client_id="cid", client_secret="csecret", refresh_token="rt", now=NOW
    )


def test_invalid_grant_is_an_auth_error(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(400, json={"error": "invalid_grant"})
        with pytest.raises(AuthError) as caught:
            _refresh(http)
    assert caught.value.message == "QuickBooks refused the saved authorization (invalid_grant); reconnect"
    assert caught.value.code == "invalid_grant"


def test_failure_example_is_a_permanent_error(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(400, json=oauth_example("dotnet-sdk-test-failure_token_response.json"))
        with pytest.raises(PermanentError) as caught:
            _refresh(http)
    assert caught.value.code == "error"
    assert "error_description" in caught.value.message


def test_invalid_client_is_an_auth_error(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(401, json={"error": "invalid_client"})
        with pytest.raises(AuthError) as caught:
            _refresh(http)
    assert caught.value.code == "invalid_client"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_server_side_failures_are_transient(http: httpx.Client, status: int) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(status, text="down")
        with pytest.raises(TransientError):
            _refresh(http)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_network_failures_are_transient(http: httpx.Client, exc: Exception) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).mock(side_effect=exc)
        with pytest.raises(TransientError) as caught:
            _refresh(http)
    assert caught.value.code == "network"


def test_answer_without_access_token_is_permanent(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(200, json={"token_type": "bearer"})
        with pytest.raises(PermanentError):
            _refresh(http)


def test_naive_now_is_refused(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(TOKEN_URL).respond(200, json={"access_token": "a", "refresh_token": "r", "expires_in": 3600})
        with pytest.raises(ValueError, match="timezone"):
            oauth.refresh(
                http, token_url=TOKEN_URL, client_id="c", client_secret="s", refresh_token="r", now=datetime(2026, 1, 1)
            )


def test_tokens_are_never_logged(http: httpx.Client) -> None:
    with respx.mock, capture_logs() as logs:
        respx.post(TOKEN_URL).respond(
            200,
            json={"access_token": "AT-SECRET", "refresh_token": "RT-SECRET", "expires_in": 3600},
            headers={"intuit_tid": "t-1"},
        )
        oauth.refresh(
            http, token_url=TOKEN_URL, client_id="cid", client_secret="csecret", refresh_token="RT-OLD", now=NOW
        )
    assert logs, "the token call is logged"
    assert logs[0]["intuit_tid"] == "t-1"
    text = repr(logs)
    for secret in ("AT-SECRET", "RT-SECRET", "RT-OLD", "csecret"):
        assert secret not in text


def test_revoke_sends_json_token_with_basic_auth(http: httpx.Client) -> None:
    with respx.mock:
        route = respx.post(REVOKE_URL).respond(200)
        oauth.revoke(http, revoke_url=REVOKE_URL, client_id="cid", client_secret="csecret", token="rt")
    request = route.calls.last.request
    assert request.headers["Authorization"] == BASIC
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"token": "rt"}


def test_revoke_refused_is_auth_error_and_outage_is_transient(http: httpx.Client) -> None:
    with respx.mock:
        respx.post(REVOKE_URL).respond(400, json={"error": "invalid_request"})
        with pytest.raises(AuthError) as caught:
            oauth.revoke(http, revoke_url=REVOKE_URL, client_id="cid", client_secret="csecret", token="rt")
        assert caught.value.code == "invalid_request"
    with respx.mock:
        respx.post(REVOKE_URL).respond(502)
        with pytest.raises(TransientError):
            oauth.revoke(http, revoke_url=REVOKE_URL, client_id="cid", client_secret="csecret", token="rt")

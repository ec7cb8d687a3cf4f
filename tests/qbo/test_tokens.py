"""Token sources: refresh before expiry, refresh once per rejected token, persist rotated tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import respx

from qbconnect.qbo.oauth import QboTokenSet
from qbconnect.qbo.tokens import RefreshingTokenSource, StaticTokenSource, TokenSource

TOKEN_URL = "https://oauth.example/tokens"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_source(clock: Clock, saved: list[QboTokenSet]) -> RefreshingTokenSource:
    return RefreshingTokenSource(
        http=httpx.Client(),
        token_url=TOKEN_URL,
        client_id="cid",
        client_secret="cs",
        tokens=QboTokenSet("at-1", "rt-1", NOW + timedelta(hours=1), None, None),
        on_refresh=saved.append,
        clock=clock,
    )


def token_answer(n: int) -> dict[str, object]:
    return {"access_token": f"at-{n}", "refresh_token": f"rt-{n}", "expires_in": 3600}


def test_valid_token_is_used_without_a_call() -> None:
    saved: list[QboTokenSet] = []
    source: TokenSource = make_source(Clock(NOW), saved)
    with respx.mock:
        route = respx.post(TOKEN_URL).respond(200, json=token_answer(2))
        assert source.access_token() == "at-1"
    assert not route.called
    assert saved == []


def test_token_close_to_expiry_is_refreshed_and_persisted() -> None:
    clock = Clock(NOW)
    saved: list[QboTokenSet] = []
    source = make_source(clock, saved)
    clock.now = NOW + timedelta(minutes=56)
    with respx.mock:
        route = respx.post(TOKEN_URL).respond(200, json=token_answer(2))
        assert source.access_token() == "at-2"
        assert source.access_token() == "at-2"
    assert route.call_count == 1
    assert parse_qs(route.calls.last.request.content.decode())["refresh_token"] == ["rt-1"]
    assert [t.refresh_token for t in saved] == ["rt-2"]
    assert source.tokens.access_expires_at == clock.now + timedelta(hours=1)


def test_force_refresh_only_once_per_rejected_token() -> None:
    saved: list[QboTokenSet] = []
    source = make_source(Clock(NOW), saved)
    with respx.mock:
        route = respx.post(TOKEN_URL).respond(200, json=token_answer(2))
        assert source.force_refresh("at-1") == "at-2"
        # a second worker that was also refused "at-1" gets the new token without another refresh
        assert source.force_refresh("at-1") == "at-2"
    assert route.call_count == 1
    assert len(saved) == 1


def test_static_source() -> None:
    source: TokenSource = StaticTokenSource("fixed")
    assert source.access_token() == "fixed"
    assert source.force_refresh("fixed") == "fixed"

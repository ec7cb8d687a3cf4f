"""The real CrmClient, OAuth and webhook code against the CRM emulator (qbconnect.sandbox.crm)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from qbconnect.crm import oauth
from qbconnect.crm.client import CrmClient
from qbconnect.crm.events import parse_event, within_replay_window
from qbconnect.crm.webhooks import verify_webhook
from qbconnect.errors import AuthError
from qbconnect.sandbox.crm import CrmSandbox, create_app
from qbconnect.sandbox.server import serve_in_thread

API = "http://testserver"
REDIRECT = "https://qbconnect.example/oauth/crm/callback"


class SandboxTokens:
    """A token source that renews through the real oauth.refresh against the emulator."""

    def __init__(self, http: TestClient, sb: CrmSandbox, tokens: oauth.CrmTokenSet) -> None:
        self.http = http
        self.sb = sb
        self.tokens = tokens
        self.refreshes = 0

    def access_token(self) -> str:
        return self.tokens.access_token

    def force_refresh(self, rejected_token: str) -> str:
        if rejected_token == self.tokens.access_token:
            self.tokens = oauth.refresh(
                self.http,
                token_url=f"{API}/oauth/token",
                client_id=self.sb.client_id,
                client_secret=self.sb.client_secret,
                refresh_token=self.tokens.refresh_token,
                now=self.sb.now(),
            )
            self.refreshes += 1
        return self.tokens.access_token


@pytest.fixture(scope="module")
def sb() -> Iterator[CrmSandbox]:
    sandbox = CrmSandbox()  # made once: it generates its signing keys
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="module")
def http(sb: CrmSandbox) -> Iterator[TestClient]:
    with TestClient(create_app(sb)) as client:
        yield client


@pytest.fixture
def loc(sb: CrmSandbox) -> str:
    """A fresh location per test; the next install grants it."""
    location_id = sb.add_location(name="Sandbox Plumbing")
    sb.next_location_id = location_id
    return location_id


def _install(http: TestClient, sb: CrmSandbox) -> oauth.CrmTokenSet:
    url = oauth.install_url(
        auth_url=f"{API}/v2/oauth/chooselocation",
        client_id=sb.client_id,
        redirect_uri=REDIRECT,
        scopes=oauth.SCOPES,
        state="st-1",
    )
    answer = http.get(url, follow_redirects=False)
    assert answer.status_code == 302
    callback = urlsplit(answer.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == REDIRECT
    query = parse_qs(callback.query)
    assert query["state"] == ["st-1"]
    return oauth.exchange_code(
        http,
        token_url=f"{API}/oauth/token",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        code=query["code"][0],
        redirect_uri=REDIRECT,
        now=sb.now(),
    )


@pytest.fixture
def tokens(http: TestClient, sb: CrmSandbox, loc: str) -> SandboxTokens:
    return SandboxTokens(http, sb, _install(http, sb))


@pytest.fixture
def crm(http: TestClient, tokens: SandboxTokens, loc: str) -> CrmClient:
    return CrmClient(location_id=loc, api_base=API, tokens=tokens, http=http, sleep=lambda _: None)


def test_install_gives_a_location_token(tokens: SandboxTokens, sb: CrmSandbox, loc: str) -> None:
    assert tokens.tokens.location_id == loc
    assert tokens.tokens.expires_at > sb.now() + timedelta(hours=23)
    assert tokens.tokens.scope is not None and "contacts.write" in tokens.tokens.scope


def test_spent_code_and_refresh_token_are_auth_errors(http: TestClient, sb: CrmSandbox, loc: str) -> None:
    first = _install(http, sb)
    second = oauth.refresh(
        http,
        token_url=f"{API}/oauth/token",
        client_id=sb.client_id,
        client_secret=sb.client_secret,
        refresh_token=first.refresh_token,
        now=sb.now(),
    )
    assert second.refresh_token != first.refresh_token
    with pytest.raises(AuthError):
        oauth.refresh(
            http,
            token_url=f"{API}/oauth/token",
            client_id=sb.client_id,
            client_secret=sb.client_secret,
            refresh_token=first.refresh_token,  # rotated away
            now=sb.now(),
        )


def test_contacts_round_trip(crm: CrmClient, sb: CrmSandbox) -> None:
    contact, is_new = crm.upsert_contact(
        {"email": "alex@example.com", "firstName": "Alex", "companyName": "ABC Corp", "source": "QuickBooks"}
    )
    assert is_new
    again, is_new_again = crm.upsert_contact({"email": "alex@example.com", "lastName": "Doe"})
    assert not is_new_again and again["id"] == contact["id"]
    found = crm.find_duplicate_contact(email="ALEX@example.com")
    assert found is not None and found["id"] == contact["id"]
    assert crm.find_duplicate_contact(email="nobody@example.com") is None
    updated = crm.update_contact(contact["id"], {"firstName": "Alexandra", "companyName": "Ignored Co"})
    assert updated["firstName"] == "Alexandra"
    assert "quickbooks" in crm.add_tags(contact["id"], ["quickbooks"])
    fetched = crm.get_contact(contact["id"])
    assert fetched is not None and "quickbooks" in fetched["tags"]
    created = crm.create_contact({"email": "sam@example.com", "firstName": "Sam"})
    assert crm.get_contact(created["id"]) is not None
    assert crm.get_contact("does-not-exist") is None


def test_invoices_read(crm: CrmClient, sb: CrmSandbox, loc: str) -> None:
    contact = sb.create_contact(loc, email="pat@example.com", firstName="Pat")
    ids = []
    for n in range(3):
        invoice = sb.create_invoice(
            loc, contact_id=contact["id"], items=[{"name": f"Job {n}", "amount": Decimal("100.00"), "qty": 1}]
        )
        sb.send_invoice(invoice["_id"])
        ids.append(invoice["_id"])
    fetched = crm.get_invoice(ids[0])
    assert fetched is not None and fetched["status"] == "sent"
    assert Decimal(str(fetched["total"])) == Decimal("100.00")
    page, total = crm.list_invoices(limit=2, status="sent")
    assert total == 3 and len(page) == 2
    assert sorted(inv["_id"] for inv in crm.iter_invoices(limit=2)) == sorted(ids)
    assert crm.get_invoice("000000000000000000000000") is None


def test_payments_read(crm: CrmClient, sb: CrmSandbox, loc: str) -> None:
    contact = sb.create_contact(loc, email="kim@example.com", firstName="Kim")
    order = sb.create_order(
        loc,
        contact_id=contact["id"],
        source_type="funnel",
        source_sub_type="two_step_order_form",
        items=[{"name": "Course", "amount": Decimal("49.00")}],
        subscription=True,
    )
    fetched = crm.get_order(order["_id"])
    assert fetched is not None and fetched["status"] == "completed"
    orders, total = crm.list_orders()
    assert total == 1 and orders[0]["_id"] == order["_id"]
    txns = list(crm.iter_transactions(start_at=sb.now() - timedelta(days=1)))
    assert len(txns) == 1
    txn = crm.get_transaction(txns[0]["_id"])
    assert txn is not None and txn["entityId"] == order["_id"]
    subscription = crm.get_subscription(order["subscriptionId"])
    assert subscription is not None and subscription["status"] == "active"
    assert crm.get_order("000000000000000000000000") is None


def test_send_review_request(crm: CrmClient, sb: CrmSandbox, loc: str) -> None:
    contact = sb.create_contact(loc, email="lee@example.com", phone="+14155550100", firstName="Lee")
    crm.send_message(contact_id=contact["id"], channel="Email", message="Review us", subject="Thanks")
    crm.send_message(contact_id=contact["id"], channel="SMS", message="Review us: https://r")
    sent = sb.messages(loc)
    assert len(sent) == 2


def test_expired_token_is_refreshed_once(crm: CrmClient, sb: CrmSandbox, tokens: SandboxTokens) -> None:
    sb.advance_clock(86400 + 60)
    assert crm.find_duplicate_contact(email="none@example.com") is None
    assert tokens.refreshes == 1
    assert crm.calls == 2


def test_rate_limit_is_waited_out(
    http: TestClient, tokens: SandboxTokens, sb: CrmSandbox, loc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sb.limiter, "limit", 2)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        sb.advance_clock(seconds)

    crm = CrmClient(location_id=loc, api_base=API, tokens=tokens, http=http, sleep=sleep)
    for _ in range(5):
        crm.find_duplicate_contact(email="x@example.com")
    assert waits, "the emulator never answered 429"
    assert crm.last_rate_limit is not None and crm.last_rate_limit.max == 2


def test_emitted_webhooks_verify_and_parse(sb: CrmSandbox, loc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    done = threading.Event()
    receiver = FastAPI()

    @receiver.post("/webhooks/crm")
    async def hook(request: Request) -> dict[str, Any]:
        received.append((await request.body(), dict(request.headers)))
        done.set()
        return {"ok": True}

    server = serve_in_thread(receiver)
    try:
        sb.flush_webhooks(drop=True)  # earlier tests' events
        monkeypatch.setattr(sb, "webhook_url", f"{server.base_url}/webhooks/crm")
        monkeypatch.setattr(sb, "sign_legacy_rsa", True)
        contact = sb.create_contact(loc, email="webhook@example.com")
        invoice = sb.create_invoice(loc, contact_id=contact["id"], items=[{"name": "X", "amount": "10", "qty": 1}])
        sb.send_invoice(invoice["_id"])
        assert sb.flush_webhooks() == 3
    finally:
        server.stop()
    assert len(received) == 3
    events = []
    for body, headers in received:
        assert verify_webhook(body, headers, ed25519_key=sb.webhook_public_key, rsa_key_pem=None)
        assert verify_webhook(body, headers, ed25519_key=None, rsa_key_pem=sb.legacy_rsa_public_key_pem)
        assert not verify_webhook(body + b" ", headers, ed25519_key=sb.webhook_public_key, rsa_key_pem=None)
        event = parse_event(body)
        assert within_replay_window(event, now=sb.now())
        events.append(event)
    assert [e.type for e in events] == ["ContactCreate", "InvoiceCreate", "InvoiceSent"]
    assert {e.location_id for e in events} == {loc}
    assert events[2].entity_kind == "invoice" and events[2].entity_id == invoice["_id"]
    assert len({e.event_id for e in events}) == 3

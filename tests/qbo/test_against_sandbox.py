"""The real QBO client and OAuth functions, unchanged, against the in-process QuickBooks emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from qbconnect.errors import AuthError
from qbconnect.qbo import oauth
from qbconnect.qbo.client import QboClient, escape_query_value
from qbconnect.qbo.faults import AuthenticationFailed, DuplicateName, StaleObject, Throttled
from qbconnect.qbo.oauth import QboTokenSet
from qbconnect.qbo.tokens import RefreshingTokenSource
from qbconnect.qbo.webhooks import parse_events, verify_signature
from qbconnect.sandbox.qbo import QboSandbox, create_app

BASE = "http://testserver"
REDIRECT = "https://app.example/oauth/quickbooks/callback"


class Connection:
    def __init__(self, sandbox: QboSandbox, http: TestClient) -> None:
        self.sandbox = sandbox
        self.http = http
        self.realm_id = sandbox.add_company(name="Integration Co")
        self.saved: list[QboTokenSet] = []
        self.sleeps: list[float] = []
        first = self.connect()
        self.tokens = RefreshingTokenSource(
            http=http,
            token_url=f"{BASE}/oauth2/v1/tokens/bearer",
            client_id=sandbox.client_id,
            client_secret=sandbox.client_secret,
            tokens=first,
            on_refresh=self.saved.append,
        )
        self.client = QboClient(
            realm_id=self.realm_id,
            api_base=BASE,
            tokens=self.tokens,
            http=http,
            sleep=self.sleeps.append,
            throttle_wait=0.01,
            retry_wait=0.01,
        )

    def connect(self) -> QboTokenSet:
        self.sandbox.next_realm_id = self.realm_id
        url = oauth.authorize_url(
            auth_url=f"{BASE}/connect/oauth2", client_id=self.sandbox.client_id, redirect_uri=REDIRECT, state="st-1"
        )
        answer = self.http.get(url, follow_redirects=False)
        assert answer.status_code == 302
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["state"] == ["st-1"]
        assert query["realmId"] == [self.realm_id]
        return oauth.exchange_code(
            self.http,
            token_url=f"{BASE}/oauth2/v1/tokens/bearer",
            client_id=self.sandbox.client_id,
            client_secret=self.sandbox.client_secret,
            code=query["code"][0],
            redirect_uri=REDIRECT,
            now=datetime.now(UTC),
        )


@pytest.fixture
def conn() -> Iterator[Connection]:
    sandbox = QboSandbox()
    with TestClient(create_app(sandbox)) as http:
        yield Connection(sandbox, http)


def test_oauth_flow_reads_hard_expiry(conn: Connection) -> None:
    tokens = conn.tokens.tokens
    assert tokens.refresh_hard_expires_at is not None
    assert tokens.refresh_hard_expires_at > datetime.now(UTC) + timedelta(days=365)
    assert tokens.refresh_expires_at is not None
    assert conn.client.company_info()["CompanyName"] == "Integration Co"
    assert "SalesFormsPrefs" in conn.client.preferences()


def test_customer_lifecycle(conn: Connection) -> None:
    qbo = conn.client
    created = qbo.create(
        "Customer",
        {"DisplayName": "Jane O'Hara", "PrimaryEmailAddr": {"Address": "jane@example.com"}},
        request_id="cust-1",
    )
    assert created["Id"]
    found = qbo.query(f"select * from Customer where DisplayName = '{escape_query_value('Jane O' + chr(39) + 'Hara')}'")
    assert [c["Id"] for c in found] == [created["Id"]]
    updated = qbo.update(
        "Customer", {"Id": created["Id"], "SyncToken": created["SyncToken"], "GivenName": "Jane"}, request_id="cust-2"
    )
    assert updated["GivenName"] == "Jane"
    assert updated["DisplayName"] == "Jane O'Hara"  # sparse: untouched
    assert qbo.read("Customer", created["Id"])["SyncToken"] == updated["SyncToken"]
    with pytest.raises(StaleObject):
        qbo.update(
            "Customer", {"Id": created["Id"], "SyncToken": created["SyncToken"], "Notes": "x"}, request_id="cust-3"
        )
    with pytest.raises(DuplicateName):
        qbo.create("Customer", {"DisplayName": "Jane O'Hara"}, request_id="cust-4")


def test_same_requestid_replays_instead_of_duplicating(conn: Connection) -> None:
    qbo = conn.client
    first = qbo.create("Customer", {"DisplayName": "Replay Person"}, request_id="replay-1")
    again = qbo.create("Customer", {"DisplayName": "Replay Person"}, request_id="replay-1")
    assert again["Id"] == first["Id"]
    assert qbo.count("select count(*) from Customer where DisplayName = 'Replay Person'") == 1


def test_lost_response_is_retried_with_the_same_requestid(conn: Connection) -> None:
    conn.sandbox.inject_fault("lost_response", realm_id=conn.realm_id, method="POST")
    created = conn.client.create("Customer", {"DisplayName": "Lost Answer"}, request_id="lost-1")
    assert conn.client.count("select count(*) from Customer where DisplayName = 'Lost Answer'") == 1
    assert created["DisplayName"] == "Lost Answer"
    assert len(conn.sleeps) == 1


def test_injected_throttle_and_server_errors_are_retried(conn: Connection) -> None:
    conn.sandbox.inject_fault("429", realm_id=conn.realm_id)
    conn.sandbox.inject_fault("503", realm_id=conn.realm_id)
    assert conn.client.company_info()["CompanyName"] == "Integration Co"
    assert len(conn.sleeps) == 2
    conn.sandbox.inject_fault("429", count=10, realm_id=conn.realm_id)
    with pytest.raises(Throttled):
        conn.client.preferences()


def test_expired_access_token_is_refreshed_once(conn: Connection) -> None:
    before = conn.tokens.tokens
    conn.sandbox.expire_access_tokens()
    assert conn.client.company_info()["CompanyName"] == "Integration Co"
    assert len(conn.saved) == 1
    assert conn.saved[0].refresh_token != before.refresh_token  # rotated and handed over to persist


def test_revoked_connection_needs_reconnect(conn: Connection) -> None:
    oauth.revoke(
        conn.http,
        revoke_url=f"{BASE}/v2/oauth2/tokens/revoke",
        client_id=conn.sandbox.client_id,
        client_secret=conn.sandbox.client_secret,
        token=conn.tokens.tokens.refresh_token,
    )
    with pytest.raises(AuthError) as caught:
        conn.client.company_info()
    # the 401 triggers one refresh, which Intuit refuses with invalid_grant
    assert caught.value.code == "invalid_grant"
    assert not isinstance(caught.value, AuthenticationFailed)


def test_paging_count_and_cdc(conn: Connection) -> None:
    since = conn.sandbox.now() - timedelta(seconds=1)
    conn.sandbox.seed_customers(conn.realm_id, 7)
    total = conn.client.count("select count(*) from Customer")
    pages = list(conn.client.query_pages("select * from Customer", page_size=3))
    ids = [c["Id"] for _, page in pages for c in page]
    assert len(ids) == total >= 7
    assert len(set(ids)) == len(ids)
    assert [start for start, _ in pages][:3] == [1, 4, 7]
    changed, server_time = conn.client.cdc(["Customer", "Invoice"], since)
    assert len(changed["Customer"]) >= 7
    assert changed["Invoice"] == []
    assert server_time.tzinfo is not None


def test_invoice_void_and_sales_receipt_void(conn: Connection) -> None:
    qbo = conn.client
    customer = qbo.create("Customer", {"DisplayName": "Voiding Buyer"}, request_id="vb-1")
    item = qbo.query("select * from Item where Type = 'Service'")[0]
    line = {
        "Amount": 100,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1, "UnitPrice": 100},
    }
    invoice = qbo.create("Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [line]}, request_id="inv-1")
    voided = qbo.void("Invoice", invoice["Id"], invoice["SyncToken"], request_id="inv-void-1")
    assert voided["TotalAmt"] == 0
    receipt = qbo.create("SalesReceipt", {"CustomerRef": {"value": customer["Id"]}, "Line": [line]}, request_id="sr-1")
    voided_receipt = qbo.void("SalesReceipt", receipt["Id"], receipt["SyncToken"], request_id="sr-void-1")
    assert voided_receipt["TotalAmt"] == 0


def test_emulator_webhooks_verify_and_parse(conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    conn.client.create("Customer", {"DisplayName": "Hooked"}, request_id="hook-1")
    delivered: list[tuple[bytes, str]] = []

    def post(url: str, *, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
        delivered.append((content, headers["intuit-signature"]))  # what our endpoint would receive
        return httpx.Response(200)

    conn.sandbox.webhook_url = "https://app.example/webhooks/qbo"
    monkeypatch.setattr(httpx, "post", post)
    assert conn.sandbox.flush_webhooks() >= 1
    body, signature = delivered[0]
    assert verify_signature(body, signature, conn.sandbox.verifier_token)
    assert not verify_signature(body, signature, "another-verifier")
    events = parse_events(body)
    assert any(e.entity == "Customer" and e.operation == "Create" and e.realm_id == conn.realm_id for e in events)

"""CrmClient against HighLevel's published specs (respx): request shapes, errors, retries, refresh."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from qbconnect.crm.client import API_VERSIONS, CrmClient, RateLimitState
from qbconnect.errors import AuthError, ConflictError, PermanentError, TransientError
from qbconnect.ratelimit import CRM_BUDGET, Budget, RateLimiter
from tests.support.reference import reference_dir

BASE = "https://services.leadconnectorhq.com"
LOC = "ve9EPM428h8vShlRW1KT"
TOKEN = "access-token-1"
NEW_TOKEN = "access-token-2"


class FakeTokens:
    def __init__(self) -> None:
        self.current = TOKEN
        self.refreshed_from: list[str] = []

    def access_token(self) -> str:
        return self.current

    def force_refresh(self, rejected_token: str) -> str:
        self.refreshed_from.append(rejected_token)
        self.current = NEW_TOKEN
        return self.current


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__("memory://")
        self.acquired: list[tuple[Budget, str]] = []
        self.penalized: list[tuple[Budget, str, float]] = []

    def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
        self.acquired.append((budget, key))

    def penalize(self, budget: Budget, key: str, seconds: float) -> None:
        self.penalized.append((budget, key, seconds))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def crm(tokens: FakeTokens, sleeps: Sleeps, http: httpx.Client) -> CrmClient:
    return CrmClient(location_id=LOC, api_base=BASE + "/", tokens=tokens, http=http, sleep=sleeps)


# ---- the spec ------------------------------------------------------------------------------------


@cache
def _spec(name: str) -> dict[str, Any]:
    path = reference_dir("highlevel", "openapi", "v2", "apps") / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def check_request(
    request: httpx.Request,
    spec: str,
    template: str,
    *,
    undeclared_query: frozenset[str] = frozenset(),
    check_required_body: bool = True,
) -> dict[str, Any]:
    """Assert ``request`` is what ``spec``'s ``template`` operation documents; return the JSON body."""
    operation = _spec(spec)["paths"][template][request.method.lower()]
    pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
    assert re.match(pattern, request.url.path), (request.url.path, template)
    params = operation.get("parameters", [])
    version = next(p for p in params if p["in"] == "header" and p["name"] == "Version")
    assert request.headers["Version"] in version["schema"]["enum"]
    assert request.headers["Authorization"].startswith("Bearer ")
    assert request.headers["Accept"] == "application/json"
    query = dict(request.url.params)
    declared = {p["name"] for p in params if p["in"] == "query"}
    required = {p["name"] for p in params if p["in"] == "query" and p.get("required")}
    assert required <= set(query), f"missing required query params {required - set(query)}"
    assert set(query) - undeclared_query <= declared, f"undeclared query params {set(query) - declared}"
    body: dict[str, Any] = {}
    if "requestBody" in operation:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = _spec(spec)["components"]["schemas"][ref.rsplit("/", 1)[1]]
        body = json.loads(request.content)
        assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])
        if check_required_body:
            assert set(schema.get("required", [])) <= set(body)
    else:
        assert not request.content
    return body


# ---- contacts ------------------------------------------------------------------------------------


def test_get_contact(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/contacts/c1").respond(200, json={"contact": {"id": "c1", "email": "a@b.c"}})
    assert crm.get_contact("c1") == {"id": "c1", "email": "a@b.c"}
    request = route.calls.last.request
    check_request(request, "contacts", "/contacts/{contactId}")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Version"] == "2021-07-28"
    assert crm.calls == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"statusCode": 404, "message": "Not Found"}),
        (400, {"statusCode": 400, "message": "Contact not found"}),
    ],
)
def test_get_contact_missing_is_none(crm: CrmClient, mock: respx.MockRouter, status: int, body: dict[str, Any]) -> None:
    mock.get("/contacts/gone").respond(status, json=body)
    assert crm.get_contact("gone") is None


def test_get_contact_other_400_is_permanent(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/contacts/c1").respond(400, json={"statusCode": 400, "message": "Location not found"})
    with pytest.raises(PermanentError, match="Location not found"):
        crm.get_contact("c1")


def test_find_duplicate_contact_by_email(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/contacts/search/duplicate").respond(200, json={"contact": {"id": "c9"}})
    assert crm.find_duplicate_contact(email="Alex@Example.com") == {"id": "c9"}
    request = route.calls.last.request
    check_request(request, "contacts", "/contacts/search/duplicate")
    assert dict(request.url.params) == {"locationId": LOC, "email": "Alex@Example.com"}


def test_find_duplicate_contact_by_phone_is_url_encoded(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/contacts/search/duplicate").respond(200, json={"contact": None})
    assert crm.find_duplicate_contact(phone="+1423164516") is None
    request = route.calls.last.request
    assert "number=%2B1423164516" in request.url.query.decode()
    assert request.url.params["number"] == "+1423164516"


def test_find_duplicate_contact_needs_a_key(crm: CrmClient) -> None:
    with pytest.raises(ValueError):
        crm.find_duplicate_contact()


def test_upsert_contact(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.post("/contacts/upsert").respond(200, json={"new": True, "contact": {"id": "c1"}, "traceId": "t-1"})
    fields = {"email": "a@b.c", "firstName": "Alex", "companyName": "ABC", "source": "QuickBooks"}
    contact, is_new = crm.upsert_contact(fields)
    assert (contact, is_new) == ({"id": "c1"}, True)
    body = check_request(route.calls.last.request, "contacts", "/contacts/upsert")
    assert body == {**fields, "locationId": LOC}
    assert "tags" not in body
    assert fields == {"email": "a@b.c", "firstName": "Alex", "companyName": "ABC", "source": "QuickBooks"}


def test_upsert_contact_existing(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.post("/contacts/upsert").respond(200, json={"new": False, "contact": {"id": "c1"}})
    assert crm.upsert_contact({"email": "a@b.c"}) == ({"id": "c1"}, False)


def test_create_contact(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.post("/contacts/").respond(201, json={"contact": {"id": "c2"}})
    assert crm.create_contact({"email": "a@b.c", "companyName": "ABC"}) == {"id": "c2"}
    body = check_request(route.calls.last.request, "contacts", "/contacts/")
    assert body == {"email": "a@b.c", "companyName": "ABC", "locationId": LOC}


def test_update_contact_drops_fields_update_does_not_accept(crm: CrmClient, mock: respx.MockRouter) -> None:
    update_dto = _spec("contacts")["components"]["schemas"]["UpdateContactDto"]["properties"]
    assert "companyName" not in update_dto and "locationId" not in update_dto
    route = mock.put("/contacts/c1").respond(200, json={"succeded": True, "contact": {"id": "c1"}})
    fields = {"firstName": "Alex", "companyName": "ABC", "locationId": LOC, "email": "a@b.c"}
    assert crm.update_contact("c1", fields) == {"id": "c1"}
    body = check_request(route.calls.last.request, "contacts", "/contacts/{contactId}")
    assert body == {"firstName": "Alex", "email": "a@b.c"}


def test_add_tags(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.post("/contacts/c1/tags").respond(201, json={"tags": ["vip", "quickbooks"]})
    assert crm.add_tags("c1", ("quickbooks",)) == ["vip", "quickbooks"]
    body = check_request(route.calls.last.request, "contacts", "/contacts/{contactId}/tags")
    assert body == {"tags": ["quickbooks"]}


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x?y"])
def test_ids_cannot_change_the_path(crm: CrmClient, bad: str) -> None:
    with pytest.raises(ValueError):
        crm.get_contact(bad)


# ---- invoices ------------------------------------------------------------------------------------


def _invoice_example() -> dict[str, Any]:
    path = reference_dir("highlevel", "webhooks", "examples") / "InvoiceSent.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_get_invoice(crm: CrmClient, mock: respx.MockRouter) -> None:
    invoice = _invoice_example()
    route = mock.get("/invoices/inv1").respond(200, json=invoice)
    assert crm.get_invoice("inv1") == invoice
    request = route.calls.last.request
    check_request(request, "invoices", "/invoices/{invoiceId}")
    assert dict(request.url.params) == {"altId": LOC, "altType": "location"}


def test_get_invoice_documented_not_found(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/invoices/gone").respond(
        400, json={"statusCode": 400, "message": "Unable to find an invoice with the given invoice id"}
    )
    assert crm.get_invoice("gone") is None


def test_list_invoices(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/invoices/").respond(200, json={"invoices": [{"_id": "i1"}], "total": 7})
    items, total = crm.list_invoices(
        offset=5, limit=50, status="sent", start_at=date(2024, 1, 1), end_at=date(2024, 1, 31)
    )
    assert (items, total) == ([{"_id": "i1"}], 7)
    request = route.calls.last.request
    check_request(request, "invoices", "/invoices/")
    assert dict(request.url.params) == {
        "altId": LOC,
        "altType": "location",
        "limit": "50",
        "offset": "5",
        "status": "sent",
        "startAt": "2024-01-01",
        "endAt": "2024-01-31",
    }


def test_iter_invoices_pages_until_total(crm: CrmClient, mock: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        page = [{"_id": f"i{n}"} for n in range(offset, min(offset + 2, 5))]
        return httpx.Response(200, json={"invoices": page, "total": 5})

    route = mock.get("/invoices/").mock(side_effect=answer)
    ids = [inv["_id"] for inv in crm.iter_invoices(limit=2, status="paid")]
    assert ids == ["i0", "i1", "i2", "i3", "i4"]
    assert [c.request.url.params["offset"] for c in route.calls] == ["0", "2", "4"]
    assert {c.request.url.params["status"] for c in route.calls} == {"paid"}


def test_iter_stops_on_empty_page(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/invoices/").respond(200, json={"invoices": [], "total": 10})
    assert list(crm.iter_invoices()) == []
    assert route.call_count == 1


def test_iter_without_total_pages_until_empty(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/orders").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"_id": "o1"}]}),
            httpx.Response(200, json={"data": [{"_id": "o2"}]}),
            httpx.Response(200, json={"data": []}),
        ]
    )
    assert [o["_id"] for o in crm.iter_orders(limit=1)] == ["o1", "o2"]
    assert route.call_count == 3


# ---- payments ------------------------------------------------------------------------------------


def test_get_order(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/orders/o1").respond(200, json={"_id": "o1", "status": "completed"})
    assert crm.get_order("o1") == {"_id": "o1", "status": "completed"}
    request = route.calls.last.request
    # altType=location is sent as for every payments call; the orders spec lists only altId
    check_request(request, "payments", "/payments/orders/{orderId}", undeclared_query=frozenset({"altType"}))
    assert dict(request.url.params) == {"altId": LOC, "altType": "location"}


def test_get_order_documented_not_found(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/payments/orders/o9").respond(400, json={"statusCode": 400, "message": "Order not found"})
    assert crm.get_order("o9") is None


def test_list_and_iter_orders(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/orders").respond(200, json={"data": [{"_id": "o1"}], "totalCount": 1})
    items, total = crm.list_orders(payment_status="paid", start_at=date(2024, 2, 1), contact_id="c1")
    assert (items, total) == ([{"_id": "o1"}], 1)
    request = route.calls.last.request
    check_request(request, "payments", "/payments/orders", undeclared_query=frozenset({"altType"}))
    assert dict(request.url.params) == {
        "altId": LOC,
        "altType": "location",
        "limit": "100",
        "offset": "0",
        "paymentStatus": "paid",
        "startAt": "2024-02-01",
        "contactId": "c1",
    }
    assert [o["_id"] for o in crm.iter_orders()] == ["o1"]


def test_get_transaction(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/transactions/t1").respond(200, json={"_id": "t1", "amount": 25})
    assert crm.get_transaction("t1") == {"_id": "t1", "amount": 25}
    request = route.calls.last.request
    check_request(request, "payments", "/payments/transactions/{transactionId}")
    assert dict(request.url.params) == {"altId": LOC, "altType": "location"}


def test_get_transaction_documented_not_found(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/payments/transactions/t9").respond(400, json={"statusCode": 400, "message": "Transaction not found"})
    assert crm.get_transaction("t9") is None


def test_list_transactions(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/transactions").respond(
        200, json={"data": [{"_id": "t1"}, {"_id": "t2"}], "totalCount": 2}
    )
    items, total = crm.list_transactions(
        start_at=datetime(2024, 2, 1, 10, 30, tzinfo=UTC),
        end_at=date(2024, 2, 13),
        subscription_id="sub_1",
        limit=20,
    )
    assert (len(items), total) == (2, 2)
    request = route.calls.last.request
    check_request(request, "payments", "/payments/transactions")
    assert dict(request.url.params) == {
        "altId": LOC,
        "altType": "location",
        "limit": "20",
        "offset": "0",
        "startAt": "2024-02-01T10:30:00.000Z",
        "endAt": "2024-02-13",
        "subscriptionId": "sub_1",
    }


def test_naive_datetimes_are_refused(crm: CrmClient) -> None:
    with pytest.raises(ValueError):
        crm.list_transactions(start_at=datetime(2024, 2, 1))


def test_iter_transactions(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/payments/transactions").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"_id": "t1"}, {"_id": "t2"}], "totalCount": 3}),
            httpx.Response(200, json={"data": [{"_id": "t3"}], "totalCount": 3}),
        ]
    )
    assert [t["_id"] for t in crm.iter_transactions(limit=2)] == ["t1", "t2", "t3"]


def test_get_subscription(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/payments/subscriptions/s1").respond(200, json={"_id": "s1", "status": "active"})
    assert crm.get_subscription("s1") == {"_id": "s1", "status": "active"}
    check_request(route.calls.last.request, "payments", "/payments/subscriptions/{subscriptionId}")
    mock.get("/payments/subscriptions/s9").respond(400, json={"statusCode": 400, "message": "Subscription not found"})
    assert crm.get_subscription("s9") is None


# ---- conversations -------------------------------------------------------------------------------


def test_send_email(crm: CrmClient, mock: respx.MockRouter) -> None:
    answer = {"conversationId": "cv1", "messageId": "m1", "status": "pending"}
    route = mock.post("/conversations/messages").respond(200, json=answer)
    result = crm.send_message(
        contact_id="c1", channel="Email", message="Thanks!", subject="How did we do?", html="<p>Thanks!</p>"
    )
    assert result == answer
    request = route.calls.last.request
    # the spec's required list (type, subType, contactId, status) is not what the endpoint needs
    body = check_request(request, "conversations", "/conversations/messages", check_required_body=False)
    assert request.headers["Version"] == "2021-04-15"
    assert body == {
        "type": "Email",
        "contactId": "c1",
        "message": "Thanks!",
        "subject": "How did we do?",
        "html": "<p>Thanks!</p>",
    }


def test_send_sms(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.post("/conversations/messages").respond(200, json={"messageId": "m1"})
    crm.send_message(contact_id="c1", channel="sms", message="Review us: https://r", subject="ignored")
    body = check_request(
        route.calls.last.request, "conversations", "/conversations/messages", check_required_body=False
    )
    assert body == {"type": "SMS", "contactId": "c1", "message": "Review us: https://r"}


def test_send_message_unknown_channel(crm: CrmClient) -> None:
    with pytest.raises(ValueError):
        crm.send_message(contact_id="c1", channel="WhatsApp", message="x")


def test_versions_live_in_one_table() -> None:
    assert API_VERSIONS["contacts"] == API_VERSIONS["invoices"] == API_VERSIONS["payments"] == "2021-07-28"
    assert API_VERSIONS["conversations"] == "2021-04-15"


# ---- errors --------------------------------------------------------------------------------------


def test_400_is_permanent_with_highlevels_message(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.post("/contacts/upsert").respond(400, json={"statusCode": 400, "message": "Invalid email", "traceId": "tr-9"})
    with pytest.raises(PermanentError) as info:
        crm.upsert_contact({"email": "nope"})
    assert "Invalid email" in info.value.message
    assert info.value.code == "http_400"
    assert info.value.detail is not None and "tr-9" in info.value.detail


def test_422_message_list_is_joined(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.put("/contacts/c1").respond(
        422,
        json={
            "statusCode": 422,
            "message": ["email must be an email", "country must be a valid code"],
            "error": "Unprocessable Entity",
        },
    )
    with pytest.raises(PermanentError) as info:
        crm.update_contact("c1", {"email": "x"})
    assert "email must be an email; country must be a valid code" in info.value.message
    assert info.value.code == "http_422"


def test_403_is_auth_and_409_conflict(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/contacts/c1").respond(403, json={"statusCode": 403, "message": "The token is not authorized"})
    with pytest.raises(AuthError):
        crm.get_contact("c1")
    mock.put("/contacts/c2").respond(409, json={"message": "duplicate"})
    with pytest.raises(ConflictError):
        crm.update_contact("c2", {"email": "a@b.c"})


def test_404_on_a_write_is_permanent(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.post("/contacts/c1/tags").respond(404, json={"statusCode": 404, "message": "Not Found"})
    with pytest.raises(PermanentError):
        crm.add_tags("c1", ["x"])


def test_401_refreshes_once_and_retries(crm: CrmClient, mock: respx.MockRouter, tokens: FakeTokens) -> None:
    route = mock.get("/contacts/c1").mock(
        side_effect=[
            httpx.Response(401, json={"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}),
            httpx.Response(200, json={"contact": {"id": "c1"}}),
        ]
    )
    assert crm.get_contact("c1") == {"id": "c1"}
    assert tokens.refreshed_from == [TOKEN]
    assert [c.request.headers["Authorization"] for c in route.calls] == [
        f"Bearer {TOKEN}",
        f"Bearer {NEW_TOKEN}",
    ]
    assert crm.calls == 2


def test_second_401_is_auth_error(crm: CrmClient, mock: respx.MockRouter, tokens: FakeTokens) -> None:
    route = mock.get("/invoices/i1").respond(401, json={"statusCode": 401, "message": "Invalid JWT"})
    with pytest.raises(AuthError):
        crm.get_invoice("i1")
    assert route.call_count == 2
    assert tokens.refreshed_from == [TOKEN]


def test_429_waits_for_the_interval_and_retries(crm: CrmClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    limited = {
        "X-RateLimit-Limit-Daily": "200000",
        "X-RateLimit-Daily-Remaining": "150000",
        "X-RateLimit-Interval-Milliseconds": "10000",
        "X-RateLimit-Max": "100",
        "X-RateLimit-Remaining": "0",
    }
    ok = {**limited, "X-RateLimit-Remaining": "99", "X-RateLimit-Daily-Remaining": "149999"}
    mock.get("/payments/orders/o1").mock(
        side_effect=[
            httpx.Response(429, headers=limited, json={"message": "Too many requests"}),
            httpx.Response(200, headers=ok, json={"_id": "o1"}),
        ]
    )
    assert crm.get_order("o1") == {"_id": "o1"}
    assert sleeps == [10.0]
    assert crm.last_rate_limit == RateLimitState(
        limit_daily=200000, daily_remaining=149999, interval_ms=10000, max=100, remaining=99
    )


def test_429_prefers_retry_after_then_base_wait(crm: CrmClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.get("/contacts/c1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(429),
            httpx.Response(200, json={"contact": {"id": "c1"}}),
        ]
    )
    assert crm.get_contact("c1") == {"id": "c1"}
    assert sleeps == [2.0, 10.0]
    assert crm.last_rate_limit is None


def test_429_daily_limit_exhausted_is_not_slept_on(crm: CrmClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    headers = {"X-RateLimit-Daily-Remaining": "0", "X-RateLimit-Interval-Milliseconds": "10000"}
    route = mock.get("/contacts/c1").respond(429, headers=headers)
    with pytest.raises(TransientError) as info:
        crm.get_contact("c1")
    assert route.call_count == 1
    assert sleeps == []
    assert info.value.retry_after == 3600.0


def test_429_retries_run_out(crm: CrmClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.get("/contacts/c1").respond(429, headers={"X-RateLimit-Interval-Milliseconds": "5000"})
    with pytest.raises(TransientError) as info:
        crm.get_contact("c1")
    assert route.call_count == 4  # 1 + max_retries
    assert sleeps == [5.0, 5.0, 5.0]
    assert info.value.retry_after == 5.0
    assert info.value.code == "http_429"


def test_429_on_a_create_is_retried(crm: CrmClient, mock: respx.MockRouter) -> None:
    # a 429 means HighLevel did not take the request, so even a create is safe to resend
    route = mock.post("/contacts/").mock(
        side_effect=[httpx.Response(429), httpx.Response(201, json={"contact": {"id": "c1"}})]
    )
    assert crm.create_contact({"email": "a@b.c"}) == {"id": "c1"}
    assert route.call_count == 2


def test_5xx_on_reads_retried_with_backoff(crm: CrmClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.get("/invoices/i1").mock(
        side_effect=[
            httpx.Response(502),
            httpx.Response(500, json={"message": "oops"}),
            httpx.Response(200, json={"_id": "i1"}),
        ]
    )
    assert crm.get_invoice("i1") == {"_id": "i1"}
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.75 and 1.0 <= sleeps[1] <= 1.5  # exponential + jitter


def test_5xx_retries_run_out(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/invoices/").respond(503)
    with pytest.raises(TransientError) as info:
        crm.list_invoices()
    assert route.call_count == 4
    assert info.value.code == "http_503"


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("PUT", "/contacts/c1", lambda c: c.update_contact("c1", {"email": "a@b.c"})),
        ("POST", "/contacts/upsert", lambda c: c.upsert_contact({"email": "a@b.c"})),
        ("POST", "/contacts/c1/tags", lambda c: c.add_tags("c1", ["t"])),
    ],
)
def test_idempotent_writes_retried_after_timeout_and_5xx(
    crm: CrmClient, mock: respx.MockRouter, method: str, path: str, call: Any
) -> None:
    ok = {"contact": {"id": "c1"}, "tags": ["t"], "new": False}
    route = mock.request(method, path).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(500), httpx.Response(200, json=ok)]
    )
    call(crm)
    assert route.call_count == 3


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/contacts/", lambda c: c.create_contact({"email": "a@b.c"})),
        ("/conversations/messages", lambda c: c.send_message(contact_id="c1", channel="SMS", message="m")),
    ],
)
@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.Response(500), httpx.Response(504)])
def test_creates_not_retried_when_they_may_have_happened(
    crm: CrmClient, mock: respx.MockRouter, path: str, call: Any, failure: Any
) -> None:
    route = mock.post(path)
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    with pytest.raises(TransientError):
        call(crm)
    assert route.call_count == 1


def test_create_retried_when_the_request_never_left(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.post("/contacts/").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201, json={"contact": {"id": "c1"}})]
    )
    assert crm.create_contact({"email": "a@b.c"}) == {"id": "c1"}
    assert route.call_count == 2


def test_timeouts_on_reads_run_out(crm: CrmClient, mock: respx.MockRouter) -> None:
    route = mock.get("/contacts/c1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError) as info:
        crm.get_contact("c1")
    assert route.call_count == 4
    assert info.value.code == "timeout"


def test_limiter_drawn_once_per_request_and_penalized_on_429(
    tokens: FakeTokens, sleeps: Sleeps, http: httpx.Client, mock: respx.MockRouter
) -> None:
    limiter = RecordingLimiter()
    crm = CrmClient(location_id=LOC, api_base=BASE, tokens=tokens, http=http, limiter=limiter, sleep=sleeps)
    mock.get("/contacts/c1").mock(
        side_effect=[httpx.Response(429), httpx.Response(200, json={"contact": {"id": "c1"}})]
    )
    crm.get_contact("c1")
    assert limiter.acquired == [(CRM_BUDGET, LOC), (CRM_BUDGET, LOC)]
    assert limiter.penalized == [(CRM_BUDGET, LOC, 10.0)]
    assert crm.calls == 2


def test_full_budget_is_transient(tokens: FakeTokens, http: httpx.Client, mock: respx.MockRouter) -> None:
    class FullLimiter(RecordingLimiter):
        def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
            raise TimeoutError("full")

    crm = CrmClient(location_id=LOC, api_base=BASE, tokens=tokens, http=http, limiter=FullLimiter())
    route = mock.get("/contacts/c1").respond(200, json={"contact": {}})
    with pytest.raises(TransientError) as info:
        crm.get_contact("c1")
    assert info.value.code == "rate_budget"
    assert route.call_count == 0 and crm.calls == 0


def test_logs_carry_trace_id_never_tokens(crm: CrmClient, mock: respx.MockRouter) -> None:
    mock.get("/contacts/c1").mock(
        side_effect=[
            httpx.Response(401, json={"message": "expired", "traceId": "trace-401"}),
            httpx.Response(500, json={"message": "boom", "traceId": "trace-500"}),
            httpx.Response(200, json={"contact": {"id": "c1"}, "traceId": "trace-ok"}),
        ]
    )
    with capture_logs() as logs:
        crm.get_contact("c1")
    text = repr(logs)
    assert "trace-401" in text and "trace-500" in text
    assert TOKEN not in text and NEW_TOKEN not in text


def test_default_http_client_is_created(tokens: FakeTokens) -> None:
    crm = CrmClient(location_id=LOC, api_base=BASE, tokens=tokens)
    with respx.mock(base_url=BASE) as router:
        router.get("/contacts/c1").respond(200, json={"contact": {"id": "c1"}})
        assert crm.get_contact("c1") == {"id": "c1"}

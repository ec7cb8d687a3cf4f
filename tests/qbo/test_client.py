"""QboClient against respx: URLs, headers, requestid, retries, token refresh, paging, CDC, void."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from qbconnect.errors import ErrorCategory, PermanentError, TransientError
from qbconnect.qbo.client import QboClient, escape_query_value
from qbconnect.qbo.faults import AuthenticationFailed, DuplicateName, ServerError, StaleObject, Throttled, Validation
from qbconnect.ratelimit import QBO_BUDGET, Budget, RateLimiter
from tests.support.reference import reference_dir

API = "https://quickbooks.api.intuit.test"
REALM = "9130350"
COMPANY = f"{API}/v3/company/{REALM}"


class FakeTokens:
    """TokenSource that hands out tok-1, tok-2, … and records refreshes."""

    def __init__(self) -> None:
        self.current = "tok-1"
        self.refreshed_for: list[str] = []

    def access_token(self) -> str:
        return self.current

    def force_refresh(self, rejected_token: str) -> str:
        self.refreshed_for.append(rejected_token)
        self.current = f"tok-{len(self.refreshed_for) + 1}"
        return self.current


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:  # no storage: records instead of limiting
        self.acquired: list[tuple[str, str]] = []
        self.penalized: list[tuple[str, str]] = []

    def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
        self.acquired.append((budget.name, key))

    def penalize(self, budget: Budget, key: str, seconds: float) -> None:
        self.penalized.append((budget.name, key))


def docs_example(name: str) -> Any:
    return json.loads(reference_dir("qbo", "examples", "docs-api-reference", name).read_text())


def fault_example(name: str) -> Path:
    return reference_dir("qbo", "examples", "faults", name)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=COMPANY, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as shared:  # building an SSL context per test is slow
        yield shared


@pytest.fixture
def client(
    http: httpx.Client, tokens: FakeTokens, sleeps: list[float], limiter: RecordingLimiter
) -> Iterator[QboClient]:
    with QboClient(
        realm_id=REALM,
        api_base=API + "/",
        tokens=tokens,
        http=http,
        limiter=limiter,
        sleep=sleeps.append,
        throttle_wait=0.5,
        retry_wait=0.01,
    ) as qbo:
        yield qbo


def params(route: respx.Route, index: int = -1) -> dict[str, str]:
    return dict(route.calls[index].request.url.params)


# ---- reads --------------------------------------------------------------------------------------


def test_read_builds_the_documented_request(
    client: QboClient, router: respx.MockRouter, limiter: RecordingLimiter
) -> None:
    invoice = docs_example("invoice__01__the-invoice-object-sample-object.json")
    route = router.get("/invoice/130").respond(200, json=invoice, headers={"intuit_tid": "tid-r"})
    result = client.read("Invoice", "130")
    request = route.calls.last.request
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert params(route) == {"minorversion": "75"}
    assert result["Id"] == invoice["Invoice"]["Id"]
    assert isinstance(result["TotalAmt"], Decimal)
    assert result["TotalAmt"] == Decimal(str(invoice["Invoice"]["TotalAmt"]))
    assert limiter.acquired == [(QBO_BUDGET.name, REALM)]
    assert client.calls == 1


def test_read_refuses_odd_entity_names(client: QboClient) -> None:
    with pytest.raises(ValueError):
        client.read("invoice/../customer", "1")


def test_query_returns_the_entity_list(client: QboClient, router: respx.MockRouter) -> None:
    answer = docs_example("invoice__08__query-an-invoice-sample-response.json")
    route = router.get("/query").respond(200, json=answer)
    statement = "select * from Invoice where DocNumber = 'O\\'Brien'"
    invoices = client.query(statement)
    assert params(route) == {"minorversion": "75", "query": statement}
    assert [i["Id"] for i in invoices] == [i["Id"] for i in answer["QueryResponse"]["Invoice"]]


def test_query_without_results_is_an_empty_list(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/query").respond(200, json={"QueryResponse": {}, "time": "2026-01-01T00:00:00Z"})
    assert client.query("select * from Customer where Id = '999'") == []


def test_count(client: QboClient, router: respx.MockRouter) -> None:
    route = router.get("/query").respond(200, json={"QueryResponse": {"totalCount": 2345}})
    assert client.count("select count(*) from Customer") == 2345
    assert params(route)["query"] == "select count(*) from Customer"


def test_query_pages_until_a_short_page(client: QboClient, router: respx.MockRouter) -> None:
    pages = [[{"Id": "1"}, {"Id": "2"}], [{"Id": "3"}, {"Id": "4"}], [{"Id": "5"}]]
    route = router.get("/query").mock(
        side_effect=[httpx.Response(200, json={"QueryResponse": {"Customer": page}}) for page in pages]
    )
    result = list(client.query_pages("SELECT * FROM Customer", page_size=2))
    assert result == [(1, pages[0]), (3, pages[1]), (5, pages[2])]
    assert [params(route, i)["query"] for i in range(3)] == [
        "SELECT * FROM Customer ORDERBY Id STARTPOSITION 1 MAXRESULTS 2",
        "SELECT * FROM Customer ORDERBY Id STARTPOSITION 3 MAXRESULTS 2",
        "SELECT * FROM Customer ORDERBY Id STARTPOSITION 5 MAXRESULTS 2",
    ]


def test_query_pages_full_last_page_needs_one_empty_page(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/query").mock(
        side_effect=[
            httpx.Response(200, json={"QueryResponse": {"Customer": [{"Id": "1"}]}}),
            httpx.Response(200, json={"QueryResponse": {}}),
        ]
    )
    assert list(client.query_pages("SELECT * FROM Customer", page_size=1, start=7)) == [(7, [{"Id": "1"}]), (8, [])]


@pytest.mark.parametrize(("page_size", "start"), [(0, 1), (1001, 1), (10, 0)])
def test_query_pages_validates_arguments(client: QboClient, page_size: int, start: int) -> None:
    with pytest.raises(ValueError):
        next(client.query_pages("SELECT * FROM Customer", page_size=page_size, start=start))


def test_cdc_with_the_docs_example(client: QboClient, router: respx.MockRouter) -> None:
    route = router.get("/cdc").respond(
        200, json=docs_example("changedatacapture__02__get-a-list-of-changed-entities-response.json")
    )
    since = datetime(2015, 12, 22, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=-8)))
    changed, server_time = client.cdc(["Customer", "Estimate", "Invoice"], since)
    assert params(route) == {
        "minorversion": "75",
        "entities": "Customer,Estimate,Invoice",
        "changedSince": "2015-12-22T20:00:00+00:00",
    }
    assert [c["Id"] for c in changed["Customer"]] == ["63", "99"]
    assert [e["Id"] for e in changed["Estimate"]] == ["34", "123", "979"]
    assert changed["Estimate"][2]["status"] == "Deleted"
    assert changed["Invoice"] == []
    assert server_time == datetime(2015, 12, 23, 20, 56, 6, 196000, tzinfo=UTC)


def test_cdc_requires_aware_time_and_entities(client: QboClient) -> None:
    with pytest.raises(ValueError):
        client.cdc(["Customer"], datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        client.cdc([], datetime(2026, 1, 1, tzinfo=UTC))


def test_cdc_without_time_is_permanent(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/cdc").respond(200, json={"CDCResponse": []})
    with pytest.raises(PermanentError):
        client.cdc(["Customer"], datetime(2026, 1, 1, tzinfo=UTC))


def test_company_info_and_preferences(client: QboClient, router: respx.MockRouter) -> None:
    info = router.get(f"/companyinfo/{REALM}").respond(
        200, json={"CompanyInfo": {"CompanyName": "Sandbox Co", "Id": "1"}}
    )
    prefs_answer = docs_example("preferences__01__read-preferences-sample-response.json")
    router.get("/preferences").respond(200, json=prefs_answer)
    assert client.company_info()["CompanyName"] == "Sandbox Co"
    assert info.called
    assert client.preferences() == json.loads(json.dumps(prefs_answer["Preferences"]), parse_float=Decimal)


# ---- writes -------------------------------------------------------------------------------------


def test_create_sends_json_with_requestid(client: QboClient, router: respx.MockRouter) -> None:
    route = router.post("/customer").respond(
        200, json={"Customer": {"Id": "58", "SyncToken": "0", "DisplayName": "Jane"}}
    )
    created = client.create("Customer", {"DisplayName": "Jane"}, request_id="req-1")
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert params(route) == {"minorversion": "75", "requestid": "req-1"}
    assert json.loads(request.content) == {"DisplayName": "Jane"}
    assert created["Id"] == "58"


def test_decimals_are_sent_as_json_numbers(client: QboClient, router: respx.MockRouter) -> None:
    route = router.post("/salesreceipt").respond(200, json={"SalesReceipt": {"Id": "1"}})
    body = {"TxnDate": datetime(2026, 2, 3, tzinfo=UTC).date(), "Line": [{"Amount": Decimal("10.10")}]}
    client.create("SalesReceipt", body, request_id="r")
    assert route.calls.last.request.content == b'{"TxnDate":"2026-02-03","Line":[{"Amount":10.10}]}'
    with pytest.raises(TypeError):  # floats never reach a payload
        client.create("SalesReceipt", {"TotalAmt": 0.1}, request_id="r")


@pytest.mark.parametrize("request_id", ["", "x" * 51])
def test_writes_need_a_short_requestid(client: QboClient, router: respx.MockRouter, request_id: str) -> None:
    route = router.post("/customer").respond(200, json={"Customer": {}})
    with pytest.raises(ValueError):
        client.create("Customer", {"DisplayName": "A"}, request_id=request_id)
    assert not route.called
    client.create("Customer", {"DisplayName": "A"}, request_id="x" * 50)
    assert route.called


def test_sparse_and_full_update(client: QboClient, router: respx.MockRouter) -> None:
    route = router.post("/invoice").respond(200, json={"Invoice": {"Id": "7", "SyncToken": "3"}})
    updated = client.update("Invoice", {"Id": "7", "SyncToken": "2", "DueDate": "2026-02-01"}, request_id="u1")
    assert json.loads(route.calls.last.request.content) == {
        "Id": "7",
        "SyncToken": "2",
        "DueDate": "2026-02-01",
        "sparse": True,
    }
    assert params(route) == {"minorversion": "75", "requestid": "u1"}
    assert updated["SyncToken"] == "3"
    client.update("Invoice", {"Id": "7", "SyncToken": "3", "sparse": True, "Line": []}, request_id="u2", sparse=False)
    assert json.loads(route.calls.last.request.content) == {"Id": "7", "SyncToken": "3", "Line": []}


def test_update_needs_id_and_sync_token(client: QboClient) -> None:
    with pytest.raises(ValueError):
        client.update("Invoice", {"Id": "7"}, request_id="u")


def test_void_invoice_uses_operation_void(client: QboClient, router: respx.MockRouter) -> None:
    answer = docs_example("invoice__07__void-an-invoice-sample-response.json")
    route = router.post("/invoice").respond(200, json=answer)
    voided = client.void("Invoice", "129", "0", request_id="v1")
    assert params(route) == {"minorversion": "75", "operation": "void", "requestid": "v1"}
    assert json.loads(route.calls.last.request.content) == docs_example(
        "invoice__06__void-an-invoice-sample-request-body.json"
    )
    assert voided["Id"] == answer["Invoice"]["Id"]


@pytest.mark.parametrize(
    ("entity", "path", "request_example"),
    [
        ("Payment", "/payment", "payment__07__void-a-payment-sample-request-body.json"),
        ("SalesReceipt", "/salesreceipt", "salesreceipt__06__void-a-salesreceipt-request-body.json"),
        ("RefundReceipt", "/refundreceipt", None),
    ],
)
def test_void_payment_like_uses_sparse_update_include_void(
    client: QboClient, router: respx.MockRouter, entity: str, path: str, request_example: str | None
) -> None:
    route = router.post(path).respond(200, json={entity: {"Id": "125", "SyncToken": "1", "PrivateNote": "Voided"}})
    client.void(entity, "125", "0", request_id="v2")
    assert params(route) == {"minorversion": "75", "operation": "update", "include": "void", "requestid": "v2"}
    sent = json.loads(route.calls.last.request.content)
    assert sent == {"Id": "125", "SyncToken": "0", "sparse": True}
    if request_example:  # the docs' own void bodies carry the same Id/SyncToken keys
        assert set(docs_example(request_example)) <= set(sent)


def test_void_unsupported_entity(client: QboClient) -> None:
    with pytest.raises(ValueError):
        client.void("Customer", "1", "0", request_id="v")


def test_delete(client: QboClient, router: respx.MockRouter) -> None:
    answer = docs_example("invoice__05__delete-an-invoice-sample-response.json")
    route = router.post("/invoice").respond(200, json=answer)
    deleted = client.delete("Invoice", "33", "0", request_id="d1")
    assert params(route) == {"minorversion": "75", "operation": "delete", "requestid": "d1"}
    assert json.loads(route.calls.last.request.content) == {"Id": "33", "SyncToken": "0"}
    assert deleted["status"] == "Deleted"


# ---- faults, refresh and retries ----------------------------------------------------------------


def auth_fault() -> dict[str, Any]:
    error = {"Message": "message=AuthenticationFailed; errorCode=003200; statusCode=401", "code": "3200"}
    return {"Fault": {"Error": [error], "type": "AUTHENTICATION"}}


def test_401_refreshes_once_and_retries(client: QboClient, router: respx.MockRouter, tokens: FakeTokens) -> None:
    route = router.get("/invoice/1").mock(
        side_effect=[httpx.Response(401, json=auth_fault()), httpx.Response(200, json={"Invoice": {"Id": "1"}})]
    )
    assert client.read("Invoice", "1") == {"Id": "1"}
    assert tokens.refreshed_for == ["tok-1"]
    assert [c.request.headers["Authorization"] for c in route.calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert client.calls == 2


def test_second_401_is_authentication_failed(client: QboClient, router: respx.MockRouter, tokens: FakeTokens) -> None:
    route = router.get("/invoice/1").respond(401, json=auth_fault(), headers={"intuit_tid": "tid-401"})
    with pytest.raises(AuthenticationFailed) as caught:
        client.read("Invoice", "1")
    assert caught.value.category is ErrorCategory.AUTH
    assert caught.value.intuit_tid == "tid-401"
    assert tokens.refreshed_for == ["tok-1"]
    assert route.call_count == 2


def test_5xx_retried_with_the_same_requestid(
    client: QboClient, router: respx.MockRouter, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    route = router.post("/invoice").mock(
        side_effect=[
            httpx.Response(503, text="unavailable"),
            httpx.Response(
                500,
                json={
                    "Fault": {
                        "Error": [{"Message": "An application error has occurred", "code": "10000"}],
                        "type": "SystemFault",
                    }
                },
            ),
            httpx.Response(200, json={"Invoice": {"Id": "9"}}),
        ]
    )
    assert client.create("Invoice", {"CustomerRef": {"value": "1"}}, request_id="same-id")["Id"] == "9"
    assert [params(route, i)["requestid"] for i in range(3)] == ["same-id"] * 3
    assert len({c.request.content for c in route.calls}) == 1
    assert len(sleeps) == 2
    assert 0.01 <= sleeps[0] <= 0.0125
    assert 0.02 <= sleeps[1] <= 0.025  # exponential backoff with up to 25 % jitter
    assert len(limiter.acquired) == 3


def test_timeouts_retried_then_success(client: QboClient, router: respx.MockRouter, sleeps: list[float]) -> None:
    route = router.post("/payment").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"Payment": {"Id": "4"}}),
        ]
    )
    assert client.create("Payment", {"TotalAmt": 1}, request_id="p-1")["Id"] == "4"
    assert [params(route, i)["requestid"] for i in range(3)] == ["p-1"] * 3
    assert len(sleeps) == 2


def test_network_failure_after_last_try_is_transient(
    client: QboClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.get("/invoice/1").mock(side_effect=httpx.ConnectTimeout("down"))
    with pytest.raises(TransientError) as caught:
        client.read("Invoice", "1")
    assert caught.value.code == "network"
    assert route.call_count == 4  # first try + max_retries
    assert len(sleeps) == 3


def test_server_error_after_last_try(client: QboClient, router: respx.MockRouter) -> None:
    route = router.get("/query").respond(502, text="bad gateway", headers={"intuit_tid": "tid-5"})
    with pytest.raises(ServerError) as caught:
        client.query("select * from Customer")
    assert caught.value.category is ErrorCategory.TRANSIENT
    assert caught.value.intuit_tid == "tid-5"
    assert route.call_count == 4
    assert client.calls == 4


def test_xml_throttle_waits_and_retries(
    client: QboClient, router: respx.MockRouter, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    throttle = fault_example("throttle-exceeded-429.xml").read_bytes()
    router.post("/customer").mock(
        side_effect=[
            httpx.Response(429, content=throttle, headers={"Content-Type": "application/xml"}),
            httpx.Response(200, json={"Customer": {"Id": "1"}}),
        ]
    )
    assert client.create("Customer", {"DisplayName": "A"}, request_id="c-1") == {"Id": "1"}
    assert len(sleeps) == 1
    assert 0.5 <= sleeps[0] <= 0.625
    assert limiter.penalized == [(QBO_BUDGET.name, REALM)]


def test_throttle_after_last_try_is_raised(client: QboClient, router: respx.MockRouter, sleeps: list[float]) -> None:
    throttle = fault_example("throttle-exceeded-429.xml").read_bytes()
    router.get("/query").respond(429, content=throttle, headers={"Content-Type": "application/xml"})
    with pytest.raises(Throttled) as caught:
        client.query("select * from Customer")
    assert caught.value.retry_after == 60.0
    assert all(0.5 * 2**i <= s <= 0.625 * 2**i for i, s in enumerate(sleeps))
    assert len(sleeps) == 3


def test_retry_after_header_is_honoured(client: QboClient, router: respx.MockRouter, sleeps: list[float]) -> None:
    router.get("/invoice/1").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "7"}),
            httpx.Response(200, json={"Invoice": {"Id": "1"}}),
        ]
    )
    client.read("Invoice", "1")
    assert sleeps == [7.0]


def test_validation_faults_are_not_retried(client: QboClient, router: respx.MockRouter, sleeps: list[float]) -> None:
    route = router.post("/customer").respond(
        400, content=fault_example("fault-6240-from-batch-sample.json").read_bytes()
    )
    with pytest.raises(DuplicateName) as caught:
        client.create("Customer", {"DisplayName": "Jane"}, request_id="c-2")
    assert caught.value.category is ErrorCategory.CONFLICT
    assert route.call_count == 1
    assert sleeps == []


def test_stale_object_on_update(client: QboClient, router: respx.MockRouter) -> None:
    router.post("/invoice").respond(400, content=fault_example("fault-5010-from-batch-sample.json").read_bytes())
    with pytest.raises(StaleObject):
        client.update("Invoice", {"Id": "1", "SyncToken": "0"}, request_id="u")


def test_fault_inside_a_200_answer_is_raised(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/query").respond(
        200, json={"Fault": {"Error": [{"Message": "Invalid query", "code": "4001"}], "type": "ValidationFault"}}
    )
    with pytest.raises(Validation) as caught:
        client.query("select nonsense")
    assert caught.value.code == "4001"


def test_unreadable_success_answer_is_transient(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/invoice/1").respond(200, text="<html>proxy</html>")
    with pytest.raises(TransientError):
        client.read("Invoice", "1")


def test_answer_without_the_entity_is_permanent(client: QboClient, router: respx.MockRouter) -> None:
    router.get("/invoice/1").respond(200, json={"Customer": {"Id": "1"}})
    with pytest.raises(PermanentError):
        client.read("Invoice", "1")


def test_logs_carry_context_and_never_the_token(client: QboClient, router: respx.MockRouter) -> None:
    router.post("/customer").mock(
        side_effect=[
            httpx.Response(401, json=auth_fault(), headers={"intuit_tid": "t-a"}),
            httpx.Response(
                400,
                content=fault_example("fault-6240-from-batch-sample.json").read_bytes(),
                headers={"intuit_tid": "t-b"},
            ),
        ]
    )
    with capture_logs() as logs, pytest.raises(DuplicateName):
        client.create("Customer", {"DisplayName": "Jane"}, request_id="req-log")
    fault_log = [entry for entry in logs if entry["event"] == "qbo.fault"]
    assert fault_log
    assert fault_log[0]["intuit_tid"] == "t-b"
    assert fault_log[0]["realm_id"] == REALM
    assert fault_log[0]["entity"] == "Customer"
    assert fault_log[0]["request_id"] == "req-log"
    assert "tok-" not in repr(logs)


def test_no_limiter_and_custom_minorversion(tokens: FakeTokens, router: respx.MockRouter) -> None:
    route = router.get("/invoice/1").respond(200, json={"Invoice": {"Id": "1"}})
    qbo = QboClient(realm_id=REALM, api_base=API, tokens=tokens, minorversion=80)
    try:
        qbo.read("Invoice", "1")
    finally:
        qbo.close()
    assert params(route) == {"minorversion": "80"}


def test_escape_query_value() -> None:
    assert escape_query_value("O'Brien's") == "O\\'Brien\\'s"
    assert escape_query_value("plain") == "plain"

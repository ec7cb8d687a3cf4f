"""QuickBooks pacing: the company's request slots and pauses (``ratelimit.Gate``) shared by every thread and
process, a 429 that makes the whole company back off (honouring Retry-After), and a 20-thread burst against
the emulator's limits that sees no 429."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from qbconnect.errors import TransientError
from qbconnect.qbo.client import QboClient, ReadBudgetExhausted
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.ratelimit import QBO_BUDGET, QBO_CONCURRENCY, Gate, RateLimiter
from qbconnect.sandbox.qbo import QboSandbox, create_app
from qbconnect.sandbox.server import serve_in_thread
from tests.support.databases import fresh_redis_queue
from tests.support.reference import reference_dir

API = "https://quickbooks.api.intuit.test"
REALM = "9130350"
COMPANY = f"{API}/v3/company/{REALM}"
THROTTLE = reference_dir("qbo", "examples", "faults", "throttle-exceeded-429.xml").read_bytes()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=COMPANY, assert_all_called=False) as mock:
        yield mock


def client_for(gate: Gate | None, sleeps: list[float] | None = None, **kwargs: Any) -> QboClient:
    return QboClient(
        realm_id=REALM,
        api_base=API,
        tokens=StaticTokenSource("tok"),
        http=httpx.Client(),
        gate=gate,
        sleep=(sleeps.append if sleeps is not None else (lambda _s: None)),
        throttle_wait=60.0,
        **kwargs,
    )


# ---- the gate ------------------------------------------------------------------------------------


def check_slots_and_pauses(first: Gate, second: Gate) -> None:
    """``first`` and ``second`` stand for two processes sharing one storage (or one, in memory)."""
    tokens = [first.take(QBO_BUDGET, "realm", 2, timeout=0) for _ in range(2)]
    with pytest.raises(TimeoutError):
        second.take(QBO_BUDGET, "realm", 2, timeout=0)
    other = second.take(QBO_BUDGET, "other-realm", 2, timeout=0)  # every company has its own slots
    first.give_back(QBO_BUDGET, "realm", tokens[0])
    again = second.take(QBO_BUDGET, "realm", 2, timeout=0)
    for gate, key, token in ((first, "realm", tokens[1]), (second, "realm", again), (second, "other-realm", other)):
        gate.give_back(QBO_BUDGET, key, token)

    assert second.paused_for(QBO_BUDGET, "realm") == 0
    first.pause(QBO_BUDGET, "realm", 60)
    first.pause(QBO_BUDGET, "realm", 5)  # a shorter pause asked meanwhile does not cut it short
    assert 55 < second.paused_for(QBO_BUDGET, "realm") <= 60
    assert second.paused_for(QBO_BUDGET, "other-realm") == 0


def test_memory_gate_slots_and_pauses() -> None:
    gate = Gate("memory://")
    check_slots_and_pauses(gate, gate)


@pytest.mark.redis
def test_redis_gate_is_shared_by_processes() -> None:
    with fresh_redis_queue() as url:
        check_slots_and_pauses(Gate(url), Gate(url))


def test_a_slot_whose_holder_died_comes_back_after_its_lease() -> None:
    gate = Gate("memory://")
    gate.take(QBO_BUDGET, "realm", 1, timeout=0, lease=0.0)  # never given back, lease already over
    gate.give_back(QBO_BUDGET, "realm", gate.take(QBO_BUDGET, "realm", 1, timeout=0))


@pytest.mark.redis
def test_redis_slot_lease_ends() -> None:
    with fresh_redis_queue() as url:
        gate = Gate(url)
        gate.take(QBO_BUDGET, "realm", 1, timeout=0, lease=0.001)
        gate.give_back(QBO_BUDGET, "realm", gate.take(QBO_BUDGET, "realm", 1, timeout=1))


def test_the_rate_limiter_carries_a_gate_on_its_storage() -> None:
    assert isinstance(RateLimiter("memory://").gate, Gate)
    assert QBO_CONCURRENCY < 10  # Intuit: at most 10 requests of one app in flight per company


# ---- the client ----------------------------------------------------------------------------------


def test_each_request_holds_a_slot_while_in_flight(router: respx.MockRouter) -> None:
    gate = Gate("memory://")
    seen: list[bool] = []

    def answer(request: httpx.Request) -> httpx.Response:
        try:
            gate.give_back(QBO_BUDGET, REALM, gate.take(QBO_BUDGET, REALM, 1, timeout=0))
            seen.append(False)
        except TimeoutError:
            seen.append(True)  # the only slot is held by the request being answered
        return httpx.Response(200, json={"Item": {"Id": "1"}})

    router.get("/item/1").mock(side_effect=answer)
    client = client_for(gate, concurrency=1)
    client.read("Item", "1")
    client.read("Item", "1")
    assert seen == [True, True]
    gate.give_back(QBO_BUDGET, REALM, gate.take(QBO_BUDGET, REALM, 1, timeout=0))  # released afterwards


def test_busy_slots_become_a_transient_error(router: respx.MockRouter) -> None:
    gate = Gate("memory://")
    gate.take(QBO_BUDGET, REALM, 1, timeout=0)
    route = router.get("/item/1").respond(200, json={"Item": {"Id": "1"}})
    with pytest.raises(TransientError) as caught:
        client_for(gate, concurrency=1, pacing_timeout=0).read("Item", "1")
    assert caught.value.code == "pacing" and route.call_count == 0


def test_a_429_pauses_the_whole_company_and_is_logged_as_a_pacing_fault(router: respx.MockRouter) -> None:
    gate = Gate("memory://")
    router.post("/customer").mock(
        side_effect=[
            httpx.Response(429, content=THROTTLE, headers={"Content-Type": "application/xml"}),
            httpx.Response(200, json={"Customer": {"Id": "1"}}),
        ]
    )
    router.get("/item/1").respond(200, json={"Item": {"Id": "1"}})
    first_sleeps: list[float] = []
    with capture_logs() as logs:
        client_for(gate, first_sleeps).create("Customer", {"DisplayName": "A"}, request_id="c-1")
    assert len(first_sleeps) == 1 and 60 <= first_sleeps[0] <= 75  # Intuit: wait 60 s, with jitter
    faults = [entry for entry in logs if entry["event"] == "qbo.pacing_fault"]
    assert len(faults) == 1 and faults[0]["log_level"] == "warning" and faults[0]["realm_id"] == REALM
    # another worker's client for the same company waits out the pause before its first request
    other_sleeps: list[float] = []
    client_for(gate, other_sleeps).read("Item", "1")
    assert len(other_sleeps) == 1 and 55 < other_sleeps[0] <= first_sleeps[0]
    # … and one for another company does not
    router_other = respx.mock(base_url=f"{API}/v3/company/other", assert_all_called=False)
    with router_other:
        router_other.get("/item/1").respond(200, json={"Item": {"Id": "1"}})
        unrelated: list[float] = []
        QboClient(
            realm_id="other", api_base=API, tokens=StaticTokenSource("tok"), gate=gate, sleep=unrelated.append
        ).read("Item", "1")
    assert unrelated == []


@pytest.mark.parametrize("header", ["90", "date"])
def test_retry_after_longer_than_a_minute_is_honoured_by_everyone(router: respx.MockRouter, header: str) -> None:
    gate = Gate("memory://")
    value = header if header != "date" else format_datetime(datetime.now(UTC) + timedelta(seconds=91), usegmt=True)
    router.get("/item/1").mock(
        side_effect=[
            httpx.Response(429, content=THROTTLE, headers={"Content-Type": "application/xml", "Retry-After": value}),
            httpx.Response(200, json={"Item": {"Id": "1"}}),
        ]
    )
    sleeps: list[float] = []
    client_for(gate, sleeps).read("Item", "1")
    assert len(sleeps) == 1 and 85 <= sleeps[0] <= 91
    assert 80 < gate.paused_for(QBO_BUDGET, REALM) <= 91


def test_every_request_sent_is_reported_by_kind(router: respx.MockRouter) -> None:
    kinds: list[str] = []
    router.get("/item/1").mock(side_effect=[httpx.Response(503), httpx.Response(200, json={"Item": {"Id": "1"}})])
    router.get("/query").respond(200, json={"QueryResponse": {}})
    router.get("/cdc").respond(200, json={"CDCResponse": [{"QueryResponse": [{}]}], "time": "2026-12-01T00:00:00Z"})
    router.post("/customer").respond(200, json={"Customer": {"Id": "1"}})
    client = client_for(None, on_request=kinds.append, retry_wait=0)
    client.read("Item", "1")
    client.query("select * from Item")
    client.cdc(["Customer"], datetime(2026, 11, 30, tzinfo=UTC))
    client.create("Customer", {"DisplayName": "A"}, request_id="c-1")
    assert kinds == ["read", "read", "query", "cdc", "write"]  # a retried read is sent, and metered, twice


def test_non_essential_reads_ask_the_guard_first_and_writes_never_do(router: respx.MockRouter) -> None:
    asked: list[str] = []

    def refuse(kind: str) -> None:
        asked.append(kind)
        raise ReadBudgetExhausted("budget used up")

    item = router.get("/item/1").respond(200, json={"Item": {"Id": "1"}})
    router.get("/cdc").respond(200, json={"CDCResponse": [{"QueryResponse": [{}]}], "time": "2026-12-01T00:00:00Z"})
    create = router.post("/customer").respond(200, json={"Customer": {"Id": "1"}})
    client = client_for(None, read_guard=refuse)
    assert client.read("Item", "1") == {"Id": "1"}  # essential by default
    with pytest.raises(ReadBudgetExhausted):
        client.read("Item", "1", essential=False)
    with pytest.raises(ReadBudgetExhausted):
        client.cdc(["Customer"], datetime(2026, 11, 30, tzinfo=UTC), essential=False)
    with pytest.raises(ReadBudgetExhausted):
        client.query("select * from Account", essential=False)
    assert client.create("Customer", {"DisplayName": "A"}, request_id="c-1") == {"Id": "1"}
    assert asked == ["read", "cdc", "query"] and item.call_count == 1 and create.call_count == 1


# ---- a burst against the emulator ----------------------------------------------------------------


def emulator_token(sandbox: QboSandbox, realm_id: str) -> str:
    sandbox.next_realm_id = realm_id
    with TestClient(create_app(sandbox)) as http:
        answer = http.get(
            "/connect/oauth2",
            params={
                "client_id": sandbox.client_id,
                "response_type": "code",
                "scope": "com.intuit.quickbooks.accounting",
                "redirect_uri": "https://app.example/cb",
                "state": "s",
            },
            follow_redirects=False,
        )
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        token = http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example/cb"},
            auth=(sandbox.client_id, sandbox.client_secret),
        ).json()
    return str(token["access_token"])


def burst(*, gated: bool, threads: int = 20, each: int = 2) -> QboSandbox:
    """``threads`` workers, each with its own client, read one company at once; every request takes 1.5 s,
    so at the 9/s budget more than 10 would be in flight without the slots."""
    sandbox = QboSandbox(latency=1.5)
    realm_id = sandbox.add_company()
    token = emulator_token(sandbox, realm_id)
    server = serve_in_thread(create_app(sandbox))
    limiter = RateLimiter("memory://")
    errors: list[BaseException] = []
    try:
        with httpx.Client(limits=httpx.Limits(max_connections=threads)) as http:

            def work() -> None:
                client = QboClient(
                    realm_id=realm_id,
                    api_base=server.base_url,
                    tokens=StaticTokenSource(token),
                    http=http,
                    limiter=limiter,
                    gate=limiter.gate if gated else None,
                    throttle_wait=0.01,
                    retry_wait=0.01,
                    max_retries=10,
                )
                try:
                    for _ in range(each):
                        client.read("Item", "1")
                except BaseException as exc:
                    errors.append(exc)

            workers = [threading.Thread(target=work) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    finally:
        server.stop()
    assert errors == []
    return sandbox


def test_a_twenty_thread_burst_at_one_company_sees_no_429() -> None:
    sandbox = burst(gated=True)
    statuses = [r.status for r in sandbox.request_log if r.kind == "read"]
    assert len(statuses) == 40 and set(statuses) == {200}
    assert sandbox.throttle_log == []


def test_without_the_slots_the_same_burst_is_throttled() -> None:
    """The control: the emulator does refuse what the slots prevent (the test above would catch a regression)."""
    sandbox = burst(gated=False)
    assert {limit for _realm, limit in sandbox.throttle_log} == {"concurrent"}

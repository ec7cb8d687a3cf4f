"""Intuit's limits as the emulator enforces them: requests per sliding minute, requests in flight and batch
requests per minute, per realm; the 429 body; requests counted by kind (metered reads vs writes)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from qbconnect.sandbox.qbo import QboSandbox, create_app

from .qbo_fixtures import Qbo, connect, qbo_fixture  # noqa: F401


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_minute_window_slides_and_refused_requests_are_not_counted() -> None:
    sandbox = QboSandbox(throttle_per_minute=2)
    ticks = Ticks()
    sandbox.ticks = ticks
    qbo = connect(sandbox, sandbox.add_company())
    assert qbo.read("item", "1").status_code == 200
    ticks.now += 30
    assert qbo.read("item", "1").status_code == 200
    assert qbo.read("item", "1").status_code == 429
    ticks.now += 29.9
    assert qbo.read("item", "1").status_code == 429  # both still inside the last 60 s
    ticks.now += 0.1
    assert qbo.read("item", "1").status_code == 200  # the first left the window; the refusals never counted
    assert qbo.read("item", "1").status_code == 429
    assert [limit for _realm, limit in sandbox.throttle_log] == ["per_minute"] * 3


def test_requests_in_flight_are_limited_per_realm_and_released_when_answered() -> None:
    sandbox = QboSandbox(concurrent_per_realm=2)
    a, b = sandbox.add_company(), sandbox.add_company()
    assert sandbox.admit(a) is None and sandbox.admit(a) is None
    assert sandbox.admit(a) == "concurrent"
    assert sandbox.admit(b) is None  # another company has its own slots
    sandbox.leave(a)
    assert sandbox.admit(a) is None
    qbo = connect(sandbox, b)
    sandbox.leave(b)
    assert qbo.read("item", "1").status_code == 200
    sandbox.inject_fault("500")
    assert qbo.read("item", "1").status_code == 500
    assert sandbox.in_flight(b) == 0  # answered requests, faults too, give their slot back
    qbo_a = connect(sandbox, a)
    response = qbo_a.read("item", "1")
    assert response.status_code == 429 and "ThrottleExceeded" in response.text


def test_batch_requests_have_their_own_minute_budget() -> None:
    sandbox = QboSandbox(batch_per_minute=2)
    qbo = connect(sandbox, sandbox.add_company())
    batch = {"BatchItemRequest": [{"bId": "1", "Query": "select * from Item"}]}
    assert [qbo.post("batch", batch).status_code for _ in range(3)] == [200, 200, 429]
    assert qbo.read("item", "1").status_code == 200  # single requests still go through
    assert sandbox.throttle_log[-1][1] == "batch_per_minute"


def test_an_optional_per_second_limit() -> None:
    sandbox = QboSandbox(throttle_per_second=1)
    ticks = Ticks()
    sandbox.ticks = ticks
    qbo = connect(sandbox, sandbox.add_company())
    assert [qbo.read("item", "1").status_code for _ in range(2)] == [200, 429]
    ticks.now += 1
    assert qbo.read("item", "1").status_code == 200
    assert QboSandbox().throttle_per_second is None  # off unless asked for (see docs/sandbox.md)


def test_no_retry_after_unless_configured() -> None:
    sandbox = QboSandbox(throttle_per_minute=0)
    qbo = connect(sandbox, sandbox.add_company())
    assert "retry-after" not in qbo.read("item", "1").headers  # Intuit documents none
    sandbox.retry_after = 7
    assert qbo.read("item", "1").headers["retry-after"] == "7"


def test_latency_is_configurable_within_its_jitter() -> None:
    sandbox = QboSandbox(latency=0.2, latency_jitter=0.1)
    assert all(0.1 <= sandbox.serve_time() <= 0.3 for _ in range(50))
    assert QboSandbox().serve_time() == 0.0


def test_requests_are_counted_as_metered_reads_writes_or_oauth(qbo: Qbo) -> None:
    start = len(qbo.sandbox.request_log)
    customer = qbo.customer("Counted")
    qbo.read("customer", customer["Id"])
    qbo.query("select * from Customer")
    qbo.client.post(qbo.url("query"), content=b"select * from Item", headers=qbo.headers())
    qbo.client.get(
        qbo.url("cdc"), params={"entities": "Customer", "changedSince": "2020-01-01T00:00:00Z"}, headers=qbo.headers()
    )
    assert qbo.sandbox.request_counts(qbo.realm, since=start) == {"write": 1, "read": 4}
    kinds = [(r.method, r.operation, r.kind) for r in qbo.sandbox.request_log[start:]]
    assert kinds == [
        ("POST", "create", "write"),
        ("GET", "read", "read"),
        ("GET", "query", "read"),
        ("POST", "query", "read"),
        ("GET", "cdc", "read"),
    ]
    qbo.client.post("/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert qbo.sandbox.request_log[-1].kind == "oauth"


def test_control_api_sets_the_limits_and_lists_kinds() -> None:
    sandbox = QboSandbox()
    control = TestClient(create_app(sandbox))
    settings = {"concurrent_per_realm": 3, "batch_per_minute": 5, "latency": 0.05, "retry_after": 60}
    assert control.patch("/_sandbox/settings", json=settings).status_code == 200
    assert (sandbox.concurrent_per_realm, sandbox.batch_per_minute, sandbox.latency, sandbox.retry_after) == (
        3,
        5,
        0.05,
        60,
    )
    assert control.patch("/_sandbox/settings", json={"latency": -1}).status_code == 422
    qbo = connect(sandbox, sandbox.add_company())
    control.patch("/_sandbox/settings", json={"latency": 0})
    qbo.read("item", "1")
    assert control.get("/_sandbox/requests").json()[-1]["kind"] == "read"

"""The CRM emulator's limits behave like HighLevel's under load, and the product's pacing keeps under them.

HighLevel counts 100 requests per 10 s per location in a sliding window and answers every request with its
``X-RateLimit-*`` headers, 429 when over. The pacing test runs the real ``CrmClient`` from many threads of two
limiter instances sharing one Redis (as two worker processes would) against the emulator served over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from qbconnect.crm.client import CrmClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.ratelimit import RateLimiter
from qbconnect.sandbox.crm import create_app
from qbconnect.sandbox.crm.ratelimit import BurstLimiter
from qbconnect.sandbox.server import serve_in_thread
from tests.sandbox.crm_fixtures import LOCATION, Crm, make_crm
from tests.support.databases import fresh_redis_queue

HEADERS = (
    "X-RateLimit-Limit-Daily",
    "X-RateLimit-Daily-Remaining",
    "X-RateLimit-Interval-Milliseconds",
    "X-RateLimit-Max",
    "X-RateLimit-Remaining",
)


def test_the_window_slides_per_location() -> None:
    limiter = BurstLimiter(limit=3, window_seconds=10)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    at = [start, start + timedelta(seconds=4), start + timedelta(seconds=8)]
    assert [limiter.hit("loc", t).allowed for t in at] == [True, True, True]
    assert not limiter.hit("loc", start + timedelta(seconds=9.9)).allowed
    assert limiter.hit("other", start + timedelta(seconds=9.9)).allowed  # another location: its own window
    # a fixed window would open at 10 s for all three; a sliding one frees one slot as each request ages out
    assert limiter.hit("loc", start + timedelta(seconds=10.1)).allowed
    assert not limiter.hit("loc", start + timedelta(seconds=12)).allowed
    verdict = limiter.hit("loc", start + timedelta(seconds=14.1))
    assert verdict.allowed and verdict.headers["X-RateLimit-Remaining"] == "0"


def test_every_answer_carries_the_headers_and_429_when_over() -> None:
    crm = make_crm(rate_limit=3, rate_window_seconds=10)
    try:
        answers = [crm.get(f"/contacts/missing{n}") for n in range(3)]  # 400 answers count and carry them too
        answers.append(crm.client.post("/contacts/", json={"locationId": LOCATION}, headers=crm.headers()))
        assert [a.status_code for a in answers] == [400, 400, 400, 429]
        for answer in answers:
            assert all(name.lower() in answer.headers for name in HEADERS), answer.headers
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert answers[0].headers["X-RateLimit-Interval-Milliseconds"] == "10000"
        assert [r.status for r in crm.sandbox.request_log][-1] == 429
    finally:
        crm.sandbox.close()


def test_latency_is_configurable() -> None:
    crm = make_crm(latency=(0.05, 0.2))
    try:
        delays = [crm.sandbox.answer_delay() for _ in range(50)]
        assert all(0.05 <= d <= 0.2 for d in delays) and len(set(delays)) > 1
        assert make_crm(latency=0.1).sandbox.answer_delay() == 0.1
        assert make_crm().sandbox.answer_delay() == 0.0
    finally:
        crm.sandbox.close()


# ---- the product's pacing against it ------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis_queue() as url:
        yield url


def _pace(crm: Crm, redis_url: str, *, requests: int, threads_per_process: int) -> list[datetime]:
    """``requests`` GETs from 2 x ``threads_per_process`` threads; the emulator's times of those it answered."""
    server = serve_in_thread(create_app(crm.sandbox))
    token = StaticTokenSource(crm.token["access_token"])
    remaining = [requests]
    lock = threading.Lock()
    contact = crm.sandbox.create_contact(LOCATION, email="paced@example.com")

    def worker(client: CrmClient) -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            assert client.get_contact(contact["id"]) is not None

    try:
        workers = []
        for _ in range(2):  # two processes: each its own limiter and HTTP pool, one shared Redis
            limiter = RateLimiter(redis_url)
            http = httpx.Client(timeout=30.0)
            for _ in range(threads_per_process):
                client = CrmClient(
                    location_id=LOCATION, api_base=server.base_url, tokens=token, http=http, limiter=limiter
                )
                workers.append(threading.Thread(target=worker, args=(client,)))
        start = len(crm.sandbox.request_log)
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    finally:
        server.stop()
    log = crm.sandbox.request_log[start:]
    assert [r.status for r in log if r.status != 200] == []  # not a single 429
    assert len(log) == requests
    return sorted(r.at for r in log)


def _busiest(times: list[datetime], seconds: float) -> int:
    busiest, low = 0, 0
    for high, moment in enumerate(times):
        while times[low] <= moment - timedelta(seconds=seconds):
            low += 1
        busiest = max(busiest, high - low + 1)
    return busiest


@pytest.mark.redis
def test_many_threads_of_two_processes_never_get_a_429(redis_url: str) -> None:
    """The emulator at 100 per 2 s (the client learns it from the headers): 16 threads, 220 requests."""
    crm = make_crm(rate_limit=100, rate_window_seconds=2.0, latency=(0.0, 0.01))
    try:
        times = _pace(crm, redis_url, requests=220, threads_per_process=8)
    finally:
        crm.sandbox.close()
    assert 60 <= _busiest(times, 2.0) <= 100  # the budget was used, never overdrawn


@pytest.mark.slow
@pytest.mark.redis
def test_highlevels_own_window_is_never_exceeded(redis_url: str) -> None:
    """HighLevel's 100 per 10 s with answers taking 20-120 ms: 16 threads, 250 requests, no 429."""
    crm = make_crm(latency=(0.02, 0.12))
    try:
        times = _pace(crm, redis_url, requests=250, threads_per_process=8)
    finally:
        crm.sandbox.close()
    assert 90 <= _busiest(times, 10.0) <= 100

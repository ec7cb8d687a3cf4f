"""Shared request budgets: every window holds, nothing is wasted, draws are atomic across threads and
processes (two limiters on one Redis), and the CRM budget follows what HighLevel's headers say."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from limits import parse

from qbconnect.ratelimit import (
    CRM_BUDGET,
    MIN_GUARD_SECONDS,
    WINDOW_GUARD,
    Budget,
    BudgetExhaustedError,
    RateLimiter,
    Window,
)
from tests.support.databases import fresh_redis_queue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> RateLimiter:
    return RateLimiter("memory://", clock=clock)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with fresh_redis_queue() as url:
        yield url


def test_a_request_counts_only_when_every_window_has_room(memory: RateLimiter) -> None:
    budget = Budget("t", (parse("5/10 seconds"), parse("3/second")))
    granted = [memory.try_acquire(budget, "loc") for _ in range(6)]
    assert granted == [True, True, True, False, False, False]  # the 3/s window is full
    assert memory.used(budget, "loc") == [3, 3]  # refused requests did not use up the 10 s window


def test_windows_slide(memory: RateLimiter, clock: Clock) -> None:
    budget = Budget("t", (parse("2/10 seconds"),))
    assert memory.try_acquire(budget, "loc")
    clock.now += 6
    assert memory.try_acquire(budget, "loc")
    assert not memory.try_acquire(budget, "loc")
    clock.now += 4.5  # the first request left the window, the second not yet
    assert memory.try_acquire(budget, "loc")
    assert not memory.try_acquire(budget, "loc")


def test_budgets_are_per_key(memory: RateLimiter) -> None:
    budget = Budget("t", (parse("1/minute"),))
    assert memory.try_acquire(budget, "a") and memory.try_acquire(budget, "b")
    assert not memory.try_acquire(budget, "a")


def test_many_threads_never_exceed_the_crm_window() -> None:
    limiter = RateLimiter("memory://")
    granted = _hammer([limiter], threads_per_limiter=8, attempts=40)
    assert granted == 100  # HighLevel's 100 per 10 s, exactly, from 320 attempts


@pytest.mark.redis
def test_two_limiters_on_one_redis_share_the_budget_exactly(redis_url: str) -> None:
    """Two processes' limiters (two instances, two connections): 16 threads, 640 attempts, 100 granted."""
    limiters = [RateLimiter(redis_url), RateLimiter(redis_url)]
    assert _hammer(limiters, threads_per_limiter=8, attempts=40) == 100
    assert limiters[0].used(CRM_BUDGET, "loc") == limiters[1].used(CRM_BUDGET, "loc") == [100]


@pytest.mark.redis
def test_a_draw_over_several_windows_is_atomic_on_redis(redis_url: str) -> None:
    budget = Budget("t", (parse("5/10 seconds"), parse("3/second")))
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    granted = [limiter.try_acquire(budget, "loc") for limiter in (first, second) * 3]
    assert granted == [True, True, True, False, False, False]
    assert first.used(budget, "loc") == [3, 3]  # a refusal by the 1 s window wasted no slot of the 10 s one


def _hammer(limiters: list[RateLimiter], *, threads_per_limiter: int, attempts: int) -> int:
    granted: list[bool] = []
    lock = threading.Lock()

    def worker(limiter: RateLimiter) -> None:
        for _ in range(attempts):
            ok = limiter.try_acquire(CRM_BUDGET, "loc")
            with lock:
                granted.append(ok)

    threads = [
        threading.Thread(target=worker, args=(limiter,)) for limiter in limiters for _ in range(threads_per_limiter)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(granted)


# ---- following the platform's answers ------------------------------------------------------------------


def test_headers_set_the_window_a_little_longer_than_the_platforms(memory: RateLimiter) -> None:
    assert memory.windows(CRM_BUDGET, "loc") == (Window(100, 10.0),)  # before any answer: the documented limit
    memory.observe(CRM_BUDGET, "loc", limit=100, interval=10.0, remaining=99)
    assert memory.windows(CRM_BUDGET, "loc") == (Window(100, 10.0 * (1 + WINDOW_GUARD)),)  # 11 s
    memory.observe(CRM_BUDGET, "loc", limit=50, interval=2.0, remaining=49)
    assert memory.windows(CRM_BUDGET, "loc") == (Window(50, 2.0 + MIN_GUARD_SECONDS),)
    assert memory.windows(CRM_BUDGET, "other") == (Window(100, 10.0),)  # per location


def test_requests_the_platform_counted_but_we_did_not_are_charged(memory: RateLimiter) -> None:
    for _ in range(10):
        assert memory.try_acquire(CRM_BUDGET, "loc")
    memory.observe(CRM_BUDGET, "loc", limit=100, interval=10.0, remaining=95)  # HighLevel saw 5: in flight
    assert memory.used(CRM_BUDGET, "loc") == [10]
    memory.observe(CRM_BUDGET, "loc", limit=100, interval=10.0, remaining=60)  # 40 seen: 30 we never drew
    assert memory.used(CRM_BUDGET, "loc") == [40]
    memory.observe(CRM_BUDGET, "loc", limit=100, interval=10.0, remaining=0)  # nothing left: nobody draws
    assert memory.used(CRM_BUDGET, "loc") == [100]
    assert not memory.try_acquire(CRM_BUDGET, "loc")


def test_a_penalty_holds_the_whole_budget_for_its_wait(memory: RateLimiter, clock: Clock) -> None:
    memory.penalize(CRM_BUDGET, "loc", 10.0)
    assert not memory.try_acquire(CRM_BUDGET, "loc")
    memory.penalize(CRM_BUDGET, "loc", 2.0)  # a shorter penalty never shortens a longer one
    clock.now += 5
    assert not memory.try_acquire(CRM_BUDGET, "loc")
    clock.now += 5.1
    assert memory.try_acquire(CRM_BUDGET, "loc")
    assert memory.try_acquire(CRM_BUDGET, "other")


@pytest.mark.redis
def test_a_penalty_holds_every_process(redis_url: str) -> None:
    first, second = RateLimiter(redis_url), RateLimiter(redis_url)
    first.penalize(CRM_BUDGET, "loc", 30.0)
    assert not second.try_acquire(CRM_BUDGET, "loc")
    with pytest.raises(BudgetExhaustedError) as caught:
        second.acquire(CRM_BUDGET, "loc", timeout=1.0)
    assert 25.0 < caught.value.wait <= 30.0


def test_a_share_leaves_the_rest_of_the_window_free(memory: RateLimiter) -> None:
    granted = sum(memory.try_acquire(CRM_BUDGET, "loc", share=0.9) for _ in range(100))
    assert granted == 90
    assert sum(memory.try_acquire(CRM_BUDGET, "loc") for _ in range(100)) == 10  # live syncs still get in

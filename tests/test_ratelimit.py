"""Shared request budgets: every window holds, nothing is wasted, many threads never exceed a window."""

from __future__ import annotations

import threading

from limits import parse

from qbconnect.ratelimit import CRM_BUDGET, Budget, RateLimiter


def test_a_request_counts_only_when_every_window_has_room() -> None:
    limiter = RateLimiter("memory://")
    budget = Budget("t", (parse("5/10 seconds"), parse("3/second")))
    granted = [limiter.try_acquire(budget, "loc") for _ in range(6)]
    assert granted == [True, True, True, False, False, False]  # the 3/s window is full
    stats = limiter._limiter.get_window_stats(budget.windows[0], "t", "loc")
    assert stats.remaining == 2  # refused requests did not use up the 10 s window


def test_budgets_are_per_key() -> None:
    limiter = RateLimiter("memory://")
    budget = Budget("t", (parse("1/minute"),))
    assert limiter.try_acquire(budget, "a") and limiter.try_acquire(budget, "b")
    assert not limiter.try_acquire(budget, "a")


def test_many_threads_never_exceed_the_crm_window() -> None:
    limiter = RateLimiter("memory://")
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            ok = limiter.try_acquire(CRM_BUDGET, "loc")
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100  # HighLevel's 100 per 10 s, exactly, from 320 attempts


def test_penalize_fills_the_window_so_everyone_backs_off() -> None:
    limiter = RateLimiter("memory://")
    budget = Budget("t", (parse("10/minute"),))
    assert limiter.try_acquire(budget, "realm")
    limiter.penalize(budget, "realm", 60)
    assert not limiter.try_acquire(budget, "realm")

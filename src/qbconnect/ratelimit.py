"""Request budgets shared by every worker: per QBO company and per CRM location.

Backed by ``limits`` with memory storage on one machine and Redis storage when scaled out, so all
workers draw from the same budget. ``acquire`` blocks until the request fits in every window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Budget:
    name: str
    windows: Sequence[RateLimitItem]


# Intuit: 500 requests/min per realm and 10 requests/s per realm+app. We stay a little under both.
QBO_BUDGET = Budget("qbo", (RateLimitItemPerMinute(480), RateLimitItemPerSecond(9)))
# HighLevel: 100 requests per 10 seconds per location (burst).
CRM_BUDGET = Budget("crm", (parse("100/10 seconds"),))


class RateLimiter:
    """Blocking moving-window limiter. ``storage_url`` is ``memory://`` or ``redis://…``."""

    def __init__(self, storage_url: str = "memory://") -> None:
        self._storage = storage_from_string(storage_url)
        self._limiter = MovingWindowRateLimiter(self._storage)
        # Test-then-hit over several windows must not be interleaved by this process's threads, or a hit
        # refused by the second window would waste a slot of the first. (Across processes on Redis the
        # pair is not atomic; the waste is bounded by one slot per collision.)
        self._lock = threading.Lock()

    def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.try_acquire(budget, key):
                return
            wait = self._wait_seconds(budget, key)
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"rate budget {budget.name}:{key} stayed full for {timeout:.0f}s")
            time.sleep(wait)

    def try_acquire(self, budget: Budget, key: str) -> bool:
        with self._lock:
            for window in budget.windows:
                if not self._limiter.test(window, budget.name, key):
                    return False
            return all(self._limiter.hit(window, budget.name, key) for window in budget.windows)

    def _wait_seconds(self, budget: Budget, key: str) -> float:
        waits = [0.01]
        now = time.time()
        for window in budget.windows:
            stats = self._limiter.get_window_stats(window, budget.name, key)
            if stats.remaining <= 0:
                waits.append(max(0.01, stats.reset_time - now))
        return min(max(waits), 1.0)

    def penalize(self, budget: Budget, key: str, seconds: float) -> None:
        """After a 429 the whole budget waits: fill the shortest window so others back off too."""
        window = budget.windows[-1]
        stats = self._limiter.get_window_stats(window, budget.name, key)
        if stats.remaining > 0:
            self._limiter.hit(window, budget.name, key, cost=stats.remaining)
        del seconds  # the window's own reset time is the wait

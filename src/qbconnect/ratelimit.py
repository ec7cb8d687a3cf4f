"""Request budgets shared by every worker: per QBO company and per CRM location.

Backed by ``limits`` with memory storage on one machine and Redis storage when scaled out, so all
workers draw from the same budget. ``acquire`` blocks until the request fits in every window.

QuickBooks also limits how many requests of one app may be *in flight* for a company, and a 429 there
means "wait a minute": :class:`Gate` (``RateLimiter.gate``, same storage) holds both, a counting
semaphore with leases (a crashed holder's slot comes back when its lease ends) and a shared pause.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class Budget:
    name: str
    windows: Sequence[RateLimitItem]


# Intuit: 500 requests/min per realm and 10 requests/s per realm+app. We stay a little under both.
QBO_BUDGET = Budget("qbo", (RateLimitItemPerMinute(480), RateLimitItemPerSecond(9)))
# Intuit: 40 batch requests/min per realm+app (each also counts as one request in QBO_BUDGET).
QBO_BATCH_BUDGET = Budget("qbo-batch", (RateLimitItemPerMinute(38),))
# Intuit: at most 10 requests of one app in flight for one realm (more → 429). We keep a little under.
QBO_CONCURRENCY = 8
# How long one request may hold its slot before the slot is presumed lost (a killed worker): longer than
# the slowest QuickBooks answer (Intuit times requests out after 120 s).
QBO_SLOT_LEASE_SECONDS = 180.0
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
        self.gate = Gate(storage_url)

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


class _GateStore(Protocol):
    def try_take(self, name: str, limit: int, lease: float) -> str | None: ...

    def give_back(self, name: str, token: str) -> None: ...

    def pause(self, name: str, seconds: float) -> None: ...

    def paused_for(self, name: str) -> float: ...


class _MemoryGateStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, float]] = {}  # name -> token -> lease end (monotonic)
        self._paused: dict[str, float] = {}  # name -> pause end (monotonic)

    def try_take(self, name: str, limit: int, lease: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            held = self._held.setdefault(name, {})
            for token in [t for t, end in held.items() if end <= now]:
                del held[token]
            if len(held) >= limit:
                return None
            token = uuid.uuid4().hex
            held[token] = now + lease
            return token

    def give_back(self, name: str, token: str) -> None:
        with self._lock:
            self._held.get(name, {}).pop(token, None)

    def pause(self, name: str, seconds: float) -> None:
        with self._lock:
            self._paused[name] = max(self._paused.get(name, 0.0), time.monotonic() + seconds)

    def paused_for(self, name: str) -> float:
        with self._lock:
            return max(0.0, self._paused.get(name, 0.0) - time.monotonic())


# Slots are a sorted set (token -> lease end, in Redis' own clock) so a holder that died frees its slot
# when the lease ends; taking one is atomic (one script).
_TAKE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
# A pause only ever grows: a shorter one asked meanwhile does not cut a longer one short.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class _RedisGateStore:
    def __init__(self, url: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._take = self._redis.register_script(_TAKE)
        self._pause = self._redis.register_script(_PAUSE)

    def try_take(self, name: str, limit: int, lease: float) -> str | None:
        token = uuid.uuid4().hex
        taken = self._take(keys=[f"qbconnect:slots:{name}"], args=[limit, max(1, int(lease * 1000)), token])
        return token if int(taken) == 1 else None

    def give_back(self, name: str, token: str) -> None:
        self._redis.zrem(f"qbconnect:slots:{name}", token)

    def pause(self, name: str, seconds: float) -> None:
        if seconds > 0:
            self._pause(keys=[f"qbconnect:pause:{name}"], args=[max(1, int(seconds * 1000))])

    def paused_for(self, name: str) -> float:
        left = int(self._redis.pttl(f"qbconnect:pause:{name}"))
        return max(0.0, left / 1000.0)


class Gate:
    """Concurrency slots and shared pauses per (budget, key), in memory or in Redis (every process)."""

    def __init__(self, storage_url: str = "memory://") -> None:
        self._store: _GateStore
        if storage_url.startswith(("redis://", "rediss://", "unix://")):
            self._store = _RedisGateStore(storage_url)
        else:
            self._store = _MemoryGateStore()

    def take(
        self,
        budget: Budget,
        key: str,
        limit: int,
        *,
        timeout: float = 120.0,
        lease: float = QBO_SLOT_LEASE_SECONDS,
        poll: float = 0.01,
    ) -> str:
        """Take one of ``limit`` slots of ``key`` (its token); TimeoutError when none frees in time."""
        name = f"{budget.name}:{key}"
        deadline = time.monotonic() + timeout
        wait = poll
        while (token := self._store.try_take(name, limit, lease)) is None:
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"all {limit} request slots of {name} stayed busy for {timeout:.0f}s")
            time.sleep(wait)
            wait = min(wait * 2, 0.1)
        return token

    def give_back(self, budget: Budget, key: str, token: str) -> None:
        self._store.give_back(f"{budget.name}:{key}", token)

    @contextmanager
    def slot(self, budget: Budget, key: str, limit: int, *, timeout: float = 120.0) -> Iterator[None]:
        """Hold one of ``limit`` slots of ``key`` for the block."""
        token = self.take(budget, key, limit, timeout=timeout)
        try:
            yield
        finally:
            self.give_back(budget, key, token)

    def pause(self, budget: Budget, key: str, seconds: float) -> None:
        """Nobody sends to ``key`` for ``seconds`` (a longer pause already set stays)."""
        self._store.pause(f"{budget.name}:{key}", seconds)

    def paused_for(self, budget: Budget, key: str) -> float:
        """Seconds left of the current pause of ``key`` (0 when none)."""
        return self._store.paused_for(f"{budget.name}:{key}")

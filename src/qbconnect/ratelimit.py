"""Request budgets shared by every worker: per QBO company and per CRM location.

A budget is one or more sliding windows ("at most N requests in any S seconds"), kept as a log of request
times per window: in this process's memory (``memory://``, one machine) or in Redis (``redis://…``, every
process of every machine), so all workers draw from the same budget. A draw is atomic across every window of
the budget and across processes: on Redis one server-side Lua script drops expired entries, checks every
window and records the request, on Redis's own clock; in memory the same under a lock. ``acquire`` blocks until
the request fits.

The CRM location budget also follows HighLevel's answers (:meth:`RateLimiter.observe`): the
``X-RateLimit-Max`` / ``X-RateLimit-Interval-Milliseconds`` it reports become the location's window (a little
longer than the platform's, so the time a request spends between our draw and HighLevel's count cannot put 101
requests into HighLevel's 10 seconds), and ``X-RateLimit-Remaining`` lower than our own count (requests we did
not see) is charged to the shared budget. After a 429 :meth:`RateLimiter.penalize` holds the whole budget for
every thread and process until the wait is over.

QuickBooks also limits how many requests of one app may be *in flight* for a company, and a 429 there
means "wait a minute": :class:`Gate` (``RateLimiter.gate``, same storage) holds both, a counting
semaphore with leases (a crashed holder's slot comes back when its lease ends) and a shared pause.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond, parse


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
# HighLevel: 100 requests per 10 seconds per location (burst); replaced by what HighLevel's headers say.
CRM_BUDGET = Budget("crm", (parse("100/10 seconds"),))

# A learned window is this much longer than the platform's (a tenth, at least a second): a request drawn at
# the end of our window may reach the platform up to this much later than the one drawn at its start, and
# the platform still never counts both in one of its windows.
WINDOW_GUARD = 0.1
MIN_GUARD_SECONDS = 1.0
KEY_PREFIX = "qbconnect:pace"


@dataclass(frozen=True)
class Window:
    """At most ``limit`` requests in any ``seconds``."""

    limit: int
    seconds: float


class BudgetExhaustedError(TimeoutError):
    """The budget stays full for longer than the caller would wait; ``wait`` is how long it stays full."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class _Store(Protocol):
    def draw(self, keys: Sequence[str], windows: Sequence[Window], cost: int, *, force: bool) -> float: ...

    def used(self, key: str, seconds: float) -> int: ...

    def hold(self, key: str, seconds: float) -> None: ...


class _MemoryStore:
    """Sliding-window logs in this process (monotonic clock), under one lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._logs: dict[str, deque[float]] = {}
        self._holds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _log(self, key: str, seconds: float, now: float) -> deque[float]:
        log = self._logs.setdefault(key, deque())
        while log and log[0] <= now - seconds:
            log.popleft()
        return log

    def draw(self, keys: Sequence[str], windows: Sequence[Window], cost: int, *, force: bool) -> float:
        hold_key, *window_keys = keys
        with self._lock:
            now = self._clock()
            held = self._holds.get(hold_key, 0.0) - now
            if held > 0 and not force:
                return held
            wait = 0.0
            logs = [self._log(key, w.seconds, now) for key, w in zip(window_keys, windows, strict=True)]
            for log, window in zip(logs, windows, strict=True):
                over = len(log) + min(cost, window.limit) - window.limit
                if over > 0:
                    wait = max(wait, log[over - 1] + window.seconds - now)
            if wait > 0 and not force:
                return wait
            for log in logs:
                log.extend([now] * cost)
            return 0.0

    def used(self, key: str, seconds: float) -> int:
        with self._lock:
            return len(self._log(key, seconds, self._clock()))

    def hold(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._holds[key] = max(self._holds.get(key, 0.0), until)


# KEYS[1]: the budget's hold key; KEYS[2..]: one sorted set per window (member: unique id, score: ms).
# ARGV: cost, force (0/1), member prefix, then limit and window length in ms per window.
# Returns 0 when drawn, else the milliseconds until the request would fit.
_DRAW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local force = tonumber(ARGV[2]) == 1
local held = redis.call('PTTL', KEYS[1])
if held > 0 and not force then
  return held
end
local wait = 0
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 + (i - 1) * 2])
  local span = tonumber(ARGV[3 + (i - 1) * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - span)
  local over = redis.call('ZCARD', KEYS[i]) + math.min(cost, limit) - limit
  if over > 0 then
    local entry = redis.call('ZRANGE', KEYS[i], over - 1, over - 1, 'WITHSCORES')
    local free = tonumber(entry[2]) + span - now
    if free > wait then wait = free end
  end
end
if wait > 0 and not force then
  return math.max(1, math.ceil(wait))
end
for i = 2, #KEYS do
  local span = tonumber(ARGV[3 + (i - 1) * 2])
  for n = 1, cost do
    redis.call('ZADD', KEYS[i], now, ARGV[3] .. ':' .. n)
  end
  redis.call('PEXPIRE', KEYS[i], math.ceil(span))
end
return 0
"""

# KEYS[1]: a window's sorted set; ARGV: window length in ms. Returns the entries inside the window.
_USED_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1]: the hold key; ARGV: ms. A hold is only ever extended, never shortened.
_HOLD_LUA = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
"""


class _RedisStore:
    """The same logs in Redis, so every process of every machine shares them (Redis's clock)."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._draw = self._redis.register_script(_DRAW_LUA)
        self._used = self._redis.register_script(_USED_LUA)
        self._hold = self._redis.register_script(_HOLD_LUA)

    def draw(self, keys: Sequence[str], windows: Sequence[Window], cost: int, *, force: bool) -> float:
        args: list[Any] = [cost, 1 if force else 0, uuid.uuid4().hex]
        for window in windows:
            args += [window.limit, window.seconds * 1000.0]
        return float(self._draw(keys=list(keys), args=args)) / 1000.0

    def used(self, key: str, seconds: float) -> int:
        return int(self._used(keys=[key], args=[seconds * 1000.0]))

    def hold(self, key: str, seconds: float) -> None:
        self._hold(keys=[key], args=[max(1, math.ceil(seconds * 1000.0))])


def _store_for(url: str, clock: Callable[[], float] | None) -> _Store:
    if url.startswith("memory://"):
        return _MemoryStore(clock or time.monotonic)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _RedisStore(url)
    raise ValueError(f"unsupported rate limit storage {url.split('://', 1)[0]!r} (use memory:// or redis://)")


def _windows_of(budget: Budget) -> tuple[Window, ...]:
    return tuple(Window(item.amount, float(item.get_expiry())) for item in budget.windows)


class RateLimiter:
    """Blocking sliding-window limiter. ``storage_url`` is ``memory://`` or ``redis://…`` (``clock``: the
    memory store's clock, for tests; Redis keeps its own)."""

    def __init__(self, storage_url: str = "memory://", *, clock: Callable[[], float] | None = None) -> None:
        self._store = _store_for(storage_url, clock)
        self.gate = Gate(storage_url)
        # What the platform said each budget is (per key), learned from its answers in this process.
        self._learned: dict[tuple[str, str], tuple[Window, ...]] = {}
        self._learned_lock = threading.Lock()

    # ---- drawing -----------------------------------------------------------------------------------

    def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0, share: float = 1.0) -> None:
        """Wait until the request fits in every window of ``budget`` for ``key``, then count it.

        ``share`` < 1 lets a bulk caller (the contact import) fill only that part of each window, so live
        syncs always find room. Raises :class:`BudgetExhaustedError` when the wait would outlast ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            wait = self._draw(budget, key, share=share)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise BudgetExhaustedError(
                    f"rate budget {budget.name}:{key} stays full for {wait:.0f}s (waiting at most {timeout:.0f}s)",
                    wait,
                )
            time.sleep(min(wait, 1.0) + 0.002)

    def try_acquire(self, budget: Budget, key: str, *, share: float = 1.0) -> bool:
        return self._draw(budget, key, share=share) <= 0

    def _draw(self, budget: Budget, key: str, *, share: float) -> float:
        windows = self.windows(budget, key)
        if share < 1.0:
            windows = tuple(Window(max(1, int(w.limit * share)), w.seconds) for w in windows)
        return self._store.draw(self._keys(budget, key, len(windows)), windows, 1, force=False)

    # ---- what the platform says --------------------------------------------------------------------

    def windows(self, budget: Budget, key: str) -> tuple[Window, ...]:
        """The windows in force for ``key``: learned from the platform's answers, else the budget's own."""
        learned = self._learned.get((budget.name, key))
        return learned if learned is not None else _windows_of(budget)

    def observe(self, budget: Budget, key: str, *, limit: int, interval: float, remaining: int | None) -> None:
        """Follow one answer's rate-limit headers: the platform allows ``limit`` requests per ``interval``
        seconds and has ``remaining`` of them left after counting this request.

        The window becomes ``limit`` per ``interval`` stretched by :data:`WINDOW_GUARD` (at least
        :data:`MIN_GUARD_SECONDS`). When the platform has
        counted more than our shared log holds (requests we did not draw: another installation of the app's
        budget, a process on a different store), the difference is charged to the log, so every worker slows
        down as the platform sees it."""
        if limit <= 0 or interval <= 0:
            return
        window = Window(limit, interval + max(interval * WINDOW_GUARD, MIN_GUARD_SECONDS))
        with self._learned_lock:
            if self._learned.get((budget.name, key)) != (window,):
                self._learned[(budget.name, key)] = (window,)
        if remaining is None:
            return
        (log_key,) = self._keys(budget, key, 1)[1:]
        seen = limit - max(0, remaining)
        unseen = seen - self._store.used(log_key, window.seconds)
        if unseen > 0:
            self._store.draw(self._keys(budget, key, 1), (window,), unseen, force=True)

    def penalize(self, budget: Budget, key: str, seconds: float) -> None:
        """After a 429 the whole budget waits ``seconds``: every thread and process drawing for ``key``."""
        if seconds > 0:
            self._store.hold(self._keys(budget, key, 0)[0], seconds)

    def used(self, budget: Budget, key: str) -> list[int]:
        """Requests counted in each window in force for ``key`` (for status and tests)."""
        windows = self.windows(budget, key)
        keys = self._keys(budget, key, len(windows))[1:]
        return [self._store.used(k, w.seconds) for k, w in zip(keys, windows, strict=True)]

    @staticmethod
    def _keys(budget: Budget, key: str, count: int) -> list[str]:
        base = f"{KEY_PREFIX}:{budget.name}:{key}"
        return [f"{base}:hold", *(f"{base}:w{i}" for i in range(count))]


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

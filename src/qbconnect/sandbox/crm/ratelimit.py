"""HighLevel's API 2.0 limits: a burst window (100 requests / 10 s) and a daily cap (200,000), per resource
(location or company), with the ``X-RateLimit-*`` headers on every response."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DAILY_LIMIT = 200_000


@dataclass
class Verdict:
    allowed: bool
    headers: dict[str, str]


@dataclass
class BurstLimiter:
    limit: int
    window_seconds: float
    daily_limit: int = DAILY_LIMIT
    _hits: dict[str, deque[datetime]] = field(default_factory=dict)
    _daily: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, resource: str, now: datetime) -> Verdict:
        """Count one request for ``resource``; refused requests are not counted."""
        with self._lock:
            window = self._hits.setdefault(resource, deque())
            start = now - timedelta(seconds=self.window_seconds)
            while window and window[0] <= start:
                window.popleft()
            day_key = (resource, now.date().isoformat())
            used_today = self._daily.get(day_key, 0)
            allowed = len(window) < self.limit and used_today < self.daily_limit
            if allowed:
                window.append(now)
                used_today += 1
                self._daily[day_key] = used_today
            headers = {
                "X-RateLimit-Limit-Daily": str(self.daily_limit),
                "X-RateLimit-Daily-Remaining": str(max(self.daily_limit - used_today, 0)),
                "X-RateLimit-Interval-Milliseconds": str(int(self.window_seconds * 1000)),
                "X-RateLimit-Max": str(self.limit),
                "X-RateLimit-Remaining": str(max(self.limit - len(window), 0)),
            }
            return Verdict(allowed=allowed, headers=headers)

"""The settings page's short-lived cache: an entry answers until its seconds are up, then nothing."""

from __future__ import annotations

import pytest

from qbconnect.services import short_cache
from qbconnect.services.short_cache import ShortCache


def test_an_entry_lives_its_seconds_then_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(short_cache.time, "monotonic", lambda: now[0])
    cache: ShortCache[str, int] = ShortCache(60)
    assert cache.get("loc") is None
    cache.put("loc", 7)
    now[0] = 159.9
    assert cache.get("loc") == 7
    now[0] = 160.0
    assert cache.get("loc") is None
    cache.put("loc", 8)
    cache.clear()
    assert cache.get("loc") is None

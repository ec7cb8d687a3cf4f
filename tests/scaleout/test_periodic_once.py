"""Periodic passes run once per interval across the fleet, not once per process: two tickers (two processes'
worth of Huey connections) sharing one queue (the SQLite queue file, or Redis) run each pass once."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest
from sqlalchemy.orm import Session

from qbconnect.runtime import Runtime
from qbconnect.sync.engine import registry
from qbconnect.worker import PassClaims, Queue, Ticker

EVERY = 10.0


@dataclass
class Passes:
    ran: Counter[tuple[str, int]] = field(default_factory=Counter)  # (pass, interval number) -> runs
    wall: float = 0.0  # the wall clock the tickers are told


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Passes:
    """Two periodic passes that count their runs per interval number (of their own interval)."""
    state = Passes()
    lock = threading.Lock()

    def hook(name: str, every: float) -> registry.Periodic:
        def fn(runtime: Runtime, session: Session) -> None:
            with lock:
                state.ran[(name, int(state.wall // every))] += 1

        return registry.Periodic(name=name, every_seconds=lambda rt: every, fn=fn)

    monkeypatch.setattr(registry, "PERIODIC", [hook("sweep_a", EVERY), hook("sweep_b", 3 * EVERY)])
    return state


def _tickers(runtime: Runtime) -> list[Ticker]:
    return [Ticker(runtime, interval=60, queue=Queue(runtime)) for _ in range(2)]


def test_two_tickers_run_each_pass_once_per_interval(runtime: Runtime, passes: Passes) -> None:
    first, second = _tickers(runtime)
    who: list[tuple[float, str, list[str]]] = []
    for wall in (1000.0, 1000.5, 1004.0, 1009.9, 1010.0, 1015.0, 1019.0, 1023.0, 1031.0, 1039.0):
        for name, ticker in (("first", first), ("second", second)):
            passes.wall = wall
            who.append((wall, name, ticker.tick(now=wall, wall=wall)))
    assert passes.ran == {
        ("sweep_a", 100): 1,
        ("sweep_a", 101): 1,
        ("sweep_a", 102): 1,
        ("sweep_a", 103): 1,
        ("sweep_b", 33): 1,
        ("sweep_b", 34): 1,
    }
    # the first ticker to look in an interval runs it; the other one sees it taken
    assert who[0] == (1000.0, "first", ["sweep_a", "sweep_b"]) and who[1] == (1000.0, "second", [])
    assert who[8] == (1010.0, "first", ["sweep_a"]) and who[9] == (1010.0, "second", [])


def test_concurrent_tickers_agree_on_one_runner(runtime: Runtime, passes: Passes) -> None:
    tickers = _tickers(runtime) + _tickers(runtime)
    passes.wall = 5000.0
    barrier = threading.Barrier(len(tickers))
    results: list[list[str]] = []

    def tick(ticker: Ticker) -> None:
        barrier.wait()
        results.append(ticker.tick(now=5000.0, wall=5000.0))

    threads = [threading.Thread(target=tick, args=(t,)) for t in tickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert passes.ran == {("sweep_a", 500): 1, ("sweep_b", 166): 1}
    assert sorted(name for ran in results for name in ran) == ["sweep_a", "sweep_b"]


def test_old_interval_keys_are_removed(runtime: Runtime) -> None:
    claims = PassClaims(Queue(runtime).huey)
    for wall in (100.0, 110.0, 120.0, 130.0):
        assert claims.claim("pass", EVERY, wall)
    keys = [f"{PassClaims.PREFIX}pass:{n}" for n in (10, 11, 12, 13)]
    assert [claims.storage.has_data_for_key(k) for k in keys] == [False, False, True, True]

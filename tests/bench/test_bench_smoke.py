"""The benchmarks still run (at a tiny size, emulators answering at once). They measure, they do not judge:
no figure here is a timing assert; what is checked is that a bench ran to its end and its counts agree."""

from __future__ import annotations

import json
from pathlib import Path

import bench._common
import pytest

from bench import budget, burst


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench._common, "RESULTS", tmp_path)
    monkeypatch.setenv("BENCH_PLATFORM_LATENCY", "0")


def test_burst_main_runs_a_tiny_burst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_BURST_INVOICES", "3")
    monkeypatch.setenv("BENCH_BURST_CONCURRENCY", "2")
    monkeypatch.setenv("BENCH_BURST_CUSTOMERS", "2")
    monkeypatch.setenv("QBCONNECT_SWEEP_INTERVAL_SECONDS", "1")  # the worker's first tick comes at once
    results = burst.main()
    assert results["invoices"] == 3
    assert results["ack_statuses"] == {200: 3}
    assert results["jobs"]["count"] >= 3
    assert json.loads((tmp_path / "burst.json").read_text())["invoices"] == 3


def test_budget_main_runs_a_tiny_month_and_its_two_counts_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget, "DAYS", 1)
    monkeypatch.setenv("BENCH_BUDGET_SCALE", "0.01")
    results = budget.main()
    assert results["events"]["CRM invoice paid"] == 1
    assert results["events"]["QuickBooks payment"] == 1
    # the product's own counter and the emulator's request record see the same reads
    assert results["reads_counted_by_product"] == results["reads_seen_by_emulator"] > 0
    assert json.loads((tmp_path / "budget.json").read_text())["days"] == 1

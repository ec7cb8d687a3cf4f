"""The QuickBooks read budget: metered reads counted per company, kind and month (UTC) for the whole app;
the monthly setting; shown in the API, ``qbconnect status`` and the settings page; near the budget the
sweeps slow down, at the budget non-essential reads stop (a skipped sync-log row says why) and writes go on."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, select
from typer.testing import CliRunner

from qbconnect.cli import app as cli_app
from qbconnect.config import Settings
from qbconnect.connections import read_budget
from qbconnect.connections.clients import qbo_client
from qbconnect.connections.read_budget import (
    BudgetState,
    read_budget_state,
    read_counts,
    record_read,
    sweep_interval_multiplier,
)
from qbconnect.db.migrate import alembic_config, upgrade
from qbconnect.db.models import Activity, Location
from qbconnect.qbo.client import ReadBudgetExhausted
from qbconnect.runtime import Runtime
from qbconnect.services.checks import CACHE_KEY, run_checks
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register
from tests.conftest import TEST_ADMIN, make_settings
from tests.support.migrations import schema_diffs
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

DEC_31 = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
JAN_1 = datetime(2027, 1, 1, tzinfo=UTC)


# ---- storage -------------------------------------------------------------------------------------


def test_0006_matches_the_model_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = create_engine(url)
    try:
        assert schema_diffs(engine, "qbo_read_counts") == []
        command.downgrade(alembic_config(url), "0005")
        assert "qbo_read_counts" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_counters_by_company_kind_and_month(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        record_read(session, "111", "query", now=DEC_31)
        record_read(session, "111", "query", now=DEC_31)
        record_read(session, "111", "cdc", now=DEC_31)
        record_read(session, "222", "read", now=DEC_31, count=5)
        record_read(session, "111", "read", now=JAN_1)  # the month turns at midnight UTC
    with runtime.sessions() as session:
        december = read_counts(session, runtime.settings, "111", now=DEC_31)
        january = read_counts(session, runtime.settings, "111", now=JAN_1)
        never = read_counts(session, runtime.settings, "333", now=DEC_31)
    assert (december.month, december.company, december.app) == ("2026-12", 3, 8)
    assert december.by_kind == {"cdc": 1, "query": 2, "read": 0}
    assert (january.month, january.company, january.app) == ("2027-01", 1, 1)
    assert (never.company, never.app) == (0, 8)
    with runtime.sessions.begin() as session, pytest.raises(ValueError):
        record_read(session, "111", "write", now=DEC_31)  # writes are not metered


def test_month_boundaries_are_utc() -> None:
    new_york = datetime(2026, 12, 31, 20, 0, tzinfo=UTC).astimezone(
        datetime(2026, 1, 1, tzinfo=UTC).astimezone().tzinfo
    )
    assert read_budget.month_of(new_york) == "2026-12"
    assert read_budget.month_of(datetime(2027, 1, 1, 0, 0, tzinfo=UTC) - timedelta(microseconds=1)) == "2026-12"
    assert read_budget.next_month_start(DEC_31) == JAN_1
    with pytest.raises(ValueError):
        read_budget.month_of(datetime(2026, 12, 1))


# ---- the setting and the states ------------------------------------------------------------------


def test_the_monthly_budget_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).qbo_read_budget_monthly == 500_000  # type: ignore[call-arg]
    monkeypatch.setenv("QBCONNECT_QBO_READ_BUDGET_MONTHLY", "1200")
    assert Settings(_env_file=None).qbo_read_budget_monthly == 1200  # type: ignore[call-arg]
    monkeypatch.setenv("QBCONNECT_QBO_READ_BUDGET_MONTHLY", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_normal_tight_exhausted_and_back_to_normal_next_month(sqlite_runtime: Runtime) -> None:
    settings = make_settings("sqlite://", "sqlite://", qbo_read_budget_monthly=10)
    states = []
    for _ in range(10):
        with sqlite_runtime.sessions.begin() as session:
            record_read(session, "111", "query", now=DEC_31)
        with sqlite_runtime.sessions() as session:
            states.append(read_budget_state(session, settings, now=DEC_31))
    assert states == [BudgetState.NORMAL] * 7 + [BudgetState.TIGHT] * 2 + [BudgetState.EXHAUSTED]
    with sqlite_runtime.sessions() as session:
        assert read_budget_state(session, settings, now=JAN_1) is BudgetState.NORMAL
    assert [sweep_interval_multiplier(s) for s in BudgetState] == [1.0, read_budget.SWEEP_SLOWDOWN, math.inf]
    assert read_budget.SWEEP_SLOWDOWN > 1


# ---- counting through the one client factory -------------------------------------------------------


def month_reads(c: Connected) -> dict[str, int]:
    with c.stack.runtime.sessions() as session:
        return read_counts(session, c.stack.settings, c.realm_id).by_kind


def test_the_factory_counts_every_metered_read_and_nothing_else(connected: Connected) -> None:  # noqa: F811
    c, sandbox = connected, connected.stack.qbo
    before, start = month_reads(c), len(sandbox.request_log)
    with qbo_client(c.stack.runtime, c.location_id, c.realm_id) as client:
        client.read("Item", "1")
        client.query("select * from Item")
        client.cdc(["Customer"], datetime.now(UTC) - timedelta(days=1))
        client.create("Customer", {"DisplayName": "Counted Once"}, request_id="budget-c-1")
    sandbox.expire_access_tokens()  # the next read refreshes the token first: OAuth is not metered
    with qbo_client(c.stack.runtime, c.location_id, c.realm_id) as client:
        client.read("Item", "1")
    after = month_reads(c)
    # reads: Item; then Item refused by 401 (sent, so counted) and Item again with the new token
    assert {kind: after[kind] - before[kind] for kind in after} == {"read": 3, "query": 1, "cdc": 1}
    served = sandbox.request_counts(c.realm_id, since=start)
    assert served["read"] == 5 and served["write"] == 1  # what the emulator served, read for read
    assert sandbox.request_counts(since=start)["oauth"] >= 1


def test_the_customer_import_on_connecting_was_counted(connected: Connected) -> None:  # noqa: F811
    c = connected
    served = sum(1 for r in c.stack.qbo.request_log if r.realm_id == c.realm_id and r.kind == "read")
    assert sum(month_reads(c).values()) == served > 0


# ---- degraded behaviour ------------------------------------------------------------------------------


def use_up(c: Connected, *, budget: int, share: float) -> None:
    c.stack.settings.qbo_read_budget_monthly = budget
    already = sum(month_reads(c).values())
    with c.stack.runtime.sessions.begin() as session:
        record_read(session, "some-other-company", "cdc", count=max(0, math.ceil(budget * share) - already))


def test_at_the_budget_non_essential_reads_stop_and_writes_never_do(connected: Connected) -> None:  # noqa: F811
    c = connected
    use_up(c, budget=1000, share=1.0)
    start = len(c.stack.qbo.request_log)
    with qbo_client(c.stack.runtime, c.location_id, c.realm_id) as client:
        with pytest.raises(ReadBudgetExhausted) as refused:
            client.cdc(["Customer"], datetime.now(UTC) - timedelta(days=1), essential=False)
        assert "read budget is used up (1,000 of 1,000)" in refused.value.message
        assert refused.value.retry_after and refused.value.retry_after > 0  # until the month turns
        assert client.read("Item", "1")["Id"] == "1"  # a read the sync needs to write correctly goes on
        created = client.create("Customer", {"DisplayName": "Still Written"}, request_id="budget-w-1")
        client.update(
            "Customer", {"Id": created["Id"], "SyncToken": created["SyncToken"], "Notes": "x"}, request_id="u1"
        )
    methods = [(r.method, r.kind) for r in c.stack.qbo.request_log[start:]]
    assert methods == [("GET", "read"), ("POST", "write"), ("POST", "write")]  # the refused read never left


@register("budget_probe", direction="internal", title="Budget probe")
def budget_probe(ctx: JobContext) -> Result:
    """A pass that only looks for changes: its read is non-essential."""
    realm_id = ctx.entity_id
    ctx.qbo(realm_id).query("select * from Customer MAXRESULTS 1", essential=False)
    return Result("looked")


def run_probe(c: Connected) -> Activity:
    with c.stack.runtime.sessions.begin() as session:
        jobs.enqueue(session, c.location_id, "budget_probe", c.realm_id, "test")
    c.stack.drain()
    with c.stack.runtime.sessions() as session:
        return session.execute(
            select(Activity).where(Activity.kind == "budget_probe").order_by(Activity.id.desc()).limit(1)
        ).scalar_one()


def test_a_refused_read_becomes_a_skipped_sync_log_row_with_a_plain_sentence(connected: Connected) -> None:  # noqa: F811
    c = connected
    assert run_probe(c).status == "done"
    use_up(c, budget=500, share=1.0)
    row = run_probe(c)
    assert row.status == "skipped" and row.error_message is None
    assert row.summary is not None
    assert row.summary.startswith("Skipped to save QuickBooks reads: this month's read budget is used up")
    assert "invoices, payments and other sales still sync" in row.summary


def test_pre_flight_checks_ask_first_and_keep_answers_longer_when_tight(connected: Connected) -> None:  # noqa: F811
    c, runtime = connected, connected.stack.runtime
    now = datetime.now(UTC)

    def undeposited(at: datetime) -> dict[str, str]:
        with runtime.sessions.begin() as session:
            location = session.get(Location, c.location_id)
            assert location is not None
            location.state = {
                **location.state,
                CACHE_KEY: {"realm_id": c.realm_id, "at": at.isoformat(), "undeposited": True},
            }
        start = len(c.stack.qbo.request_log)
        found = {check.id: check for check in run_checks(runtime, c.location_id, now=now) or []}
        check = found["undeposited_funds"]
        asked = [r for r in c.stack.qbo.request_log[start:] if r.kind == "read"]
        return {"status": check.status, "title": check.title, "asked": str(len(asked))}

    two_hours_ago = now - timedelta(hours=2)
    assert undeposited(two_hours_ago)["asked"] == "1"  # normal: an answer older than an hour is asked again
    use_up(c, budget=1000, share=0.85)
    assert undeposited(two_hours_ago) == {"status": "ok", "title": "Undeposited Funds is there", "asked": "0"}
    assert undeposited(now - timedelta(hours=5))["asked"] == "1"  # tight: kept four times as long
    use_up(c, budget=1000, share=1.0)
    assert undeposited(now - timedelta(days=20))["asked"] == "0"  # exhausted: any stored answer will do
    with runtime.sessions.begin() as session:
        location = session.get(Location, c.location_id)
        assert location is not None
        location.state = {k: v for k, v in location.state.items() if k != CACHE_KEY}
    start = len(c.stack.qbo.request_log)
    found = {check.id: check for check in run_checks(runtime, c.location_id, now=now) or []}
    assert found["undeposited_funds"].status == "warning"
    assert "read budget used up" in found["undeposited_funds"].title
    assert [r for r in c.stack.qbo.request_log[start:] if r.kind == "read"] == []


# ---- where the counts are shown ----------------------------------------------------------------------


def test_the_api_shows_this_months_reads(connected: Connected) -> None:  # noqa: F811
    c = connected
    use_up(c, budget=100_000, share=0.9)
    mine = sum(month_reads(c).values())
    body = httpx.get(
        f"{c.stack.service_url}/api/locations/{c.location_id}", headers={"Authorization": f"Bearer {TEST_ADMIN}"}
    ).json()
    reads = body["qbo_reads"]
    assert reads["month"] == datetime.now(UTC).strftime("%Y-%m")
    assert reads["company"] == mine > 0 and reads["app"] == 90_000 and reads["budget"] == 100_000
    assert reads["state"] == "tight" and sum(reads["company_by_kind"].values()) == mine


def test_the_settings_page_shows_this_months_reads(connected: Connected) -> None:  # noqa: F811
    c = connected
    use_up(c, budget=1000, share=1.0)
    page = httpx.get(
        f"{c.stack.service_url}/settings/integrations",
        params={"location_id": c.location_id},
        headers={"Authorization": f"Bearer {TEST_ADMIN}"},
    )
    assert page.status_code == 200
    block = re.search(r'<dd id="qbo-reads" class="reads-exhausted">(.*?)</dd>', page.text, re.S)
    assert block is not None
    text = " ".join(block.group(1).split())
    mine = sum(month_reads(c).values())  # opening the page read the pick lists (essential: still allowed)
    with c.stack.runtime.sessions() as session:
        app = read_counts(session, c.stack.settings).app
    assert f"{mine:,} for this company · {app:,} of 1,000 for the whole app" in text
    assert "checks for missed changes pause until next month" in text


def test_status_prints_this_months_reads(connected: Connected, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    c = connected
    use_up(c, budget=1000, share=0.8)
    for name, value in {
        "QBCONNECT_DATABASE_URL": c.stack.settings.database_url,
        "QBCONNECT_QUEUE_URL": c.stack.settings.resolved_queue_url,
        "QBCONNECT_SECRET_KEY": "x" * 40,
        "QBCONNECT_ADMIN_TOKEN": "y" * 40,
        "QBCONNECT_QBO_READ_BUDGET_MONTHLY": "1000",
        "COLUMNS": "240",  # one table row per line
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli_app, ["status"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    mine = sum(month_reads(c).values())
    assert f"this company {mine:,}" in text and "all companies 800 of 1,000 (80 %)" in text
    assert "safety sweeps slowed down" in text

"""The ``customer`` handler through the engine: a QuickBooks customer becomes one CRM contact, an unchanged one
costs no CRM call, a deleted one leaves its contact alone; run by JobRunner against both emulators."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name)

from __future__ import annotations

import pytest

from qbconnect.sync.engine import clients as job_clients
from qbconnect.sync.engine.routing import CUSTOMER
from tests.support.engine_harness import JobRun, run_job
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_clients, "qbo_sleep", lambda seconds: None)


def new_customer(c: Connected, email: str = "jane@example.com") -> str:
    body = {"GivenName": "Jane", "FamilyName": "Doe", "PrimaryEmailAddr": {"Address": email}}
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def sync(c: Connected, qbo_id: str) -> JobRun:
    return run_job(c.stack.runtime, c.location_id, CUSTOMER, qbo_id)


def crm_calls(c: Connected) -> int:
    return len([r for r in c.stack.crm.request_log if r.location == c.location_id])


def test_a_new_customer_becomes_a_contact(connected: Connected) -> None:
    c = connected
    qbo_id = new_customer(c)

    run = sync(c, qbo_id)

    assert run.state == "done" and run.activity is not None and run.activity.status == "done"
    assert "contact created" in (run.activity.summary or "")
    contact = c.stack.crm.find_by_email(c.location_id, "jane@example.com")
    assert contact is not None
    assert (contact["firstName"], contact["lastName"]) == ("Jane", "Doe")
    assert run.activity.crm_id == contact["id"] and run.activity.qbo_id == qbo_id


def test_an_unchanged_customer_costs_no_crm_call(connected: Connected) -> None:
    c = connected
    qbo_id = new_customer(c)
    sync(c, qbo_id)
    before = crm_calls(c)

    run = sync(c, qbo_id)

    assert run.state == "skipped" and run.activity is not None and run.activity.status == "skipped"
    assert "no change since the last sync" in (run.activity.summary or "")
    assert crm_calls(c) == before
    assert len(c.stack.crm.contacts(c.location_id)) == 1


def test_an_edited_customer_updates_its_contact(connected: Connected) -> None:
    c = connected
    qbo_id = new_customer(c)
    sync(c, qbo_id)
    customer = c.stack.qbo.get(c.realm_id, "Customer", qbo_id)
    c.stack.qbo.ui_update(
        c.realm_id, "Customer", {"Id": qbo_id, "SyncToken": customer["SyncToken"], "sparse": True, "GivenName": "Janet"}
    )

    run = sync(c, qbo_id)

    assert run.state == "done" and "contact updated" in (run.activity.summary or "")  # type: ignore[union-attr]
    [contact] = c.stack.crm.contacts(c.location_id)
    assert contact["firstName"] == "Janet"


def test_a_deleted_customer_leaves_its_contact_as_it_is(connected: Connected) -> None:
    c = connected
    qbo_id = new_customer(c)
    sync(c, qbo_id)
    with c.stack.qbo.lock:
        company = c.stack.qbo.company(c.realm_id)
        del company.table("Customer")[qbo_id]
        company.tombstone("Customer", qbo_id)
    writes_before = [r for r in c.stack.crm.request_log if r.method in ("POST", "PUT", "DELETE")]

    run = sync(c, qbo_id)

    assert run.state == "skipped" and run.activity is not None and run.activity.status == "skipped"
    assert "no longer exists; its contact is kept as it is" in (run.activity.summary or "")
    assert [r for r in c.stack.crm.request_log if r.method in ("POST", "PUT", "DELETE")] == writes_before
    assert c.stack.crm.find_by_email(c.location_id, "jane@example.com") is not None

"""Contacts from QuickBooks, end to end against both emulators: import, resume, rules, live updates."""

# ruff: noqa: F811  (the fixtures `stack` and `connected` are imported by name; tests use them as locals)

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import qbconnect.sync.contacts.importer as contact_import
from qbconnect.clock import utcnow
from qbconnect.crm.client import CrmClient
from qbconnect.db.link_model import Link
from qbconnect.db.models import Activity, Location, SyncJob
from qbconnect.errors import TransientError
from qbconnect.sandbox.stack import Stack
from qbconnect.services.status import location_overviews
from qbconnect.sync.contacts.handler import (
    enqueue_change_sweeps,
    enqueue_unfinished_imports,
    start_customer_import,
)
from qbconnect.sync.engine import jobs
from qbconnect.sync.links.customers import LINK_KIND
from tests.support.stack_fixtures import Connected, build_stack, connected, stack, stop_stack  # noqa: F401

# ---- helpers ---------------------------------------------------------------------------------------


class NoLimit:
    """A rate limiter that never waits (the emulator's limit is raised too in the tests that use it)."""

    def acquire(self, *args: object, **kwargs: object) -> None:
        return None

    def try_acquire(self, *args: object, **kwargs: object) -> bool:
        return True

    def penalize(self, *args: object, **kwargs: object) -> None:
        return None

    def observe(self, *args: object, **kwargs: object) -> None:
        return None


def run_import(stack: Stack, location_id: str, reason: str = "test") -> dict[str, Any]:
    with stack.runtime.sessions.begin() as session:
        start_customer_import(session, location_id, reason)
    stack.drain(timeout=900)
    return import_state(stack, location_id)


def import_state(stack: Stack, location_id: str) -> dict[str, Any]:
    with stack.runtime.sessions() as session:
        location = session.get(Location, location_id)
        assert location is not None
        return dict(location.state.get("customer_import", {}))


def links(stack: Stack, location_id: str) -> list[Link]:
    with stack.runtime.sessions() as session:
        return list(
            session.execute(select(Link).where(Link.location_id == location_id, Link.kind == LINK_KIND)).scalars()
        )


def crm_writes(stack: Stack, location_id: str, since: int = 0) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in stack.crm.request_log[since:]
        if r.location == location_id and r.method in ("POST", "PUT", "DELETE")
    ]


def contacts_by_email(stack: Stack, location_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for contact in stack.crm.contacts(location_id):
        email = contact.get("email")
        if email:
            assert email.lower() not in found, f"duplicate contact for {email}"
            found[email.lower()] = contact
    return found


def set_setting(stack: Stack, location_id: str, **values: Any) -> None:
    with stack.runtime.sessions.begin() as session:
        location = session.get(Location, location_id)
        assert location is not None
        location.settings = {**dict(location.settings or {}), **values}


def a_day_later() -> datetime:
    """A moment past the daily safety-sweep interval: the sweep is due for every company."""
    return utcnow() + timedelta(days=1, minutes=1)


def ui_customer(stack: Stack, realm_id: str, name: str, **fields: Any) -> str:
    body: dict[str, Any] = {"DisplayName": name, **fields}
    return str(stack.qbo.ui_create(realm_id, "Customer", body)["Id"])


@pytest.fixture
def unthrottled(tmp_path: Path) -> Iterator[Connected]:
    """A connected location whose CRM allows (and whose rate budget grants) any request rate."""
    built = build_stack(tmp_path, crm_options={"rate_limit": 1_000_000})
    built.runtime.limiter = NoLimit()  # type: ignore[assignment]
    try:
        location_id = built.install_crm_location(name="Fast Co")
        realm_id = built.connect_quickbooks(location_id, name="Fast Co LLC", country="US")
        built.drain()
        yield Connected(stack=built, location_id=location_id, realm_id=realm_id)
    finally:
        stop_stack(built)
        jobs.set_dispatcher(None)


@pytest.fixture
def fast_threads() -> Iterator[None]:
    """Loopback HTTP between threads of one process waits for the GIL hand-off; shorten it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(before)


# ---- the import ------------------------------------------------------------------------------------


def test_import_copies_fields_tags_and_links_each_customer(connected: Connected) -> None:
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    full = ui_customer(
        stack,
        realm,
        "Jane Doe",
        GivenName="Jane",
        FamilyName="Doe",
        CompanyName="Doe Plumbing",
        PrimaryEmailAddr={"Address": "Jane.Doe@Example.com"},
        PrimaryPhone={"FreeFormNumber": "(555) 123-4567"},
        BillAddr={"Line1": "1 Main St", "City": "Springfield", "CountrySubDivisionCode": "IL", "PostalCode": "62701"},
    )
    existing = stack.crm.create_contact(loc, firstName="Bob", email="bob@example.com", tags=["vip", "newsletter"])
    bob = ui_customer(stack, realm, "Bob Stone", GivenName="Bob", PrimaryEmailAddr={"Address": "bob@example.com"})
    tagged = stack.crm.create_contact(loc, firstName="Cy", email="cy@example.com", tags=["QuickBooks"])
    cy = ui_customer(stack, realm, "Cy Young", PrimaryEmailAddr={"Address": "cy@example.com"})
    twin = ui_customer(  # QuickBooks allows a second customer with the same email: same contact
        stack,
        realm,
        "Jane Doe (2)",
        GivenName="Jane",
        FamilyName="Doe",
        PrimaryEmailAddr={"Address": "jane.doe@example.com"},
    )
    no_email = ui_customer(stack, realm, "Walk-in Customer", PrimaryPhone={"FreeFormNumber": "555 000 1111"})
    inactive = ui_customer(stack, realm, "Gone Ltd", PrimaryEmailAddr={"Address": "gone@example.com"})
    stack.qbo.ui_update(realm, "Customer", {"Id": inactive, "Active": False})
    start = len(stack.crm.request_log)

    state = run_import(stack, loc)

    assert state["status"] == "done"
    assert (state["total"], state["done"]) == (5, 5)
    # Bob lacked the tag and Cy's name differs: updated; Jane's twin finds her contact as written: unchanged.
    assert (state["created"], state["updated"], state["unchanged"], state["skipped"]) == (1, 2, 1, 1)
    assert state["skipped_without_email"] == [{"id": no_email, "name": "Walk-in Customer"}]
    contacts = contacts_by_email(stack, loc)
    assert set(contacts) == {"jane.doe@example.com", "bob@example.com", "cy@example.com"}
    jane = contacts["jane.doe@example.com"]
    assert {k: jane.get(k) for k in ("firstName", "lastName", "companyName", "phone", "source")} == {
        "firstName": "Jane",
        "lastName": "Doe",
        "companyName": "Doe Plumbing",
        "phone": "+15551234567",
        "source": "QuickBooks",
    }
    assert {k: jane.get(k) for k in ("address1", "city", "state", "postalCode")} == {
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "postalCode": "62701",
    }
    assert jane["tags"] == ["quickbooks"]
    assert contacts["bob@example.com"]["id"] == existing["id"]
    assert sorted(contacts["bob@example.com"]["tags"]) == ["newsletter", "quickbooks", "vip"]
    assert contacts["cy@example.com"]["id"] == tagged["id"]
    # Calls: one search page (the index), Jane's tagged create, nothing for her twin (the index knows the contact
    # now), Bob's tag (his fields are ours already), Cy's name (tagged already).
    calls = sorted(f"{r.method} {r.path}" for r in stack.crm.request_log[start:] if r.location == loc)
    assert calls == sorted(
        ["POST /contacts/search", "POST /contacts/", f"POST /contacts/{existing['id']}/tags", "POST /contacts/upsert"]
    )
    assert state["crm_calls"] == 4
    by_contact = {link.crm_id: link for link in links(stack, loc)}
    assert by_contact[jane["id"]].qbo_id == full
    assert by_contact[jane["id"]].data["aliases"].keys() == {twin}
    assert by_contact[existing["id"]].qbo_id == bob
    assert by_contact[tagged["id"]].qbo_id == cy
    assert by_contact[jane["id"]].email == "jane.doe@example.com"


def test_second_import_and_unchanged_customers_write_nothing(connected: Connected) -> None:
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    stack.qbo.seed_customers(realm, 30)
    first = run_import(stack, loc)
    assert (first["created"], first["crm_calls"]) == (30, 31)  # one search page, one tagged create each
    start = len(stack.crm.request_log)

    again = run_import(stack, loc, "Import now")

    assert (again["done"], again["unchanged"], again["created"], again["updated"]) == (30, 30, 0, 0)
    assert again["run"] == first["run"] + 1
    assert crm_writes(stack, loc, start) == []
    assert stack.crm.request_log[start:] == []  # not even a read


@pytest.mark.slow
def test_import_of_ten_thousand_customers(tmp_path: Path, fast_threads: None) -> None:
    stack = build_stack(tmp_path, crm_options={"rate_limit": 1_000_000})
    stack.runtime.limiter = NoLimit()  # type: ignore[assignment]
    try:
        loc = stack.install_crm_location(name="Big Co")
        realm = stack.connect_quickbooks(loc, name="Big Co LLC", country="US")
        stack.drain()
        stack.qbo.seed_customers(realm, 9_000)  # customer1@ … customer9000@example.com
        stack.qbo.seed_customers(realm, 1_000, with_email=False, start=9_001)
        # 6,000 are already in the CRM with the tag, 500 with other tags only; 2,500 are new.
        with stack.crm.lock:
            for n in range(1, 6_501):
                tags = ["quickbooks"] if n <= 6_000 else ["lead"]
                stack.crm.new_contact(loc, {"email": f"customer{n}@example.com", "firstName": "Old", "tags": tags})
        start = len(stack.crm.request_log)

        state = run_import(stack, loc)

        assert state["status"] == "done"
        assert (state["total"], state["done"]) == (10_000, 10_000)
        assert (state["created"], state["updated"], state["unchanged"], state["skipped"]) == (2_500, 6_500, 0, 1_000)
        assert state["failed"] == 0
        assert len(state["skipped_without_email"]) == contact_import.LIST_CAP
        contacts = contacts_by_email(stack, loc)  # fails on a second contact for any email
        assert len(contacts) == 9_000
        assert len(stack.crm.contacts(loc)) == 9_000
        sample = contacts["customer4321@example.com"]
        assert (sample["firstName"], sample["lastName"], sample["source"]) == ("Customer", "004321", "QuickBooks")
        assert sample["phone"] == "+15550004321"
        assert sample["tags"] == ["quickbooks"]
        assert sorted(contacts["customer6001@example.com"]["tags"]) == ["lead", "quickbooks"]
        assert all("quickbooks" in c["tags"] for c in contacts.values())
        assert len(links(stack, loc)) == 9_000

        # The calls the import planned: 14 search pages (13 of 500 + the empty last), one tagged create per new
        # contact, one upsert per contact whose fields differ, a tag call for the 500 without the tag.
        planned = Counter({"search": 14, "create": 2_500, "upsert": 6_500, "tags": 500})
        answered = Counter(_endpoint(r.path) for r in stack.crm.request_log[start:] if r.location == loc)
        # A create whose answer was lost is looked up (GET /contacts/search/duplicate) before being sent again.
        lookups = answered.pop("duplicate", 0)
        assert state["crm_calls"] == planned.total() + lookups
        # Each new contact was created exactly once, even when an answer was lost on the way back.
        assert sum(1 for r in stack.crm.request_log[start:] if r.path == "/contacts/" and r.status == 201) == 2_500
        # Under load a loopback answer can be lost after HighLevel applied the request; the client re-sends a
        # request that is safe to repeat (search, upsert, tags), so HighLevel may see a few more than planned:
        # a few, never one more per contact.
        assert not (planned - answered), (planned, answered)
        assert answered["create"] <= planned["create"] + lookups  # sent again only when the lookup found nothing
        resent = answered - planned
        resent.pop("create", None)
        assert set(resent) <= {"search", "upsert", "tags"} and resent.total() <= 10, resent
    finally:
        stack.stop()


def _endpoint(path: str) -> str:
    if path.endswith("/tags"):
        return "tags"
    return {
        "/contacts/search": "search",
        "/contacts/search/duplicate": "duplicate",
        "/contacts/upsert": "upsert",
        "/contacts/": "create",
    }.get(path, path)


# ---- resuming ------------------------------------------------------------------------------------


def _fail_creates_after(monkeypatch: pytest.MonkeyPatch, count: int, error: BaseException) -> list[int]:
    calls = [0]
    original = CrmClient.create_contact

    def create(self: CrmClient, fields: dict[str, Any]) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == count:
            raise error
        return original(self, fields)

    monkeypatch.setattr(CrmClient, "create_contact", create)
    return calls


def test_import_resumes_after_a_failure_without_duplicates(
    unthrottled: Connected, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, loc, realm = unthrottled.stack, unthrottled.location_id, unthrottled.realm_id
    monkeypatch.setattr(contact_import, "PAGE_SIZE", 100)
    monkeypatch.setattr(contact_import, "FLUSH_EVERY", 40)
    stack.qbo.seed_customers(realm, 250)
    calls = _fail_creates_after(
        monkeypatch, 137, TransientError("HighLevel's request budget stayed full", code="rate_budget")
    )

    state = run_import(stack, loc)

    assert state["status"] == "done"
    assert (state["total"], state["done"], state["skipped"], state["failed"]) == (250, 250, 0, 0)
    assert state["created"] + state["unchanged"] == 250
    assert len(contacts_by_email(stack, loc)) == 250 == len(stack.crm.contacts(loc))
    assert len(links(stack, loc)) == 250
    assert calls[0] <= 250 + contact_import.CONCURRENCY  # only writes in flight are asked again
    with stack.runtime.sessions() as session:
        last = (
            session.execute(select(Activity).where(Activity.kind == "customer_import").order_by(Activity.id.desc()))
            .scalars()
            .first()
        )
    assert last is not None and (last.status, last.attempts) == ("done", 2)  # one failure, then resumed


class Crash(BaseException):
    """The worker process dies: nothing after this runs (no outcome, no retry bookkeeping)."""


def test_import_resumes_after_the_worker_dies_mid_page(unthrottled: Connected, monkeypatch: pytest.MonkeyPatch) -> None:
    stack, loc, realm = unthrottled.stack, unthrottled.location_id, unthrottled.realm_id
    monkeypatch.setattr(contact_import, "PAGE_SIZE", 100)
    monkeypatch.setattr(contact_import, "FLUSH_EVERY", 40)
    stack.qbo.seed_customers(realm, 230)
    _fail_creates_after(monkeypatch, 150, Crash())
    with pytest.raises(Crash):
        run_import(stack, loc)
    interrupted = import_state(stack, loc)
    assert interrupted["status"] == "running" and 100 <= interrupted["done"] < 150
    assert interrupted["next_start"] == 101 and interrupted["last_id"] == str(interrupted["done"])
    monkeypatch.undo()
    monkeypatch.setattr(contact_import, "PAGE_SIZE", 100)

    with stack.runtime.sessions.begin() as session:  # the sweeper finds the dead worker's lease
        requeued = jobs.sweep(session, now=utcnow() + timedelta(hours=1), max_attempts=8)
    assert len(requeued) == 1
    stack.drain()

    state = import_state(stack, loc)
    assert state["status"] == "done" and state["done"] == state["total"] == 230
    assert state["created"] + state["unchanged"] + state["updated"] == 230
    assert len(contacts_by_email(stack, loc)) == 230 == len(stack.crm.contacts(loc))


# ---- customers without email --------------------------------------------------------------------


def test_customers_without_email_are_matched_by_phone_when_asked(connected: Connected) -> None:
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    set_setting(stack, loc, contacts_without_email="phone")
    known = stack.crm.create_contact(loc, firstName="Pat", phone="+15550001111", tags=["walk-in"])
    ui_customer(stack, realm, "Pat Smith", GivenName="Pat", PrimaryPhone={"FreeFormNumber": "(555) 000-1111"})
    new = ui_customer(stack, realm, "Kim Lee", PrimaryPhone={"FreeFormNumber": "555-000-2222"})
    nothing = ui_customer(stack, realm, "Cash Sale")

    state = run_import(stack, loc)

    assert (state["created"], state["updated"], state["skipped"]) == (1, 1, 1)
    assert state["skipped_without_email"] == [{"id": nothing, "name": "Cash Sale"}]
    phones = {c.get("phone"): c for c in stack.crm.contacts(loc)}
    assert set(phones) == {"+15550001111", "+15550002222"}
    assert phones["+15550001111"]["id"] == known["id"]
    assert sorted(phones["+15550001111"]["tags"]) == ["quickbooks", "walk-in"]
    assert {link.qbo_id for link in links(stack, loc) if link.crm_id == phones["+15550002222"]["id"]} == {new}


# ---- live: webhooks, merges, change sweep ----------------------------------------------------------


def _imported(conn: Connected, count: int = 3) -> tuple[Stack, str, str]:
    stack, loc, realm = conn.stack, conn.location_id, conn.realm_id
    stack.qbo.seed_customers(realm, count)
    run_import(stack, loc)
    return stack, loc, realm


def _customer_id(stack: Stack, realm: str, email: str) -> str:
    for customer in stack.qbo.entities(realm, "Customer"):
        if customer.get("PrimaryEmailAddr", {}).get("Address") == email:
            return str(customer["Id"])
    raise AssertionError(email)


@pytest.mark.parametrize("webhook_format", ["cloudevents", "legacy"])
def test_webhook_update_reaches_the_contact(connected: Connected, webhook_format: str) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.webhook_format = webhook_format
    stack.qbo.flush_webhooks(drop=True)
    qbo_id = _customer_id(stack, realm, "customer2@example.com")
    start = len(stack.crm.request_log)
    stack.qbo.ui_update(realm, "Customer", {"Id": qbo_id, "GivenName": "Renamed", "CompanyName": "Renamed Inc"})

    assert stack.qbo.flush_webhooks() == 1
    stack.drain()

    contact = contacts_by_email(stack, loc)["customer2@example.com"]
    assert (contact["firstName"], contact["companyName"]) == ("Renamed", "Renamed Inc")
    assert crm_writes(stack, loc, start) == ["POST /contacts/upsert"]  # tagged already: one call
    with stack.runtime.sessions() as session:
        row = session.execute(select(Activity).where(Activity.kind == "customer").order_by(Activity.id.desc())).scalar()
    assert row is not None and row.status == "done" and row.crm_id == contact["id"] and row.qbo_id == qbo_id
    assert row.summary and "contact updated" in row.summary


def test_webhook_for_a_change_we_do_not_copy_writes_nothing(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.flush_webhooks(drop=True)
    qbo_id = _customer_id(stack, realm, "customer1@example.com")
    start = len(stack.crm.request_log)
    stack.qbo.ui_update(realm, "Customer", {"Id": qbo_id, "Notes": "called on Monday"})
    stack.qbo.flush_webhooks()
    stack.drain()
    assert crm_writes(stack, loc, start) == []


def test_new_customer_webhook_creates_a_tagged_contact(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.flush_webhooks(drop=True)
    ui_customer(stack, realm, "Nora New", GivenName="Nora", PrimaryEmailAddr={"Address": "nora@example.com"})
    stack.qbo.flush_webhooks()
    stack.drain()
    contact = contacts_by_email(stack, loc)["nora@example.com"]
    assert contact["tags"] == ["quickbooks"] and contact["firstName"] == "Nora"


def test_merge_keeps_both_contacts_and_repoints_the_link(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.flush_webhooks(drop=True)
    survivor = _customer_id(stack, realm, "customer1@example.com")
    merged = _customer_id(stack, realm, "customer3@example.com")
    before = contacts_by_email(stack, loc)
    start = len(stack.crm.request_log)

    since = len(stack.qbo.request_log)

    stack.qbo.ui_merge_customers(realm, merged, survivor)
    stack.qbo.flush_webhooks()
    stack.drain()

    assert contacts_by_email(stack, loc).keys() == before.keys()  # nothing deleted in the CRM
    assert crm_writes(stack, loc, start) == []
    assert qbo_api_calls(stack, realm, since) == ["GET cdc"]  # the merged-away customer is not read
    by_contact = {link.crm_id: link for link in links(stack, loc)}
    assert by_contact[before["customer3@example.com"]["id"]].qbo_id == survivor
    assert by_contact[before["customer3@example.com"]["id"]].data["merged_from"] == merged
    assert by_contact[before["customer1@example.com"]["id"]].qbo_id == survivor
    with stack.runtime.sessions() as session:
        summaries = [
            a.summary or ""
            for a in session.execute(
                select(Activity).where(Activity.kind == "customer", Activity.entity_id == merged)
            ).scalars()
        ]
    assert any(f"merged into customer {survivor}" in s for s in summaries)


def test_deactivated_customer_keeps_its_contact(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.flush_webhooks(drop=True)
    qbo_id = _customer_id(stack, realm, "customer2@example.com")
    start = len(stack.crm.request_log)
    stack.qbo.ui_update(realm, "Customer", {"Id": qbo_id, "Active": False})
    stack.qbo.flush_webhooks()
    stack.drain()
    assert "customer2@example.com" in contacts_by_email(stack, loc)
    assert crm_writes(stack, loc, start) == []
    (link,) = [link for link in links(stack, loc) if link.qbo_id == qbo_id]
    assert link.data["qbo_active"] is False


def test_change_sweep_catches_a_lost_webhook(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    qbo_id = _customer_id(stack, realm, "customer3@example.com")
    stack.qbo.ui_update(realm, "Customer", {"Id": qbo_id, "FamilyName": "Missed"})
    assert stack.qbo.flush_webhooks(drop=True) > 0  # the webhook never arrives
    start = len(stack.crm.request_log)

    with stack.runtime.sessions.begin() as session:
        enqueue_change_sweeps(stack.runtime, session, now=a_day_later())
    stack.drain()

    assert contacts_by_email(stack, loc)["customer3@example.com"]["lastName"] == "Missed"
    assert crm_writes(stack, loc, start) == ["POST /contacts/upsert"]  # only the changed one
    with stack.runtime.sessions() as session:
        kinds = Counter(j.kind for j in session.execute(select(SyncJob).where(SyncJob.id > 0)).scalars())
        location = session.get(Location, loc)
        assert location is not None
        cursor = location.state["qbo_cdc"]["cursor"]
    assert kinds["qbo_cdc"] == 1 and cursor

    with stack.runtime.sessions.begin() as session:  # the next sweep: nothing new
        enqueue_change_sweeps(stack.runtime, session, now=a_day_later())
    stack.drain()
    assert crm_writes(stack, loc, start) == ["POST /contacts/upsert"]


def test_change_sweep_queues_changed_payments(connected: Connected) -> None:
    stack, _, realm = _imported(connected, count=1)
    qbo_id = _customer_id(stack, realm, "customer1@example.com")
    invoice = stack.qbo.ui_create(
        realm,
        "Invoice",
        {"CustomerRef": {"value": qbo_id}, "Line": [_service_line(stack, realm)]},
    )
    payment = stack.qbo.ui_create(
        realm,
        "Payment",
        {
            "CustomerRef": {"value": qbo_id},
            "TotalAmt": 50,
            "Line": [{"Amount": 50, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    stack.qbo.flush_webhooks(drop=True)
    with stack.runtime.sessions.begin() as session:
        enqueue_change_sweeps(stack.runtime, session, now=a_day_later())
    stack.drain()
    with stack.runtime.sessions() as session:
        payment_jobs = [
            j.entity_id for j in session.execute(select(SyncJob).where(SyncJob.kind == "qbo_payment")).scalars()
        ]
    assert payment_jobs == [str(payment["Id"])]


def qbo_api_calls(stack: Stack, realm: str, since: int) -> list[str]:
    """The company's Accounting API requests since ``since`` (token calls aside), as "METHOD last-path-part"."""
    return [
        f"{r.method} {r.path.rstrip('/').rsplit('/', 1)[-1]}"
        for r in stack.qbo.request_log[since:]
        if r.realm_id == realm and not r.operation.startswith("token")
    ]


def test_a_new_quickbooks_customer_becomes_a_contact_through_one_change_query(connected: Connected) -> None:
    stack, loc, realm = _imported(connected)
    stack.qbo.flush_webhooks(drop=True)
    since = len(stack.qbo.request_log)
    qbo_id = ui_customer(stack, realm, "Nora New", GivenName="Nora", PrimaryEmailAddr={"Address": "nora@example.com"})

    assert stack.qbo.flush_webhooks() == 1  # the doorbell: Customer Create
    with stack.runtime.sessions() as session:
        pending = [(j.kind, j.entity_id) for j in session.execute(select(SyncJob).where(SyncJob.state == "pending"))
                   .scalars()]  # fmt: skip
    assert pending == [("qbo_cdc", "all")]
    stack.drain()

    contact = contacts_by_email(stack, loc)["nora@example.com"]
    assert contact["tags"] == ["quickbooks"] and contact["firstName"] == "Nora"
    assert qbo_api_calls(stack, realm, since) == ["GET cdc"]  # the customer is not read again
    with stack.runtime.sessions() as session:
        row = session.execute(
            select(Activity).where(Activity.kind == "customer", Activity.entity_id == qbo_id)
        ).scalar_one()
    assert row.status == "done" and row.crm_id == contact["id"] and "contact created" in (row.summary or "")


def _service_line(stack: Stack, realm: str) -> dict[str, Any]:
    item = next(i for i in stack.qbo.entities(realm, "Item") if i.get("Type") == "Service")
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": 100,
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1, "UnitPrice": 100},
    }


def test_change_sweep_older_than_thirty_days_starts_a_full_import(connected: Connected) -> None:
    stack, loc, _ = _imported(connected)
    run_before = import_state(stack, loc)["run"]
    old = (utcnow() - timedelta(days=40)).isoformat()
    with stack.runtime.sessions.begin() as session:
        location = session.get(Location, loc)
        assert location is not None
        location.state = {**location.state, "qbo_cdc": {"cursor": old}}
        enqueue_change_sweeps(stack.runtime, session, now=a_day_later())
    stack.drain()
    state = import_state(stack, loc)
    assert state["run"] == run_before + 1 and state["status"] == "done" and state["unchanged"] == 3
    assert "30 days" in (state["reason"] or "")


# ---- who starts the import -------------------------------------------------------------------------


def test_periodic_check_imports_until_one_import_completed(connected: Connected) -> None:
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    stack.qbo.seed_customers(realm, 5)
    with stack.runtime.sessions.begin() as session:
        location = session.get(Location, loc)
        assert location is not None
        location.state = {k: v for k, v in location.state.items() if k != "customer_import"}
        enqueue_unfinished_imports(stack.runtime, session)
    stack.drain()
    assert import_state(stack, loc)["done"] == 5
    with stack.runtime.sessions.begin() as session:
        enqueue_unfinished_imports(stack.runtime, session)
        pending = session.execute(select(SyncJob).where(SyncJob.state == "pending")).scalars().all()
    assert pending == []


def test_import_is_not_started_and_skips_when_turned_off(connected: Connected) -> None:
    stack, loc, realm = connected.stack, connected.location_id, connected.realm_id
    stack.qbo.seed_customers(realm, 2)
    set_setting(stack, loc, import_contacts=False)
    before = import_state(stack, loc)
    with stack.runtime.sessions.begin() as session:
        assert start_customer_import(session, loc, "Import now") is None
        jobs.enqueue(session, loc, "customer_import", "all", "queued before the setting changed")
    stack.drain()
    assert import_state(stack, loc) == before and stack.crm.contacts(loc) == []
    with stack.runtime.sessions() as session:
        row = session.execute(select(Activity).order_by(Activity.id.desc())).scalars().first()
    assert row is not None and row.status == "skipped" and "turned off" in (row.summary or "")


def test_status_shows_import_progress(connected: Connected) -> None:
    stack, loc, _ = _imported(connected, count=4)
    with stack.runtime.sessions() as session:
        (view,) = location_overviews(session, loc)
    rows = dict(view.rows())
    assert rows["customer import"].startswith("done [")
    assert "4/4" in rows["customer import"]

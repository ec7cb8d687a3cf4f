"""Customer links on a real database: record, aliases, newest wins, merges, inactive/deleted customers."""

from __future__ import annotations

import json

from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.db.models import InboxEvent
from qbconnect.runtime import Runtime
from qbconnect.sync.contacts.merges import merge_survivor
from qbconnect.sync.links.customers import (
    LINK_KIND,
    LinkIndex,
    load_index,
    mark_deleted,
    mark_inactive,
    record_contact,
    repoint,
)

LOC = "loc1"


def record(
    runtime: Runtime, contact_id: str, qbo_id: str, email: str | None, content_hash: str, realm: str = "r1"
) -> None:
    with runtime.sessions.begin() as session:
        record_contact(
            session, LOC, contact_id=contact_id, qbo_id=qbo_id, email=email, content_hash=content_hash, realm_id=realm
        )


def rows(runtime: Runtime) -> dict[str, Link]:
    with runtime.sessions() as session:
        return {
            r.crm_id: r
            for r in session.execute(select(Link).where(Link.kind == LINK_KIND, Link.location_id == LOC)).scalars()
        }


def index(runtime: Runtime, qbo_ids: list[str], emails: list[str]) -> LinkIndex:
    with runtime.sessions() as session:
        return load_index(session, LOC, qbo_ids, emails)


def test_record_creates_then_updates_one_row_per_contact(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h1")
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h2")
    (row,) = rows(sqlite_runtime).values()
    assert (row.qbo_id, row.email, row.content_hash, row.data["realm_id"]) == ("58", "jane@example.com", "h2", "r1")


def test_second_customer_with_the_same_email_becomes_an_alias(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h1")
    record(sqlite_runtime, "c1", "77", "jane@example.com", "h7")
    row = rows(sqlite_runtime)["c1"]
    assert row.qbo_id == "58" and row.content_hash == "h1" and row.data["aliases"] == {"77": "h7"}
    found = index(sqlite_runtime, ["77"], ["jane@example.com"]).match("77", "jane@example.com")
    assert found is not None and found.hash_for("77", "r1") == "h7" and found.hash_for("58", "r1") == "h1"


def test_load_index_matches_by_id_then_email_and_the_newest_row_wins(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "old@example.com", "h1")
    record(sqlite_runtime, "c2", "58", "new@example.com", "h2")  # the customer's contact changed
    idx = index(sqlite_runtime, ["58", "99"], ["old@example.com", "x@example.com"])
    found = idx.match("58", None)
    assert found is not None and found.crm_id == "c2"
    by_email = idx.match("99", "old@example.com")
    assert by_email is not None and by_email.crm_id == "c1"
    assert idx.match("99", "x@example.com") is None


def test_another_realm_takes_the_row_over(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h1", realm="r1")
    record(sqlite_runtime, "c1", "3", "jane@example.com", "h3", realm="r2")
    row = rows(sqlite_runtime)["c1"]
    assert (row.qbo_id, row.content_hash, row.data["realm_id"]) == ("3", "h3", "r2")


def test_repoint_moves_links_of_a_merged_away_customer(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h1")
    record(sqlite_runtime, "c2", "77", "bob@example.com", "h2")
    record(sqlite_runtime, "c2", "58", "bob@example.com", "hx")  # alias on c2
    with sqlite_runtime.sessions.begin() as session:
        moved = repoint(session, LOC, from_qbo_id="77", to_qbo_id="58")
    assert moved == ["c2"]
    row = rows(sqlite_runtime)["c2"]
    assert (row.qbo_id, row.content_hash, row.data["merged_from"], row.data["aliases"]) == ("58", "hx", "77", {})


def test_inactive_and_deleted_customers_only_mark_the_link(sqlite_runtime: Runtime) -> None:
    record(sqlite_runtime, "c1", "58", "jane@example.com", "h1")
    with sqlite_runtime.sessions.begin() as session:
        assert mark_inactive(session, LOC, qbo_id="58", content_hash="h-inactive") == 1
    assert rows(sqlite_runtime)["c1"].content_hash == "h-inactive"
    with sqlite_runtime.sessions.begin() as session:
        assert mark_deleted(session, LOC, qbo_id="58") == 1
        assert mark_deleted(session, LOC, qbo_id="404") == 0
    row = rows(sqlite_runtime)["c1"]
    assert row.content_hash is None and row.data["qbo_deleted"] is True
    found = index(sqlite_runtime, ["58"], []).match("58", None)
    assert found is not None and found.deleted


def _inbox(runtime: Runtime, body: object, event_id: str) -> None:
    with runtime.sessions.begin() as session:
        session.add(
            InboxEvent(
                source="qbo",
                event_id=event_id,
                event_type="Customer.Merge",
                location_id=LOC,
                realm_id="r1",
                entity_kind="Customer",
                entity_id="58",
                body=json.dumps(body),
            )
        )


def test_merge_survivor_comes_from_the_merge_webhook_in_both_formats(sqlite_runtime: Runtime) -> None:
    legacy = {
        "eventNotifications": [
            {
                "realmId": "r1",
                "dataChangeEvent": {
                    "entities": [{"name": "Customer", "id": "58", "operation": "Merge", "deletedId": "77"}]
                },
            }
        ]
    }
    cloud = [
        {
            "specversion": "1.0",
            "id": "e-1",
            "source": "intuit.x",
            "type": "qbo.customer.merged.v1",
            "intuitentityid": "60",
            "intuitaccountid": "r1",
            "data": {"deletedid": "81"},
        }
    ]
    _inbox(sqlite_runtime, legacy, "a")
    _inbox(sqlite_runtime, cloud, "b")
    with sqlite_runtime.sessions() as session:
        assert merge_survivor(session, LOC, "r1", "77") == "58"
        assert merge_survivor(session, LOC, "r1", "81") == "60"
        assert merge_survivor(session, LOC, "r2", "77") is None
        assert merge_survivor(session, LOC, "r1", "12") is None

"""The sync log's API: one row with its timeline, dismiss, filters, search, paging, grouping, CSV, health,
retry rules, retry all failed, sync one invoice now, and retry by itself when a setting is fixed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, ActivityAttempt, SyncJob
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

BAD_METHOD = (
    "QuickBooks says: Invalid Reference Id — PaymentMethod assigned to this transaction does not exist (Id=999). "
    "(field PaymentMethodRef)"
)


@pytest.fixture
def api(connected: Connected) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(
        base_url=connected.stack.service_url, headers={"Authorization": f"Bearer {TEST_ADMIN}"}, timeout=30
    ) as client:
        yield client


def _add(connected: Connected, **fields: Any) -> int:  # noqa: F811
    values: dict[str, Any] = {
        "location_id": connected.location_id,
        "kind": "invoice",
        "entity_id": "inv-1",
        "direction": "crm_to_qbo",
        "status": "done",
        "attempts": 1,
    }
    values.update(fields)
    with connected.stack.runtime.sessions.begin() as session:
        row = Activity(**values)
        session.add(row)
        session.flush()
        return row.id


def _clear(connected: Connected) -> None:  # noqa: F811
    with connected.stack.runtime.sessions.begin() as session:
        for row in session.execute(select(Activity)).scalars():
            session.delete(row)


def _failed(connected: Connected, entity: str, **fields: Any) -> int:  # noqa: F811
    values: dict[str, Any] = {
        "entity_id": entity,
        "status": "failed",
        "error_category": "permanent",
        "error_message": BAD_METHOD,
        "fault_code": "2500",
        "intuit_tid": "1-abc",
    }
    values.update(fields)
    return _add(connected, **values)


def test_one_row_with_its_timeline(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    row_id = _failed(
        connected, "inv-9", label="Invoice #1042", customer="Kira Garcia", amount=Decimal("885.00"), currency="USD"
    )
    with connected.stack.runtime.sessions.begin() as session:
        start = utcnow() - timedelta(minutes=1)
        for n in (1, 2):
            session.add(
                ActivityAttempt(
                    activity_id=row_id,
                    attempt=n,
                    started_at=start + timedelta(seconds=n),
                    duration_ms=120 * n,
                    request_summary="Invoice inv-9 · 2 QuickBooks requests",
                    outcome="failed",
                    http_status=400,
                    fault_code="2500",
                    intuit_tid=f"tid-{n}",
                    message=BAD_METHOD,
                )
            )
    body = api.get(f"/api/activity/{row_id}").json()
    assert body["headline"] == "Invoice #1042 · Kira Garcia · $885.00"
    assert [a["attempt"] for a in body["timeline"]] == [1, 2]
    first = body["timeline"][0]
    assert first["http_status"] == 400 and first["fault_code"] == "2500" and first["intuit_tid"] == "tid-1"
    assert first["duration_ms"] == 120 and first["request"].startswith("Invoice inv-9")
    assert body["fix"]["key"] == "invalid_reference" and body["fix"]["setting"] == "payment_method_map"
    assert "999" in body["fix"]["sentence"]
    assert body["open_problem"] is True and body["retryable"] is True and body["dismissable"] is True
    assert api.get("/api/activity/99999999").status_code == 404


def test_dismiss_keeps_who_and_when_and_closes_the_problem(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    row_id = _failed(connected, "inv-d")
    done = _add(connected, entity_id="inv-e")
    loc = connected.location_id
    assert api.get(f"/api/locations/{loc}").json()["health"]["problems"] == 1
    answer = api.post(f"/api/activity/{row_id}/dismiss")
    assert answer.status_code == 200, answer.text
    assert answer.json()["dismissed_by"] == "admin" and answer.json()["dismissed_at"]
    assert api.get(f"/api/activity/{row_id}").json()["open_problem"] is False
    assert api.get(f"/api/locations/{loc}/activity", params={"status": "needs_attention"}).json()["total"] == 0
    assert api.get(f"/api/locations/{loc}").json()["health"]["problems"] == 0
    assert api.post(f"/api/activity/{done}/dismiss").status_code == 409
    assert api.post("/api/activity/99999999/dismiss").status_code == 404


def test_filters_search_paging_and_internal_passes(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    loc = connected.location_id
    old = utcnow() - timedelta(days=10)
    _add(connected, entity_id="a", number="1042", customer="Kira Garcia", customer_email="kira@example.com")
    _failed(connected, "b", number="1043", customer="Tom Ng")
    _add(connected, entity_id="c", status="skipped", summary="Draft invoice; not synced")
    _add(connected, entity_id="d", status="pending")
    _add(connected, entity_id="e", created_at=old, updated_at=old)
    _add(connected, kind="transaction_poll", entity_id="all", direction="internal", summary="checked")
    url = f"/api/locations/{loc}/activity"

    def ids(**params: Any) -> list[str]:
        return [i["entity_id"] for i in api.get(url, params=params).json()["items"]]

    assert set(ids()) == {"a", "b", "c", "d", "e"}  # the internal pass is hidden
    assert "all" in ids(include_internal="true")
    assert ids(status="needs_attention") == ["b"]
    assert ids(status="failed") == ["b"]
    assert set(ids(status="synced")) == {"a", "e"}
    assert ids(status="skipped") == ["c"]
    assert ids(status="waiting") == ["d"]
    assert ids(q="kira") == ["a"] and ids(q="KIRA@example.com") == ["a"] and ids(q="#1043") == ["b"]
    assert ids(q="draft") == ["c"]
    assert "e" not in ids(**{"from": (utcnow() - timedelta(days=1)).date().isoformat()})
    assert ids(to=(utcnow() - timedelta(days=5)).date().isoformat()) == ["e"]
    assert api.get(url, params={"from": "yesterday"}).status_code == 422
    page1 = api.get(url, params={"per_page": 2, "page": 1}).json()
    page3 = api.get(url, params={"per_page": 2, "page": 3}).json()
    assert page1["total"] == 5 and page1["pages"] == 3 and len(page1["items"]) == 2 and len(page3["items"]) == 1
    assert {i["entity_id"] for i in page1["items"]}.isdisjoint({i["entity_id"] for i in page3["items"]})


def test_a_sale_appears_once(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    url = f"/api/locations/{connected.location_id}/activity"
    _add(connected, kind="order", entity_id="o1", summary="queued 1 payment")
    _add(connected, kind="transaction", entity_id="t1", group_key="sale:o1")
    _add(connected, kind="order", entity_id="o2", group_key="sale:o2")
    _add(connected, kind="transaction", entity_id="t2", group_key="sale:o2")
    _failed(connected, "o3", kind="order")
    kinds = [(i["kind"], i["entity_id"]) for i in api.get(url).json()["items"]]
    assert kinds == [("order", "o3"), ("transaction", "t2"), ("transaction", "t1")]
    assert len(api.get(url, params={"include_internal": "true"}).json()["items"]) == 5


def test_csv_export_with_filters_and_formula_protection(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    loc = connected.location_id
    _add(
        connected, entity_id="x1", customer='=HYPERLINK("http://evil")', summary='He said "hi", then left', number="+1"
    )
    _failed(connected, "x2", customer="@SUM(A1)")
    _add(connected, entity_id="x3", status="skipped", customer="-2+3")
    answer = api.get(f"/api/locations/{loc}/activity.csv", params={"status": "synced"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 1
    assert rows[0]["customer"] == '\'=HYPERLINK("http://evil")' and rows[0]["number"] == "'+1"
    assert rows[0]["summary"] == 'He said "hi", then left'
    everything = list(csv.DictReader(io.StringIO(api.get(f"/api/locations/{loc}/activity.csv").text)))
    by_id = {r["customer"]: r for r in everything}
    assert "'@SUM(A1)" in by_id and "'-2+3" in by_id
    assert "payment method" in by_id["'@SUM(A1)"]["fix"].lower()
    assert "kira@" not in answer.text


def test_health_summary(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    loc = connected.location_id
    _add(connected, entity_id="h1")
    health = api.get(f"/api/locations/{loc}").json()["health"]
    assert health["state"] == "in_step" and health["text"].startswith("All in step · last sync")
    assert health["last_sync_at"]
    for n in range(3):
        _add(connected, entity_id=f"w{n}", status="pending")
    health = api.get(f"/api/locations/{loc}").json()["health"]
    assert health == {**health, "state": "catching_up", "waiting": 3, "text": "Catching up (3 waiting)"}
    _failed(connected, "p1")
    _failed(connected, "p2")
    health = api.get(f"/api/locations/{loc}").json()["health"]
    assert health["state"] == "attention" and health["problems"] == 2
    assert health["text"] == "2 items need your attention"


def test_retry_only_where_it_means_something(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    skipped = _add(connected, entity_id="s1", status="skipped", summary="Draft invoice")
    answer = api.post(f"/api/activity/{skipped}/retry")
    assert answer.status_code == 422 and "informational" in answer.json()["detail"]
    assert api.get(f"/api/activity/{skipped}").json()["retryable"] is False
    failed = _failed(connected, "f1")
    with connected.stack.runtime.sessions.begin() as session:
        from qbconnect.db.models import QboConnection

        conn = session.execute(select(QboConnection)).scalar_one()
        conn.status = "needs_reconnect"
    answer = api.post(f"/api/activity/{failed}/retry")
    assert answer.status_code == 409 and "reconnect" in answer.json()["detail"]
    assert api.get(f"/api/activity/{failed}").json()["retryable"] is False
    assert api.post(f"/api/locations/{connected.location_id}/activity/retry-failed").status_code == 409


def test_retry_all_failed(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    loc = connected.location_id
    first = _failed(connected, "r1")
    second = _failed(connected, "r2")
    _add(connected, entity_id="r3")
    answer = api.post(f"/api/locations/{loc}/activity/retry-failed")
    assert answer.status_code == 202 and sorted(answer.json()["retried"]) == [first, second]
    with connected.stack.runtime.sessions() as session:
        pending = {j.entity_id for j in session.execute(select(SyncJob).where(SyncJob.state == "pending")).scalars()}
    assert {"r1", "r2"} <= pending
    assert api.post("/api/locations/nope/activity/retry-failed").status_code == 404


def test_fixing_the_setting_retries_the_rows_that_failed_for_it(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _clear(connected)
    loc = connected.location_id
    method = _failed(connected, "m1")
    other = _failed(connected, "m2", error_message="QuickBooks says: something else", fault_code="6000")
    answer = api.patch(f"/api/locations/{loc}/settings", json={"payment_method_map": {"visa": "1"}})
    assert answer.status_code == 200 and answer.headers["x-retried-rows"] == "1"
    with connected.stack.runtime.sessions() as session:
        assert session.get(Activity, method).status == "retried"  # type: ignore[union-attr]
        assert session.get(Activity, other).status == "failed"  # type: ignore[union-attr]


def test_sync_this_invoice_now_by_number(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    crm = connected.stack.crm
    loc = connected.location_id
    contact = crm.create_contact(loc, firstName="Kira", lastName="Garcia", email="kira@example.com")
    invoice = crm.create_invoice(
        loc, contact_id=contact["id"], items=[{"name": "Job", "qty": 1, "amount": 885}], invoice_number="1042"
    )
    crm.flush_webhooks(drop=True)
    answer = api.post(f"/api/locations/{loc}/invoices/1042/sync")
    assert answer.status_code == 202, answer.text
    assert answer.json()["invoice_id"] == invoice["_id"]
    with connected.stack.runtime.sessions() as session:
        job = session.get(SyncJob, answer.json()["job_id"])
        assert job is not None and job.kind == "invoice" and job.entity_id == invoice["_id"]
    by_id = api.post(f"/api/locations/{loc}/invoices/{invoice['_id']}/sync")
    assert by_id.status_code == 202 and by_id.json()["invoice_id"] == invoice["_id"]
    assert api.post(f"/api/locations/{loc}/invoices/no-such-number/sync").status_code == 404

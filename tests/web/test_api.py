"""The JSON API: admin auth, location state, settings (422 per field), the sync log, retry."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.db.models import Activity, SyncJob
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


@pytest.fixture
def api(connected: Connected) -> Iterator[httpx.Client]:  # noqa: F811
    with httpx.Client(
        base_url=connected.stack.service_url, headers={"Authorization": f"Bearer {TEST_ADMIN}"}, timeout=30
    ) as client:
        yield client


def test_api_needs_the_admin_token(connected: Connected) -> None:  # noqa: F811
    base = connected.stack.service_url
    loc = connected.location_id
    assert httpx.get(f"{base}/api/locations/{loc}").status_code == 401
    assert httpx.get(f"{base}/api/locations/{loc}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{base}/api/locations/{loc}/disconnect").status_code == 401
    assert httpx.patch(f"{base}/api/locations/{loc}/settings", json={}).status_code == 401


def test_location_state(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    with connected.stack.runtime.sessions.begin() as session:
        session.add(Link(location_id=connected.location_id, kind="customer", crm_id="c1", qbo_id="1", data={}))
    body = api.get(f"/api/locations/{connected.location_id}").json()
    assert body["location_id"] == connected.location_id and body["name"] == "Acme Plumbing"
    assert body["crm"]["status"] == "installed"
    qbo = body["quickbooks"]
    assert qbo["status"] == "connected" and qbo["realm_id"] == connected.realm_id
    assert qbo["company_name"] == "Acme Plumbing LLC" and qbo["connected_since"]
    assert qbo["needs_reconnect_reason"] is None
    assert body["is_syncing"] is True
    health = body["token_health"]
    assert health["status"] == "ok"
    assert 95 <= health["refresh_days_left"] <= 101  # Intuit's rolling 100 days
    assert 1800 <= health["hard_days_left"] <= 1826  # the five-year hard expiry
    assert health["days_left"] == health["refresh_days_left"]
    assert body["counts"]["links"] == {"customer": 1}
    assert sum(body["counts"]["jobs"].values()) >= 1 and sum(body["counts"]["activity"].values()) >= 1
    assert isinstance(body["customer_import"], dict)
    assert api.get("/api/locations/nope").status_code == 404


def test_settings_get_and_patch(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    url = f"/api/locations/{connected.location_id}/settings"
    settings = api.get(url).json()
    assert settings["sync_invoices"] is True and settings["review_request_channel"] == "Email"
    assert settings["review_link"] is None
    answer = api.patch(
        url,
        json={"review_link": "https://g.page/r/acme/review", "review_request_channel": "SMS", "sync_invoices": False},
    )
    assert answer.status_code == 200, answer.text
    again = api.get(url).json()
    assert again["review_link"] == "https://g.page/r/acme/review"
    assert again["review_request_channel"] == "SMS" and again["sync_invoices"] is False


def test_settings_patch_reports_each_bad_field(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    url = f"/api/locations/{connected.location_id}/settings"
    answer = api.patch(
        url, json={"review_link": "not a link", "review_request_channel": "Fax", "colour": "blue", "review_message": ""}
    )
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert set(errors) == {"review_link", "review_request_channel", "colour", "review_message"}
    assert all(isinstance(message, str) and message for message in errors.values())
    assert api.get(url).json()["review_request_channel"] == "Email"  # nothing saved


def _log(connected: Connected, rows: list[tuple[str, str]]) -> list[int]:  # noqa: F811
    ids = []
    with connected.stack.runtime.sessions.begin() as session:
        for kind, status in rows:
            row = Activity(
                location_id=connected.location_id,
                kind=kind,
                entity_id=f"{kind}-{len(ids)}",
                direction="crm_to_qbo",
                status=status,
                summary=f"{kind} {status}",
                error_category="permanent" if status == "failed" else None,
                error_message="QuickBooks needs a customer" if status == "failed" else None,
                attempts=1,
                crm_id=f"crm-{len(ids)}",
                qbo_id="42" if status == "done" else None,
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    return ids


def test_activity_newest_first_with_filters_and_pages(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    ids = _log(connected, [("invoice", "done"), ("invoice", "failed"), ("transaction", "done"), ("invoice", "done")])
    url = f"/api/locations/{connected.location_id}/activity"
    items = api.get(url).json()["items"]
    assert [i["id"] for i in items][:4] == ids[::-1]
    first = items[0]
    for key in ("status", "attempts", "error_category", "error_message", "crm_id", "qbo_id", "summary", "kind"):
        assert key in first
    failed = api.get(url, params={"status": "failed"}).json()["items"]
    assert [i["id"] for i in failed] == [ids[1]]
    assert failed[0]["error_message"] == "QuickBooks needs a customer" and failed[0]["retryable"] is True
    assert {i["kind"] for i in api.get(url, params={"kind": "transaction"}).json()["items"]} == {"transaction"}
    page = api.get(url, params={"kind": "invoice", "limit": 2}).json()
    assert [i["id"] for i in page["items"]] == [ids[3], ids[1]]
    rest = api.get(url, params={"kind": "invoice", "limit": 2, "before_id": page["next_before_id"]}).json()
    assert [i["id"] for i in rest["items"]] == [ids[0]] and rest["next_before_id"] is None
    assert api.get(url, params={"limit": 0}).status_code == 422


def test_retry(api: httpx.Client, connected: Connected) -> None:  # noqa: F811
    done, failed = _log(connected, [("invoice", "done"), ("invoice", "failed")])
    assert api.post("/api/activity/999999/retry").status_code == 404
    conflict = api.post(f"/api/activity/{done}/retry")
    assert conflict.status_code == 409 and "only failed rows" in conflict.json()["detail"]
    answer = api.post(f"/api/activity/{failed}/retry")
    assert answer.status_code == 202
    with connected.stack.runtime.sessions() as session:
        job = session.get(SyncJob, answer.json()["job_id"])
        assert job is not None and job.state == "pending" and job.entity_id == "invoice-1"
        row = session.execute(select(Activity).where(Activity.id == failed)).scalar_one()
        assert row.status == "retried"
    assert api.post(f"/api/activity/{failed}/retry").status_code == 409

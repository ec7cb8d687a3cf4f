"""Dismiss keeps who and when: "admin" for the operator (admin token or admin login), the CRM user's name,
email and id for a location session opened by ``POST /sso/crm``; shown on the dismissed row in the API and
on the page (history row and the in-place answer)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qbconnect.crm.user_context import encrypt
from qbconnect.db.models import Activity, Location
from qbconnect.runtime import Runtime
from qbconnect.services.log_actions import WHO_MAX, actor
from qbconnect.web.app import create_app
from tests.conftest import TEST_ADMIN

SECRET = "shared-secret-for-dismiss-tests"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ANN = "Ann Example <ann@example.com> · CRM user u1"


def _user_context(location: str) -> str:
    data = {
        "userId": "u1",
        "companyId": "comp-1",
        "role": "admin",
        "type": "location",
        "activeLocation": location,
        "userName": "Ann Example",
        "email": "ann@example.com",
    }
    return encrypt(json.dumps(data).encode(), SECRET)


def _problem(runtime: Runtime, entity: str) -> int:
    with runtime.sessions.begin() as session:
        row = Activity(
            location_id="loc-A",
            kind="invoice",
            entity_id=entity,
            direction="crm_to_qbo",
            status="failed",
            error_category="permanent",
            error_message="QuickBooks says: Invalid Reference Id (Id=999).",
            label=f"Invoice #{entity}",
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture
def client(sqlite_runtime: Runtime) -> Iterator[TestClient]:
    sqlite_runtime.settings.crm_shared_secret = SecretStr(SECRET)
    with sqlite_runtime.sessions.begin() as session:
        session.add(Location(id="loc-A", name="Acme", company_id="comp-1", crm_status="installed", settings={}))
    with TestClient(create_app(sqlite_runtime), follow_redirects=False) as test_client:
        yield test_client


def _signed_in(client: TestClient) -> str:
    """Open a location session as the CRM user Ann; returns the page's CSRF token."""
    assert client.post("/sso/crm", json={"encryptedData": _user_context("loc-A")}).status_code == 200
    page = client.get("/settings/integrations", params={"location_id": "loc-A"})
    found = CSRF.search(page.text)
    assert page.status_code == 200 and found is not None
    return found.group(1)


def test_the_admin_token_dismisses_as_admin(client: TestClient, sqlite_runtime: Runtime) -> None:
    row = _problem(sqlite_runtime, "1001")
    answer = client.post(f"/api/activity/{row}/dismiss", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["dismissed_by"] == "admin"
    when = datetime.fromisoformat(body["dismissed_at"])
    assert when.tzinfo is not None
    assert body["dismissed_text"] == f"Dismissed by admin on {when:%Y-%m-%d %H:%M} UTC"
    shown = client.get(f"/api/activity/{row}", headers=ADMIN).json()
    assert shown["dismissed_by"] == "admin" and shown["dismissed_at"] == body["dismissed_at"]
    assert shown["open_problem"] is False and shown["status_text"] == "Failed · dismissed"


def test_a_crm_user_dismisses_with_name_email_and_id_through_the_api(
    client: TestClient, sqlite_runtime: Runtime
) -> None:
    row = _problem(sqlite_runtime, "1002")
    token = _signed_in(client)
    answer = client.post(f"/api/activity/{row}/dismiss", headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert answer.json()["dismissed_by"] == ANN
    shown = client.get(f"/api/activity/{row}").json()
    assert shown["dismissed_by"] == ANN and shown["dismissed_text"].startswith(f"Dismissed by {ANN} on ")
    # A second dismiss (by the admin) keeps who dismissed it first.
    assert client.post(f"/api/activity/{row}/dismiss", headers=ADMIN).json()["dismissed_by"] == ANN
    with sqlite_runtime.sessions() as session:
        stored = session.get(Activity, row)
        assert stored is not None and stored.dismissed_by == ANN and stored.dismissed_at is not None


def test_a_crm_user_dismisses_from_the_page_and_the_history_shows_who(
    client: TestClient, sqlite_runtime: Runtime
) -> None:
    row = _problem(sqlite_runtime, "1003")
    token = _signed_in(client)
    before = client.get("/settings/integrations", params={"location_id": "loc-A"}).text
    assert f'id="problem-{row}"' in before
    form = {"location_id": "loc-A", "activity_id": str(row), "csrf_token": token}
    answer = client.post("/settings/integrations/dismiss", data=form, headers={"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    assert f"Dismissed by {ANN.replace('<', '&lt;').replace('>', '&gt;')}" in answer.text
    assert f'id="problem-{row}"' not in answer.text  # no longer needs attention
    history = client.get("/settings/integrations/sync-log", params={"location_id": "loc-A"}).text
    row_html = history[history.index(f'id="row-{row}"') :]
    assert "Failed · dismissed" in row_html
    assert "Dismissed by Ann Example &lt;ann@example.com&gt; · CRM user u1 on " in row_html


def test_the_admin_login_dismisses_from_the_page_as_admin(client: TestClient, sqlite_runtime: Runtime) -> None:
    row = _problem(sqlite_runtime, "1004")
    login = client.get("/login")
    login_csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert login_csrf is not None
    signed = client.post("/login", data={"token": TEST_ADMIN, "csrf_token": login_csrf.group(1), "next": "/"})
    assert signed.status_code == 303
    token = CSRF.search(client.get("/settings/integrations", params={"location_id": "loc-A"}).text)
    assert token is not None
    form = {"location_id": "loc-A", "activity_id": str(row), "csrf_token": token.group(1)}
    assert client.post("/settings/integrations/dismiss", data=form).status_code == 303
    history = client.get("/settings/integrations/sync-log", params={"location_id": "loc-A"}).text
    assert "Dismissed by admin on " in history[history.index(f'id="row-{row}"') :]


@pytest.mark.parametrize(
    ("name", "email", "expected"),
    [
        ("Ann Example", "ann@example.com", ANN),
        ("Ann Example", None, "Ann Example · CRM user u1"),
        (None, "ann@example.com", "ann@example.com · CRM user u1"),
        (None, None, "CRM user u1"),
        ("N" * 60, "e" * 70 + "@example.com", "N" * 60 + " · CRM user u1"),  # the email goes first
    ],
)
def test_who_fits_the_column(name: str | None, email: str | None, expected: str) -> None:
    assert actor(user_id="u1", name=name, email=email) == expected


def test_a_very_long_name_is_shortened_and_keeps_the_user_id() -> None:
    text = actor(user_id="u1", name="N" * 300, email=None)
    assert len(text) == WHO_MAX and text.endswith("… · CRM user u1")
    assert actor(user_id=None, name="Ann") == "admin"

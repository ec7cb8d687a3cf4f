"""Dismiss keeps who and when: "admin" for the operator (admin token or admin login), the CRM user's name,
email and id for a location session opened by ``POST /sso/crm``; shown on the dismissed row in the API and
on the page (history row and the in-place answer)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from qbconnect.clock import utcnow
from qbconnect.crm.user_context import encrypt
from qbconnect.db.models import Activity, Location
from qbconnect.services.log_actions import WHO_MAX, actor
from qbconnect.sync.engine import jobs
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import Connected, build_stack, stop_stack

SECRET = "shared-secret-for-dismiss-tests"
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ANN = "Ann Example <ann@example.com> · CRM user u1"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Connected]:
    """A connected location on the running service, with single sign-on from the CRM turned on."""
    stack = build_stack(tmp_path, settings_overrides={"crm_shared_secret": SECRET})
    location_id = stack.install_crm_location(name="Acme Plumbing")
    realm_id = stack.connect_quickbooks(location_id, name="Acme Plumbing LLC", country="US")
    stack.drain()
    yield Connected(stack=stack, location_id=location_id, realm_id=realm_id)
    stop_stack(stack)
    jobs.set_dispatcher(None)


@pytest.fixture
def client(shop: Connected) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.stack.service_url, follow_redirects=False, timeout=30) as http:
        yield http


def _user_context(shop: Connected) -> str:
    with shop.stack.runtime.sessions() as session:
        location = session.get(Location, shop.location_id)
        assert location is not None
        company_id = location.company_id or "comp-1"
    data = {
        "userId": "u1",
        "companyId": company_id,
        "role": "admin",
        "type": "location",
        "activeLocation": shop.location_id,
        "userName": "Ann Example",
        "email": "ann@example.com",
    }
    return encrypt(json.dumps(data).encode(), SECRET)


def _problem(shop: Connected, entity: str) -> int:
    with shop.stack.runtime.sessions.begin() as session:
        row = Activity(
            location_id=shop.location_id,
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


def _signed_in(client: httpx.Client, shop: Connected) -> str:
    """Open a location session as the CRM user Ann; returns the page's CSRF token."""
    assert client.post("/sso/crm", json={"encryptedData": _user_context(shop)}).status_code == 200
    page = client.get("/settings/integrations", params={"location_id": shop.location_id})
    found = CSRF.search(page.text)
    assert page.status_code == 200 and found is not None
    return found.group(1)


def _history(client: httpx.Client, shop: Connected, row: int) -> str:
    html = client.get("/settings/integrations/sync-log", params={"location_id": shop.location_id}).text
    start = html.index(f'id="row-{row}"')
    return html[start : html.index("</li>", start)]


def test_the_admin_token_dismisses_as_admin(client: httpx.Client, shop: Connected) -> None:
    row = _problem(shop, "1001")
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


def test_a_crm_user_dismisses_with_name_email_and_id_through_the_api(client: httpx.Client, shop: Connected) -> None:
    row = _problem(shop, "1002")
    token = _signed_in(client, shop)
    answer = client.post(f"/api/activity/{row}/dismiss", headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert answer.json()["dismissed_by"] == ANN
    shown = client.get(f"/api/activity/{row}").json()
    assert shown["dismissed_by"] == ANN and shown["dismissed_text"].startswith(f"Dismissed by {ANN} on ")
    # A second dismiss (by the admin) keeps who dismissed it first.
    assert client.post(f"/api/activity/{row}/dismiss", headers=ADMIN).json()["dismissed_by"] == ANN
    with shop.stack.runtime.sessions() as session:
        stored = session.get(Activity, row)
        assert stored is not None and stored.dismissed_by == ANN and stored.dismissed_at is not None


def test_a_crm_user_dismisses_from_the_page_and_the_history_shows_who(client: httpx.Client, shop: Connected) -> None:
    row = _problem(shop, "1003")
    token = _signed_in(client, shop)
    before = client.get("/settings/integrations", params={"location_id": shop.location_id}).text
    assert f'id="problem-{row}"' in before
    form = {"location_id": shop.location_id, "activity_id": str(row), "csrf_token": token}
    answer = client.post("/settings/integrations/dismiss", data=form, headers={"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    assert "Dismissed by Ann Example &lt;ann@example.com&gt; · CRM user u1; it no longer needs attention" in answer.text
    assert f'id="problem-{row}"' not in answer.text  # no longer needs attention
    shown = _history(client, shop, row)
    assert "Failed · dismissed" in shown and "pill-dismissed" in shown
    assert "Dismissed by Ann Example &lt;ann@example.com&gt; · CRM user u1 on " in shown


def test_the_admin_login_dismisses_from_the_page_as_admin(client: httpx.Client, shop: Connected) -> None:
    row = _problem(shop, "1004")
    login = client.get("/login")
    login_csrf = CSRF.search(login.text)
    assert login_csrf is not None
    signed = client.post("/login", data={"token": TEST_ADMIN, "csrf_token": login_csrf.group(1), "next": "/"})
    assert signed.status_code == 303
    token = CSRF.search(client.get("/settings/integrations", params={"location_id": shop.location_id}).text)
    assert token is not None
    form = {"location_id": shop.location_id, "activity_id": str(row), "csrf_token": token.group(1)}
    assert client.post("/settings/integrations/dismiss", data=form).status_code == 303
    assert "Dismissed by admin on " in _history(client, shop, row)


def test_dismiss_only_where_it_means_something(client: httpx.Client, shop: Connected) -> None:
    skipped = _problem(shop, "1005")
    fixed = _problem(shop, "1006")
    with shop.stack.runtime.sessions.begin() as session:
        row = session.get(Activity, skipped)
        assert row is not None
        row.status = "skipped"
    with shop.stack.runtime.sessions.begin() as session:
        later = Activity(
            location_id=shop.location_id, kind="invoice", entity_id="1006", direction="crm_to_qbo", status="running"
        )
        session.add(later)
        session.flush()
        jobs.close_problems(session, later, utcnow())
    assert client.post(f"/api/activity/{skipped}/dismiss", headers=ADMIN).status_code == 422
    refused = client.post(f"/api/activity/{fixed}/dismiss", headers=ADMIN)
    assert refused.status_code == 409 and "fixed by a later run" in refused.json()["detail"]
    fixed_row = client.get(f"/api/activity/{fixed}", headers=ADMIN).json()
    assert fixed_row["status_text"] == "Failed · fixed by a later run" and fixed_row["pill"] == "resolved"
    assert fixed_row["dismissable"] is False and fixed_row["open_problem"] is False

    open_row = _problem(shop, "1007")
    assert client.get(f"/api/activity/{open_row}", headers=ADMIN).json()["dismissable"] is True
    assert client.post(f"/api/locations/{shop.location_id}/disconnect", headers=ADMIN).status_code == 200
    assert client.get(f"/api/activity/{open_row}", headers=ADMIN).json()["dismissable"] is False
    disconnected = client.post(f"/api/activity/{open_row}/dismiss", headers=ADMIN)
    assert disconnected.status_code == 409 and "not connected" in disconnected.json()["detail"]
    page = client.get("/settings/integrations", params={"location_id": shop.location_id}, headers=ADMIN).text
    problem = page[page.index(f'id="problem-{open_row}"') :]
    assert "/settings/integrations/dismiss" not in problem[: problem.index("</li>")]


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

"""The OAuth routes end to end through both sandboxes: install, connect, state checks, realm conflict,
needs-reconnect → reconnect with catch-up, disconnect revokes, and no plaintext token in the database."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.connections.oauth_state import issue_state
from qbconnect.connections.tokens import DbQboTokenSource
from qbconnect.db.models import Activity, InboxEvent, Location, OAuthState, QboConnection, SyncJob
from qbconnect.errors import AuthError
from qbconnect.qbo import oauth as qbo_oauth
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.sandbox.stack import QBO_CLIENT_ID, QBO_CLIENT_SECRET, Stack
from qbconnect.sync.engine import jobs, routing
from tests.conftest import TEST_ADMIN, TEST_SECRET
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def http(stack: Stack) -> httpx.Client:  # noqa: F811
    return httpx.Client(base_url=stack.service_url, headers=ADMIN, follow_redirects=False, timeout=30)


def authorize_redirect(stack: Stack, location_id: str) -> str:  # noqa: F811
    """``/connect/quickbooks`` → the Intuit authorize URL (not yet visited)."""
    with http(stack) as client:
        answer = client.get("/connect/quickbooks", params={"location_id": location_id})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def callback_url(stack: Stack, location_id: str, realm_id: str) -> str:  # noqa: F811
    """Go through Intuit's (auto-approving) authorize step; return our callback URL, not yet visited."""
    stack.qbo.next_realm_id = realm_id
    answer = httpx.get(authorize_redirect(stack, location_id), follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def test_install_through_the_crm_callback(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Bright Dental")
    with stack.runtime.sessions() as session:
        location = session.get(Location, location_id)
        assert location is not None
        assert location.crm_status == "installed" and location.name == "Bright Dental"
        assert location.crm_access_token and location.crm_refresh_token
        assert location.crm_token_expires_at is not None and location.crm_token_expires_at > utcnow()
    # The CRM sandbox accepts the stored token (user_type=Location token for this location).
    assert stack.runtime.cipher.decrypt(location.crm_access_token)


def test_crm_callback_refuses_a_bad_code(stack: Stack) -> None:  # noqa: F811
    answer = httpx.get(f"{stack.service_url}/oauth/crm/callback", params={"code": "nope"})
    assert answer.status_code == 400
    assert "could not be installed" in answer.text


def test_connect_redirects_to_intuit_with_scope_and_signed_state(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location()
    url = urlparse(authorize_redirect(stack, location_id))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == stack.settings.qbo_auth_url
    assert query["scope"] == "com.intuit.quickbooks.accounting"
    assert query["response_type"] == "code" and query["client_id"] == QBO_CLIENT_ID
    assert query["redirect_uri"] == f"{stack.service_url}/oauth/quickbooks/callback"
    payload = json.loads(base64.urlsafe_b64decode(query["state"].split(".")[0] + "=="))
    assert payload["l"] == location_id
    with stack.runtime.sessions() as session:
        assert session.get(OAuthState, payload["n"]) is not None


def test_connect_needs_the_admin(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location()
    answer = httpx.get(f"{stack.service_url}/connect/quickbooks", params={"location_id": location_id})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


def test_connect_reads_company_and_starts_customer_import(connected: Connected) -> None:  # noqa: F811
    with connected.stack.runtime.sessions() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        kinds = {job.kind for job in session.execute(select(SyncJob)).scalars()}
    assert conn.status == "connected" and conn.realm_id == connected.realm_id
    assert conn.company_name == "Acme Plumbing LLC" and conn.country == "US" and conn.home_currency == "USD"
    assert "SalesFormsPrefs" in conn.preferences and "CurrencyPrefs" in conn.preferences
    assert conn.refresh_hard_expires_at is not None
    assert routing.CUSTOMER_IMPORT in kinds


def test_connected_callback_lands_on_the_settings_page(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location()
    realm_id = stack.qbo.add_company(name="Landing Co")
    answer = httpx.get(callback_url(stack, location_id, realm_id), follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/settings/integrations?location_id={location_id}&connected=1"


def test_replayed_state_is_refused(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location()
    url = callback_url(stack, location_id, stack.qbo.add_company())
    assert httpx.get(url).status_code == 303
    replay = httpx.get(url)
    assert replay.status_code == 400
    assert "already used" in replay.text


def test_tampered_state_is_refused(stack: Stack) -> None:  # noqa: F811
    victim = stack.install_crm_location(name="Victim")
    attacker = stack.install_crm_location(name="Attacker")
    url = urlparse(callback_url(stack, attacker, stack.qbo.add_company()))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    payload, signature = query["state"].split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["l"] = victim  # re-bind the state to another location without the key
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    for state in (f"{forged}.{signature}", query["state"][:-2] + "xx", "garbage"):
        answer = httpx.get(f"{stack.service_url}/oauth/quickbooks/callback?" + urlencode({**query, "state": state}))
        assert answer.status_code == 400
        assert "could not be verified" in answer.text or "malformed" in answer.text
    with stack.runtime.sessions() as session:
        assert session.execute(select(QboConnection)).first() is None


def test_expired_state_is_refused(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location()
    with stack.runtime.sessions.begin() as session:
        state = issue_state(session, TEST_SECRET, location_id, now=utcnow() - timedelta(minutes=11))
    realm_id = stack.qbo.add_company()
    code = stack.qbo.issue_code(
        QBO_CLIENT_ID, f"{stack.service_url}/oauth/quickbooks/callback", qbo_oauth.SCOPE_ACCOUNTING, realm_id
    )
    answer = httpx.get(
        f"{stack.service_url}/oauth/quickbooks/callback", params={"code": code, "state": state, "realmId": realm_id}
    )
    assert answer.status_code == 400
    assert "expired" in answer.text


def test_user_cancelling_at_intuit_shows_a_page(stack: Stack) -> None:  # noqa: F811
    answer = httpx.get(f"{stack.service_url}/oauth/quickbooks/callback", params={"error": "access_denied"})
    assert answer.status_code == 400 and "cancelled" in answer.text


def test_realm_connected_elsewhere_is_refused(connected: Connected) -> None:  # noqa: F811
    stack = connected.stack  # noqa: F811
    other = stack.install_crm_location(name="Second Shop")
    answer = httpx.get(callback_url(stack, other, connected.realm_id))
    assert answer.status_code == 409
    assert "already connected to another location" in answer.text
    with stack.runtime.sessions() as session:
        conns = list(session.execute(select(QboConnection)).scalars())
    assert [c.location_id for c in conns] == [connected.location_id]


def test_switching_company_needs_a_disconnect_first(connected: Connected) -> None:  # noqa: F811
    stack = connected.stack  # noqa: F811
    answer = httpx.get(callback_url(stack, connected.location_id, stack.qbo.add_company(name="Other Books")))
    assert answer.status_code == 409 and "Disconnect it first" in answer.text


def _fail_auth_job(stack: Stack, location_id: str) -> None:  # noqa: F811
    with stack.runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, location_id, routing.INVOICE, "inv-missed", "InvoiceSent webhook")
        job = session.get(SyncJob, job_id)
        assert job is not None
        job.state, job.active_key, job.error_category = "failed", None, "auth"
        job.last_error = "QuickBooks refused the saved authorization"


def test_invalid_grant_needs_reconnect_then_reconnect_resumes_with_catch_up(connected: Connected) -> None:  # noqa: F811
    stack, location_id = connected.stack, connected.location_id  # noqa: F811
    _fail_auth_job(stack, location_id)
    stack.qbo.revoke_all()
    stack.qbo.expire_access_tokens()
    with pytest.raises(AuthError):
        QboClient(
            realm_id=connected.realm_id,
            api_base=stack.settings.qbo_api_base_url,
            tokens=DbQboTokenSource(stack.runtime, location_id),
            http=stack.runtime.http,
        ).company_info()

    with http(stack) as client:
        state = client.get(f"/api/locations/{location_id}").json()
        page = client.get("/settings/integrations", params={"location_id": location_id})
    assert state["quickbooks"]["status"] == "needs_reconnect"
    assert "invalid_grant" in state["quickbooks"]["needs_reconnect_reason"]
    assert state["token_health"]["status"] == "needs_reconnect"
    assert state["is_syncing"] is False
    assert "QuickBooks needs to be reconnected" in page.text and "Reconnect</a>" in page.text

    # Webhooks are ignored while paused.
    stack.qbo.ui_create(connected.realm_id, "Customer", {"DisplayName": "Paused Pat"})
    stack.deliver_webhooks()
    with stack.runtime.sessions() as session:
        outcomes = set(session.execute(select(InboxEvent.outcome).where(InboxEvent.source == "qbo")).scalars())
    assert outcomes == {"ignored"}

    stack.connect_quickbooks(location_id, realm_id=connected.realm_id)
    with stack.runtime.sessions() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        pending = {
            (j.kind, j.entity_id) for j in session.execute(select(SyncJob).where(SyncJob.state == "pending")).scalars()
        }
    assert conn.status == "connected" and conn.status_reason is None
    assert (routing.INVOICE, "inv-missed") in pending
    for kind in (routing.INVOICE_RECONCILE, routing.TRANSACTION_POLL, routing.QBO_CDC):
        assert (kind, "all") in pending
    with http(stack) as client:
        assert client.get(f"/api/locations/{location_id}").json()["is_syncing"] is True


def test_disconnect_revokes_at_intuit_and_keeps_history(connected: Connected) -> None:  # noqa: F811
    stack, location_id = connected.stack, connected.location_id  # noqa: F811
    cipher = stack.runtime.cipher
    with stack.runtime.sessions() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        access, refresh = cipher.decrypt(conn.access_token or ""), cipher.decrypt(conn.refresh_token or "")
        history = len(list(session.execute(select(Activity)).scalars()))
    assert history > 0

    with http(stack) as client:
        answer = client.post(f"/api/locations/{location_id}/disconnect")
        assert answer.status_code == 200 and answer.json()["revoked"] is True
        state = client.get(f"/api/locations/{location_id}").json()
        again = client.post(f"/api/locations/{location_id}/disconnect")
    assert again.status_code == 409
    assert state["quickbooks"]["status"] == "disconnected" and state["is_syncing"] is False

    with pytest.raises(AuthError):
        qbo_oauth.refresh(
            stack.runtime.http,
            token_url=stack.settings.qbo_token_url,
            client_id=QBO_CLIENT_ID,
            client_secret=QBO_CLIENT_SECRET,
            refresh_token=refresh,
            now=utcnow(),
        )
    with pytest.raises(AuthError):
        QboClient(
            realm_id=connected.realm_id,
            api_base=stack.settings.qbo_api_base_url,
            tokens=StaticTokenSource(access),
            http=stack.runtime.http,
        ).company_info()
    with stack.runtime.sessions() as session:
        conn = session.execute(select(QboConnection)).scalar_one()
        assert conn.access_token is None and conn.refresh_token is None and conn.realm_id == connected.realm_id
        assert len(list(session.execute(select(Activity)).scalars())) == history
    # The realm is free again: the same location (or another) can connect it.
    stack.connect_quickbooks(location_id, realm_id=connected.realm_id)


def test_database_file_holds_no_plaintext_token(connected: Connected, tmp_path: Path) -> None:  # noqa: F811
    stack = connected.stack  # noqa: F811
    # One refresh too, so several generations of tokens have passed through the database.
    with stack.runtime.sessions() as session:
        old_access = stack.runtime.cipher.decrypt(
            session.execute(select(QboConnection)).scalar_one().access_token or ""
        )
    DbQboTokenSource(stack.runtime, connected.location_id).force_refresh(old_access)
    secrets: set[str] = set(stack.qbo._access) | set(stack.qbo._refresh)
    cipher = stack.runtime.cipher
    with stack.runtime.sessions() as session:
        location = session.get(Location, connected.location_id)
        assert location is not None and location.crm_access_token and location.crm_refresh_token
        secrets |= {cipher.decrypt(location.crm_access_token), cipher.decrypt(location.crm_refresh_token)}
        conn = session.execute(select(QboConnection)).scalar_one()
        secrets |= {cipher.decrypt(conn.access_token or ""), cipher.decrypt(conn.refresh_token or "")}
    assert len(secrets) >= 5  # QBO: two access tokens, the current refresh token; CRM: access + refresh
    files = [p for p in tmp_path.iterdir() if p.name.startswith("qbconnect.db") and p.is_file()]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    assert len(blob) > 10_000
    leaked = [s[:8] + "…" for s in secrets if s.encode() in blob]
    assert leaked == []

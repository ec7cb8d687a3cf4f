"""The stack itself: both OAuth flows connect a location, and webhooks reach the service."""

from __future__ import annotations

from sqlalchemy import select

from qbconnect.db.models import InboxEvent, Location, QboConnection
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


def test_install_and_connect_store_encrypted_tokens(connected: Connected) -> None:  # noqa: F811
    runtime = connected.stack.runtime
    with runtime.sessions() as session:
        location = session.get(Location, connected.location_id)
        conn = session.execute(select(QboConnection)).scalar_one()
    assert location is not None and location.crm_status == "installed"
    assert conn.realm_id == connected.realm_id and conn.status == "connected"
    assert conn.company_name == "Acme Plumbing LLC"
    assert conn.access_token and not conn.access_token.startswith("ey")
    assert runtime.cipher.decrypt(conn.access_token) != conn.access_token


def test_crm_webhooks_reach_the_service_signed(connected: Connected) -> None:  # noqa: F811
    crm = connected.stack.crm
    contact = crm.create_contact(connected.location_id, firstName="Ann", lastName="Lee", email="ann@example.com")
    invoice = crm.create_invoice(
        connected.location_id, contact_id=contact["id"], items=[{"name": "Repair", "qty": 1, "amount": 120}]
    )
    crm.send_invoice(invoice["_id"])
    assert connected.stack.deliver_webhooks() >= 1
    with connected.stack.runtime.sessions() as session:
        types = {row.event_type for row in session.execute(select(InboxEvent)).scalars()}
    assert "InvoiceSent" in types

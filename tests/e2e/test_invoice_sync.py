"""Invoice sync end to end (US company): each CRM trigger through webhooks, jobs and both emulators."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from qbconnect.db.models import Activity, Link
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


def settle(c: Connected) -> None:
    for _ in range(5):
        delivered = c.stack.deliver_webhooks()
        runs = c.stack.drain()
        if not delivered and not runs:
            return


def qbo_invoices(c: Connected) -> list[dict[str, Any]]:
    return c.stack.qbo.entities(c.realm_id, "Invoice")


def activity(c: Connected, crm_id: str) -> list[Activity]:
    with c.stack.runtime.sessions() as session:
        return list(
            session.execute(select(Activity).where(Activity.entity_id == crm_id).order_by(Activity.id)).scalars()
        )


def new_invoice(c: Connected, *, email: str = "ann@example.com", **kw: Any) -> dict[str, Any]:
    crm = c.stack.crm
    contact = crm.find_by_email(c.location_id, email) or crm.create_contact(
        c.location_id, firstName="Ann", lastName="Lee", email=email
    )
    items = kw.pop("items", [{"name": "Repair", "qty": 2, "amount": 60, "taxes": [{"name": "Sales tax", "rate": 8.25}]}])
    return crm.create_invoice(c.location_id, contact_id=contact["id"], items=items, **kw)


def test_sent_invoice_becomes_one_qbo_invoice(connected: Connected) -> None:  # noqa: F811
    c = connected
    inv = new_invoice(c)
    settle(c)
    assert qbo_invoices(c) == []  # a draft is not synced
    assert activity(c, inv["_id"]) == [] or activity(c, inv["_id"])[-1].status == "skipped"
    c.stack.crm.send_invoice(inv["_id"])
    settle(c)
    [qinv] = qbo_invoices(c)
    crm_inv = c.stack.crm.invoice(inv["_id"])
    assert Decimal(str(qinv["TotalAmt"])) == crm_inv["total"]
    assert Decimal(str(qinv["Balance"])) == crm_inv["amountDue"]
    rows = activity(c, inv["_id"])
    assert rows[-1].status == "done", rows[-1].error_message
    assert "created" in (rows[-1].summary or "")

"""Rows a non-accountant can read, for the QuickBooks → CRM kinds: a contact row names the customer and the
CRM contact it wrote ("Contact · Kira Garcia → CRM contact …"), a review-request row names the customer and
the first invoice ("Review request · Kira Garcia · Invoice #1042"); both link the record in QuickBooks and
can be found by the customer's name or email."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from qbconnect.db.models import Activity
from qbconnect.services import activity_log
from qbconnect.services.activity_log import LogFilter, activity_json, headline
from qbconnect.sync.engine.routing import CUSTOMER, QBO_PAYMENT
from tests.support.engine_harness import set_settings
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401


def _run(c: Connected) -> None:
    while c.stack.deliver_webhooks():
        pass
    c.stack.drain()


def _rows(c: Connected, kind: str) -> list[Activity]:
    with c.stack.runtime.sessions() as session:
        stmt = select(Activity).where(Activity.location_id == c.location_id, Activity.kind == kind)
        return list(session.execute(stmt.order_by(Activity.id)).scalars())


def _kira(c: Connected) -> str:
    body: dict[str, Any] = {
        "GivenName": "Kira",
        "FamilyName": "Garcia",
        "DisplayName": "Kira Garcia",
        "PrimaryEmailAddr": {"Address": "Kira.Garcia@example.com"},
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def _invoice(c: Connected, customer_id: str, number: str, amount: str) -> dict[str, Any]:
    """A QuickBooks invoice of one "Hours" line, made in QuickBooks itself."""
    item = next(i for i in c.stack.qbo.entities(c.realm_id, "Item") if i["Name"] == "Hours")
    line = {
        "Amount": amount,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
    }
    body = {"CustomerRef": {"value": customer_id}, "DocNumber": number, "Line": [line]}
    return dict(c.stack.qbo.ui_create(c.realm_id, "Invoice", body))


def test_a_contact_row_names_the_customer_and_the_crm_contact(connected: Connected) -> None:  # noqa: F811
    _run(connected)  # the import after connecting
    customer_id = _kira(connected)
    _run(connected)
    rows = [row for row in _rows(connected, CUSTOMER) if row.entity_id == customer_id]
    assert rows and rows[-1].status == "done", [(r.status, r.summary) for r in rows]
    row = rows[-1]
    contact = connected.stack.crm.find_by_email(connected.location_id, "kira.garcia@example.com")
    assert contact is not None and row.crm_id == contact["id"]
    assert (row.label, row.customer, row.customer_email, row.qbo_type) == (
        "Contact",
        "Kira Garcia",
        "kira.garcia@example.com",
        "Customer",
    )
    assert headline(row) == f"Contact · Kira Garcia → CRM contact {contact['id']}"
    view = activity_json(row, environment="sandbox")
    assert view["qbo_url"] == f"https://app.sandbox.qbo.intuit.com/app/customerdetail?nameId={customer_id}"
    with connected.stack.runtime.sessions() as session:
        for needle in ("kira garcia", "KIRA.GARCIA@example"):
            found = activity_log.page_of(session, connected.location_id, LogFilter(kind=CUSTOMER, search=needle))
            assert [r.id for r in found.rows] == [row.id]


def test_a_review_request_row_names_the_customer_and_the_first_invoice(connected: Connected) -> None:  # noqa: F811
    set_settings(connected.stack.runtime, connected.location_id, review_link="https://g.page/r/acme/review")
    _run(connected)
    customer_id = _kira(connected)
    invoice = _invoice(connected, customer_id, "1042", "885.00")
    half = {"CustomerRef": {"value": customer_id}, "TotalAmt": "400.00"}
    first = connected.stack.qbo.ui_create(
        connected.realm_id,
        "Payment",
        {**half, "Line": [{"Amount": "400.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]},
    )
    _run(connected)
    skipped = [row for row in _rows(connected, QBO_PAYMENT) if row.entity_id == str(first["Id"])][-1]
    assert skipped.status == "skipped" and skipped.number == "1042"
    assert headline(skipped).startswith("Review request · ") and headline(skipped).endswith(" · Invoice #1042")

    rest = connected.stack.qbo.ui_create(
        connected.realm_id,
        "Payment",
        {
            "CustomerRef": {"value": customer_id},
            "TotalAmt": "485.00",
            "Line": [{"Amount": "485.00", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    _run(connected)
    sent = [row for row in _rows(connected, QBO_PAYMENT) if row.entity_id == str(rest["Id"])][-1]
    assert sent.status == "done", sent.summary
    assert (sent.label, sent.customer, sent.customer_email, sent.number, sent.qbo_type) == (
        "Review request",
        "Kira Garcia",
        "kira.garcia@example.com",
        "1042",
        "Payment",
    )
    assert headline(sent) == "Review request · Kira Garcia · Invoice #1042"
    view = activity_json(sent, environment="production")
    assert view["qbo_url"] == f"https://app.qbo.intuit.com/app/recvpayment?txnId={rest['Id']}"
    with connected.stack.runtime.sessions() as session:
        found = activity_log.page_of(session, connected.location_id, LogFilter(kind=QBO_PAYMENT, search="#1042"))
        assert sent.id in [r.id for r in found.rows]


def test_a_failed_review_request_still_names_the_customer_and_the_invoice(connected: Connected) -> None:  # noqa: F811
    """HighLevel refuses the SMS (the contact has no phone): the failed row reads as the review request it is,
    not as a bare payment id, because the handler described the record before the call that failed."""
    set_settings(
        connected.stack.runtime,
        connected.location_id,
        review_link="https://g.page/r/acme/review",
        review_request_channel="SMS",
    )
    _run(connected)
    customer_id = _kira(connected)
    invoice = _invoice(connected, customer_id, "1043", "59.38")
    payment = connected.stack.qbo.ui_create(
        connected.realm_id,
        "Payment",
        {
            "CustomerRef": {"value": customer_id},
            "TotalAmt": "59.38",
            "Line": [{"Amount": "59.38", "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    _run(connected)
    failed = [row for row in _rows(connected, QBO_PAYMENT) if row.entity_id == str(payment["Id"])][-1]
    assert failed.status == "failed", failed.summary
    assert headline(failed) == "Review request · Kira Garcia · Invoice #1043"
    assert failed.customer_email == "kira.garcia@example.com"


def test_a_failed_sales_receipt_row_still_names_the_sale(connected: Connected) -> None:  # noqa: F811
    """A run that fails after reading the CRM payment keeps its readable fields (ctx.describe)."""
    set_settings(connected.stack.runtime, connected.location_id, payment_method_map={"visa": "999"})
    contact = connected.stack.crm.create_contact(
        connected.location_id, firstName="Kira", lastName="Garcia", email="kira@example.com"
    )
    connected.stack.crm.create_order(
        connected.location_id,
        contact_id=contact["id"],
        source_type="funnel",
        source_sub_type="one_step_order_form",
        items=[{"name": "Course", "amount": "885.00"}],
    )
    connected.stack.crm.flush_webhooks()
    _run(connected)
    with connected.stack.runtime.sessions() as session:
        failed = [a for a in session.execute(select(Activity)).scalars() if a.status == "failed"]
    assert len(failed) == 1, [(a.kind, a.status, a.summary) for a in failed]
    (row,) = failed
    assert (row.customer, row.customer_email, str(row.amount), row.qbo_type) == (
        "Kira Garcia",
        "kira@example.com",
        "885.00",
        "SalesReceipt",
    )
    assert headline(row).startswith("Order form payment ") and " · Kira Garcia · $885.00" in headline(row)

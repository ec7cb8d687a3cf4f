"""Review-request pieces: payment links, first-invoice paging, contact and DND rules, the preview, the claim."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.link_model import Link
from qbconnect.db.models import ReviewRequest
from qbconnect.domain.location_settings import load
from qbconnect.domain.review_message import compose, inactive_reason, template_of
from qbconnect.errors import AuthError, PermanentError, TransientError
from qbconnect.runtime import Runtime
from qbconnect.sync.reviews import store as review_store
from qbconnect.sync.reviews.contact import dnd_reason, linked_contact_id, resolve_contact
from qbconnect.sync.reviews.handler import (
    INVOICE_PAGE,
    _definitely_not_sent,
    customer_invoices,
    linked_invoice_ids,
    preview_review_message,
)

LINK = "https://g.page/r/acme/review"


# ---------------------------------------------------------------------------------------------- payment
def test_linked_invoice_ids_reads_only_invoice_links_once_each() -> None:
    payment = {
        "Line": [
            {"Amount": 10, "LinkedTxn": [{"TxnId": "7", "TxnType": "Invoice"}]},
            {"Amount": 5, "LinkedTxn": [{"TxnId": "9", "TxnType": "CreditMemo"}, {"TxnId": "8", "TxnType": "Invoice"}]},
            {"Amount": 1, "LinkedTxn": [{"TxnId": "7", "TxnType": "Invoice"}]},
            {"Amount": 2},
        ]
    }
    assert linked_invoice_ids(payment) == ["7", "8"]
    assert linked_invoice_ids({}) == []


class FakeQbo:
    def __init__(self, invoices: list[dict[str, Any]]) -> None:
        self.invoices = sorted(invoices, key=lambda inv: inv["TxnDate"])
        self.statements: list[str] = []

    def query(self, statement: str) -> list[dict[str, Any]]:
        self.statements.append(statement)
        start = int(statement.split("STARTPOSITION ")[1].split()[0])
        size = int(statement.split("MAXRESULTS ")[1].split()[0])
        return self.invoices[start - 1 : start - 1 + size]


def _inv(ident: int, date: str, total: str = "10", balance: str = "0") -> dict[str, Any]:
    return {"Id": str(ident), "TxnDate": date, "TotalAmt": total, "Balance": balance}


def test_customer_invoices_stops_once_a_page_ends_after_the_first_date() -> None:
    many = [_inv(1, "2024-01-01")] + [_inv(i, "2024-06-01") for i in range(2, 3 * INVOICE_PAGE)]
    qbo = FakeQbo(many)
    result = customer_invoices(qbo, "58")  # type: ignore[arg-type]
    assert len(qbo.statements) == 1
    assert len(result) == INVOICE_PAGE
    assert "WHERE CustomerRef = '58' ORDERBY TxnDate STARTPOSITION 1 MAXRESULTS" in qbo.statements[0]


def test_customer_invoices_reads_on_while_the_first_date_continues_or_only_voids_seen() -> None:
    # Page 1 is all zero-total (voided) invoices, page 2 still the same date as the first real one.
    voided = [_inv(i, "2024-01-01", total="0") for i in range(1, INVOICE_PAGE + 1)]
    same_day = [_inv(i, "2024-02-01") for i in range(500, 500 + INVOICE_PAGE)]
    later = [_inv(900, "2024-03-01")]
    qbo = FakeQbo(voided + same_day + later)
    result = customer_invoices(qbo, "O'Brien")  # type: ignore[arg-type]
    assert len(qbo.statements) == 3
    assert len(result) == 2 * INVOICE_PAGE + 1
    assert "CustomerRef = 'O\\'Brien'" in qbo.statements[0]


# ---------------------------------------------------------------------------------------------- contact
@pytest.mark.parametrize(
    ("contact", "channel", "expected"),
    [
        ({"dnd": True}, "Email", "do-not-disturb is on for all channels"),
        ({"dnd": False, "dndSettings": {"Email": {"status": "active"}}}, "Email", "do-not-disturb is on for Email"),
        ({"dndSettings": {"SMS": {"status": "permanent"}}}, "SMS", "do-not-disturb is permanently on for SMS"),
        ({"dndSettings": {"SMS": {"status": "active"}}}, "Email", None),
        ({"dndSettings": {"Email": {"status": "inactive"}}}, "Email", None),
        ({}, "SMS", None),
    ],
)
def test_dnd_reason(contact: dict[str, Any], channel: str, expected: str | None) -> None:
    assert dnd_reason(contact, channel) == expected


class FakeCrm:
    def __init__(self, contacts: dict[str, dict[str, Any]]) -> None:
        self.contacts = contacts
        self.calls: list[tuple[str, Any]] = []

    def get_contact(self, contact_id: str) -> dict[str, Any] | None:
        self.calls.append(("get", contact_id))
        return self.contacts.get(contact_id)

    def find_duplicate_contact(self, *, email: str | None = None, phone: str | None = None) -> dict[str, Any] | None:
        self.calls.append(("find", email or phone))
        return next((c for c in self.contacts.values() if c.get("email") == email or c.get("phone") == phone), None)

    def upsert_contact(self, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.calls.append(("upsert", fields))
        contact = {"id": "new", **fields}
        self.contacts["new"] = contact
        return contact, True


CUSTOMER = {"Id": "58", "DisplayName": "Ann Lee", "GivenName": "Ann", "PrimaryEmailAddr": {"Address": "Ann@X.com"}}


def test_linked_contact_id_reads_the_customer_link(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        session.add(Link(location_id="loc", kind="customer", crm_id="c1", qbo_id="58", data={}))
        session.add(Link(location_id="loc", kind="invoice", crm_id="inv1", qbo_id="59", data={}))
        session.add(Link(location_id="other", kind="customer", crm_id="c9", qbo_id="59", data={}))
    with runtime.sessions() as session:
        assert linked_contact_id(session, "loc", "58") == "c1"
        assert linked_contact_id(session, "loc", "59") is None
    later = utcnow() + timedelta(seconds=5)
    with runtime.sessions.begin() as session:
        session.add(Link(location_id="loc", kind="customer", crm_id="c2", qbo_id="58", data={}, updated_at=later))
    with runtime.sessions() as session:
        assert linked_contact_id(session, "loc", "58") == "c2"  # the most recently written row wins


class CustomerSource:
    """Hands out a QuickBooks customer and counts how often it was asked for (each ask may be a read)."""

    def __init__(self, customer: dict[str, Any]) -> None:
        self.customer = customer
        self.asked = 0

    def __call__(self) -> dict[str, Any]:
        self.asked += 1
        return self.customer


def test_resolve_contact_prefers_the_linked_contact_and_does_not_need_the_customer() -> None:
    crm = FakeCrm({"c1": {"id": "c1", "email": "other@x.com", "firstName": "Annie"}})
    source = CustomerSource(CUSTOMER)
    found = resolve_contact(crm, source, "c1")  # type: ignore[arg-type]
    assert (found.id, found.found_by, found.first_name) == ("c1", "link", "Annie")
    assert source.asked == 0


def test_resolve_contact_falls_back_to_email_when_the_link_is_stale() -> None:
    crm = FakeCrm({"c2": {"id": "c2", "email": "ann@x.com"}})
    source = CustomerSource(CUSTOMER)
    found = resolve_contact(crm, source, "deleted")  # type: ignore[arg-type]
    assert (found.id, found.found_by) == ("c2", "email")
    assert ("find", "ann@x.com") in crm.calls
    assert source.asked == 1


def test_resolve_contact_creates_a_missing_contact() -> None:
    crm = FakeCrm({})
    found = resolve_contact(crm, CustomerSource(CUSTOMER), None)  # type: ignore[arg-type]
    assert found.found_by == "created"
    upserted = crm.calls[-1][1]
    assert upserted["email"] == "ann@x.com" and upserted["firstName"] == "Ann"


def test_resolve_contact_by_phone_and_without_any_address() -> None:
    crm = FakeCrm({"c3": {"id": "c3", "phone": "+15550100"}})
    by_phone = {"Id": "9", "DisplayName": "Bo", "PrimaryPhone": {"FreeFormNumber": "+15550100"}}
    assert resolve_contact(crm, CustomerSource(by_phone), None).found_by == "phone"  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="no email address or phone number"):
        resolve_contact(crm, CustomerSource({"Id": "10", "DisplayName": "Nobody"}), None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- message
def test_inactive_reason_needs_both_switch_and_link() -> None:
    assert inactive_reason(load({})) == "no review link set"
    assert inactive_reason(load({"review_link": LINK, "review_request_enabled": False})) == (
        "review requests are turned off"
    )
    assert inactive_reason(load({"review_link": LINK})) is None


def test_compose_uses_the_subject_setting_unless_the_template_has_its_own() -> None:
    settings = load(
        {"review_link": LINK, "review_subject": "Thanks, {first_name}", "review_message": "Hi {{contact.first_name}}"}
    )
    message = compose(settings, first_name="Ann", business_name="Acme", review_link=LINK)
    assert message.subject == "Thanks, Ann"
    assert message.text == f"Hi Ann\n\n{LINK}"
    own = load({"review_link": LINK, "review_message": "Subject: From {business_name}\nHello"})
    assert template_of(own) == "Subject: From {business_name}\nHello"
    assert compose(own, first_name="", business_name="Acme", review_link=LINK).subject == "From Acme"


def test_preview_says_off_until_a_review_link_is_set() -> None:
    preview = preview_review_message(load({}), "Acme Plumbing")
    assert preview["active"] is False
    assert preview["status"].startswith("Off until you set a review link")
    assert preview["review_link"] is None
    assert "https://example.com/your-review-link" in preview["text"]
    assert "Acme Plumbing" in preview["text"] and "Alex" in preview["text"]


def test_preview_of_an_active_email_and_sms_request() -> None:
    email = preview_review_message(load({"review_link": LINK}), "Acme & Sons")
    assert email["active"] is True and email["status"].startswith("On:")
    assert email["channel"] == "Email" and email["subject"] == "How did we do, Alex?"
    assert f'<a href="{LINK}">{LINK}</a>' in email["html"] and "Acme &amp; Sons" in email["html"]
    sms = preview_review_message(load({"review_link": LINK, "review_request_channel": "SMS"}), "Acme")
    assert sms["channel"] == "SMS" and sms["subject"] is None and sms["html"] is None
    assert LINK in sms["text"] and "text message" in sms["status"]
    off = preview_review_message(load({"review_link": LINK, "review_request_enabled": False}), "Acme")
    assert off["active"] is False and off["status"] == "Off: review requests are turned off."


# ---------------------------------------------------------------------------------------------- send errors
@pytest.mark.parametrize(
    ("error", "not_sent"),
    [
        (PermanentError("refused", code="http_400"), True),
        (AuthError("token", code="http_401"), True),
        (TransientError("limit", code="http_429"), True),
        (TransientError("budget", code="rate_budget"), True),
        (TransientError("down", code="network", detail="ConnectError"), True),
        (TransientError("cut", code="network", detail="RemoteProtocolError"), False),
        (TransientError("slow", code="timeout", detail="ReadTimeout"), False),
        (TransientError("oops", code="http_502"), False),
    ],
)
def test_which_send_failures_prove_nothing_was_sent(error: Exception, not_sent: bool) -> None:
    assert _definitely_not_sent(error) is not_sent  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the claim
def _claim(runtime: Runtime, status: str = review_store.SENDING, customer: str = "58") -> int | None:
    with runtime.sessions.begin() as session:
        row = review_store.claim(
            session,
            location_id="loc",
            qbo_customer_id=customer,
            qbo_invoice_id="1",
            qbo_payment_id="9",
            contact_id="c1",
            channel="Email",
            status=status,
        )
        return None if row is None else row.id


def _status(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return [r.status for r in session.execute(select(ReviewRequest)).scalars()]


def test_one_claim_per_customer_ever(runtime: Runtime) -> None:
    first = _claim(runtime)
    assert first is not None
    assert _claim(runtime) is None
    assert _claim(runtime, review_store.SKIPPED) is None
    assert _claim(runtime, customer="59") is not None  # another customer is another request
    assert _status(runtime) == ["sending", "sending"]


@pytest.mark.parametrize("final", sorted(review_store.FINAL))
def test_final_rows_are_never_claimed_again(runtime: Runtime, final: str) -> None:
    row_id = _claim(runtime)
    with runtime.sessions.begin() as session:
        row = session.get(ReviewRequest, row_id)
        assert row is not None
        review_store.record(row, final, "why")
    assert _claim(runtime) is None


def test_a_failed_row_is_claimed_again_once(runtime: Runtime) -> None:
    row_id = _claim(runtime)
    with runtime.sessions.begin() as session:
        row = session.get(ReviewRequest, row_id)
        assert row is not None
        review_store.record(row, review_store.FAILED, "HighLevel refused")
    with runtime.sessions.begin() as session:
        again = review_store.claim(
            session,
            location_id="loc",
            qbo_customer_id="58",
            qbo_invoice_id="1",
            qbo_payment_id="10",
            contact_id="c2",
            channel="SMS",
            status=review_store.SENDING,
        )
        assert again is not None and again.id == row_id
        assert (again.status, again.qbo_payment_id, again.contact_id, again.channel, again.detail) == (
            "sending",
            "10",
            "c2",
            "SMS",
            None,
        )
    assert _claim(runtime) is None  # the resumed claim holds it now
    assert _status(runtime) == ["sending"]

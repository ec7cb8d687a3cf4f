"""What the change query returned, kept for the job that acts on it: taken once, newest version first, the
body dropped when taken; kept per company; Decimal amounts survive."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from qbconnect.db.models import InboxEvent
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import changes


def customer(stamp: str, name: str = "Ann", customer_id: str = "58") -> dict[str, Any]:
    return {"Id": customer_id, "GivenName": name, "MetaData": {"LastUpdatedTime": stamp}}


def test_the_job_takes_the_newest_version_once(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        assert changes.keep(session, "loc", "9130", "Customer", customer("2026-12-01T10:00:00Z", "Ann"))
        assert changes.keep(session, "loc", "9130", "Customer", customer("2026-12-01T10:05:00Z", "Annie"))
        changes.keep(session, "loc", "9130", "Customer", customer("2026-12-01T10:05:00Z", "Bo", "59"))
    with runtime.sessions.begin() as session:
        taken = changes.take(session, "loc", "9130", "Customer", "58")
    assert taken is not None and taken.object["GivenName"] == "Annie"
    with runtime.sessions.begin() as session:  # a retry finds nothing: it reads QuickBooks
        assert changes.take(session, "loc", "9130", "Customer", "58") is None
        other = changes.take(session, "loc", "9130", "Customer", "59")
    assert other is not None and other.object["GivenName"] == "Bo"
    with runtime.sessions() as session:
        rows = session.execute(select(InboxEvent).where(InboxEvent.source == changes.SOURCE)).scalars().all()
    assert {(r.outcome, r.body) for r in rows} == {("used", "")}  # nothing personal kept once taken


def test_kept_per_company_and_location(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        changes.keep(session, "loc", "9130", "Customer", customer("2026-12-01T10:00:00Z"))
    with runtime.sessions.begin() as session:
        assert changes.take(session, "loc", "4620", "Customer", "58") is None  # another company's customer 58
        assert changes.take(session, "other", "9130", "Customer", "58") is None
        assert changes.take(session, "loc", None, "Customer", "58") is None
        assert changes.take(session, "loc", "9130", "Customer", "58") is not None


def test_the_same_version_kept_again_is_taken_again(runtime: Runtime) -> None:
    same = customer("2026-12-01T10:00:00Z")
    with runtime.sessions.begin() as session:
        changes.keep(session, "loc", "9130", "Customer", same)
    with runtime.sessions.begin() as session:
        assert changes.take(session, "loc", "9130", "Customer", "58") is not None
    with runtime.sessions.begin() as session:  # the change query reports it again and queues its job again
        assert changes.keep(session, "loc", "9130", "Customer", same)
    with runtime.sessions.begin() as session:
        assert changes.take(session, "loc", "9130", "Customer", "58") is not None


def test_a_payment_keeps_its_related_objects_with_exact_amounts(runtime: Runtime) -> None:
    payment = {"Id": "77", "TotalAmt": Decimal("120.10"), "MetaData": {"LastUpdatedTime": "2026-12-01T10:00:00Z"}}
    invoice = {"Id": "5", "Balance": Decimal("0.00"), "CustomerRef": {"value": "58"}}
    with runtime.sessions.begin() as session:
        changes.keep(session, "loc", "9130", "Payment", payment, {"Invoice": [invoice], "Customer": [customer("x")]})
    with runtime.sessions.begin() as session:
        taken = changes.take(session, "loc", "9130", "Payment", "77")
    assert taken is not None
    assert taken.object["TotalAmt"] == Decimal("120.10")
    assert taken.related_by_id("Invoice") == {"5": invoice}
    assert str(taken.related_by_id("Invoice")["5"]["Balance"]) == "0.00"
    assert set(taken.related_by_id("Customer")) == {"58"}


def test_what_storage_cannot_hold_is_not_kept(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        assert not changes.keep(session, "loc", "9130", "Customer", {"GivenName": "no id"})
        assert not changes.keep(session, "loc", "9130", "Customer", customer("t", customer_id="9" * 200))
        assert not changes.keep(session, "loc", "9130", "Customer", {"Id": "60", "GivenName": "\ud800"})
    with runtime.sessions() as session:
        assert session.execute(select(InboxEvent)).first() is None

"""The sync log on the settings page: health banner, needs attention with plain fixes, checks, readable rows
with links and timelines, filters and paging, actions that answer in place (htmx), settings fix → retry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, ActivityAttempt
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401
from tests.web.test_pages import csrf_of, login, page

BAD_METHOD = (
    "QuickBooks says: Invalid Reference Id — PaymentMethod assigned to this transaction does not exist (Id=999). "
    "(field PaymentMethodRef)"
)
HTMX = {"HX-Request": "true"}


@pytest.fixture
def browser(connected: Connected) -> Iterator[httpx.Client]:  # noqa: F811
    client = login(connected.stack.service_url)
    yield client
    client.close()


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
        for row in session.execute(select(Activity).where(Activity.kind.in_(("customer_import", "qbo_cdc")))).scalars():
            session.delete(row)
        row = Activity(**values)
        session.add(row)
        session.flush()
        return row.id


def _failed(connected: Connected, entity: str, **fields: Any) -> int:  # noqa: F811
    values: dict[str, Any] = {
        "entity_id": entity,
        "status": "failed",
        "error_category": "permanent",
        "error_message": BAD_METHOD,
        "fault_code": "2500",
        "intuit_tid": "tid-77",
    }
    values.update(fields)
    return _add(connected, **values)


def test_banner_needs_attention_and_readable_rows(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    done = _add(
        connected,
        entity_id="inv-a",
        label="Invoice #1042",
        customer="Kira Garcia",
        amount=Decimal("885.00"),
        currency="USD",
        qbo_id="19",
        qbo_type="Invoice",
    )
    with connected.stack.runtime.sessions.begin() as session:
        session.add(
            ActivityAttempt(
                activity_id=done,
                attempt=1,
                started_at=utcnow() - timedelta(seconds=5),
                duration_ms=321,
                request_summary="Invoice inv-a · because: InvoiceSent webhook · 3 QuickBooks requests",
                outcome="done",
            )
        )
    html = page(browser, connected.location_id).text
    assert "All in step · last sync" in html
    assert "Invoice #1042 · Kira Garcia · $885.00 → QuickBooks invoice 19" in html
    assert "https://app.sandbox.qbo.intuit.com/app/invoice?txnId=19" in html
    assert "321 ms" in html and "3 QuickBooks requests" in html
    assert "attention-title" not in html
    _failed(connected, "inv-b", number="1043", label="Invoice #1043", customer="Tom Ng")
    html = page(browser, connected.location_id).text
    assert "1 item needs your attention" in html and "attention-title" in html
    assert "does not exist in QuickBooks or was made inactive" in html  # the plain fix
    assert "Payment methods → QuickBooks payment methods" in html
    assert "intuit_tid tid-77" in html
    assert 'id="checks"' in html and "Undeposited Funds" in html


def test_actions_answer_in_place(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    first = _failed(connected, "inv-c")
    second = _failed(connected, "inv-d")
    token = csrf_of(page(browser, connected.location_id).text)
    form = {"location_id": connected.location_id, "csrf_token": token}
    dismissed = browser.post("/settings/integrations/dismiss", data={**form, "activity_id": str(first)}, headers=HTMX)
    assert dismissed.status_code == 200 and 'id="sync-status"' in dismissed.text
    assert "1 item needs your attention" in dismissed.text and "Dismissed" in dismissed.text
    assert dismissed.headers["hx-trigger"] == "sync-log-changed"
    retried = browser.post("/settings/integrations/retry", data={**form, "activity_id": str(second)}, headers=HTMX)
    assert retried.status_code == 200 and "Queued to run again." in retried.text
    assert "need your attention" not in retried.text and "needs your attention" not in retried.text
    again = browser.post("/settings/integrations/retry", data={**form, "activity_id": str(second)}, headers=HTMX)
    assert again.status_code == 200 and "Cannot retry" in again.text
    with connected.stack.runtime.sessions() as session:
        row = session.get(Activity, first)
        assert row is not None and row.dismissed_by == "admin"


def test_retry_all_and_sync_an_invoice_now_from_the_page(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    _failed(connected, "inv-e")
    _failed(connected, "inv-f")
    token = csrf_of(page(browser, connected.location_id).text)
    form = {"location_id": connected.location_id, "csrf_token": token}
    answer = browser.post("/settings/integrations/retry-failed", data=form, headers=HTMX)
    assert answer.status_code == 200 and "2 queued to run again." in answer.text
    missing = browser.post("/settings/integrations/sync-invoice", data={**form, "number": "nope"}, headers=HTMX)
    assert "Cannot sync" in missing.text and "no CRM invoice" in missing.text
    assert (
        browser.post("/settings/integrations/retry-failed", data={"location_id": connected.location_id}).status_code
        == 403
    )


def test_history_filters_search_and_pages(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    for n in range(30):
        _add(connected, entity_id=f"h{n}", customer=f"Customer {n:02d}")
    _failed(connected, "h-bad", customer="Zed Failing")
    url = "/settings/integrations/sync-log"
    first = browser.get(url, params={"location_id": connected.location_id}).text
    assert "31 rows · page 1 of 2" in first and "Older →" in first
    second = browser.get(url, params={"location_id": connected.location_id, "page": "2"}).text
    assert "← Newer" in second and "Customer 00" in second
    failed = browser.get(url, params={"location_id": connected.location_id, "status": "failed"}).text
    assert "Zed Failing" in failed and "Customer 01" not in failed
    searched = browser.get(url, params={"location_id": connected.location_id, "q": "customer 07"}).text
    assert "Customer 07" in searched and "1 row" in searched
    assert "activity.csv?location_id=" in searched and "q=customer+07" in searched


def test_fixing_the_mapping_on_the_page_retries_the_rows_it_broke(browser: httpx.Client, connected: Connected) -> None:  # noqa: F811
    row = _failed(connected, "inv-g")
    html = page(browser, connected.location_id).text
    token = csrf_of(html)
    saved = browser.post(
        "/settings/integrations/settings",
        data={
            "location_id": connected.location_id,
            "csrf_token": token,
            "sync_invoices": "on",
            "payment_method_map.key.0": "visa",
            "payment_method_map.value.0": "1",
            "review_request_channel": "Email",
        },
    )
    assert saved.status_code == 303, saved.text
    with connected.stack.runtime.sessions() as session:
        stored = session.get(Activity, row)
        assert stored is not None and stored.status == "retried"

"""Which jobs an Intuit event asks for: the doorbell (one debounced change query per company), and the two
cases that keep a job per entity (a change older than the change query sees, a Merge's merged-away id)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from qbconnect.qbo.webhooks import QboEvent
from qbconnect.sync.engine.routing import (
    CDC_MAX_LOOKBACK,
    CUSTOMER,
    QBO_CDC,
    QBO_PAYMENT,
    JobRequest,
    jobs_for_qbo_event,
)

NOW = datetime.fromisoformat("2026-12-03T12:00:00+00:00")


def event(entity: str, operation: str, *, age: timedelta | None = timedelta(minutes=2), deleted: str | None = None):
    return QboEvent(
        event_id=f"{entity}-{operation}",
        realm_id="9130",
        entity=entity,
        entity_id="58",
        operation=operation,
        occurred_at=None if age is None else NOW - age,
        deleted_id=deleted,
    )


def asked(e: QboEvent, debounce: float = 30.0) -> list[tuple[str, str, float]]:
    return [(r.kind, r.entity_id, r.delay) for r in jobs_for_qbo_event(e, debounce_seconds=debounce, now=NOW)]


@pytest.mark.parametrize(
    ("entity", "operation"),
    [("Customer", "Create"), ("Customer", "Update"), ("Customer", "Delete"), ("Payment", "Create"),
     ("Payment", "Update")],
)  # fmt: skip
def test_a_customer_or_payment_change_rings_one_debounced_change_query(entity: str, operation: str) -> None:
    assert asked(event(entity, operation)) == [(QBO_CDC, "all", 30.0)]
    assert asked(event(entity, operation, age=None), debounce=5) == [(QBO_CDC, "all", 5.0)]  # no time given


@pytest.mark.parametrize(("entity", "operation"), [("Invoice", "Update"), ("Account", "Create"), ("Payment", "Void")])
def test_entities_the_product_does_not_act_on_ring_nothing(entity: str, operation: str) -> None:
    assert asked(event(entity, operation)) == []


def test_a_merge_also_asks_for_the_merged_away_customer() -> None:
    assert asked(event("Customer", "Merge", deleted="27")) == [(QBO_CDC, "all", 30.0), (CUSTOMER, "27", 0.0)]


def test_a_change_older_than_the_change_query_looks_back_is_read_by_id() -> None:
    old = CDC_MAX_LOOKBACK + timedelta(minutes=1)
    assert asked(event("Customer", "Update", age=old)) == [(CUSTOMER, "58", 0.0)]
    assert asked(event("Payment", "Create", age=old)) == [(QBO_PAYMENT, "58", 0.0)]
    assert asked(event("Customer", "Merge", age=old, deleted="27")) == [(CUSTOMER, "58", 0.0), (CUSTOMER, "27", 0.0)]
    (request,) = jobs_for_qbo_event(event("Customer", "Update", age=old), debounce_seconds=30, now=NOW)
    assert isinstance(request, JobRequest) and "more than 30 days ago" in request.reason
    # Just inside the window: still the doorbell.
    assert asked(event("Customer", "Update", age=CDC_MAX_LOOKBACK - timedelta(minutes=1))) == [(QBO_CDC, "all", 30.0)]

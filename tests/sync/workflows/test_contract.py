"""Contract: every body the app sends has the shape of the sample payload published with its trigger, and
docs/workflows.md publishes exactly those samples (what is registered in the Marketplace)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from qbconnect.sync.workflows import payloads
from qbconnect.sync.workflows.catalogue import (
    BALANCE,
    CUSTOMER_CREATED,
    INVOICE_OVERDUE,
    INVOICE_PAID,
    PAYMENT_RECEIVED,
    TRIGGERS,
)
from tests.sync.workflows.shapes import amounts_are_strings_with_two_decimals, shape

DOC = Path(__file__).resolve().parents[3] / "docs" / "workflows.md"

INVOICE = {
    "Id": "130",
    "DocNumber": "1042",
    "TxnDate": "2026-02-01",
    "DueDate": "2026-03-03",
    "TotalAmt": 885,
    "Balance": "0",
    "CurrencyRef": {"value": "USD"},
    "CustomerRef": {"value": "58", "name": "Kira Garcia"},
}
CUSTOMER = {
    "Id": "58",
    "DisplayName": "Kira Garcia",
    "PrimaryEmailAddr": {"Address": "Kira@Example.com"},
    "PrimaryPhone": {"FreeFormNumber": "+15555550123"},
    "CompanyName": "Garcia Design",
    "MetaData": {"CreateTime": "2026-03-04T07:19:42-08:00"},
}
PAYMENT = {"Id": "212", "TxnDate": "2026-03-04", "TotalAmt": 885.0, "PaymentRefNum": "CHK-3319"}
COMPANY = {"realmId": "9130357852645026", "name": "Acme Plumbing LLC"}


def facts(trigger: str) -> dict[str, Any]:
    customer = payloads.customer_facts("58", "production", CUSTOMER)
    built: dict[str, Any] = {"customer": customer, "company": COMPANY, "contact_phone": "+15555550123"}
    if trigger in (INVOICE_PAID, INVOICE_OVERDUE):
        built["invoice"] = payloads.invoice_facts(INVOICE, "production")
    if trigger == INVOICE_OVERDUE:
        built["overdue"] = {"stage": "7", "daysOverdue": 8, "amount": payloads.money("885")}
    if trigger == PAYMENT_RECEIVED:
        built["payment"] = payloads.payment_facts(PAYMENT, "production", ["130"])
    if trigger == CUSTOMER_CREATED:
        built["customer"] = payloads.new_customer_facts(CUSTOMER, "production", "2026-03-04T15:19:42Z")
    return built


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_the_body_sent_has_the_shape_of_the_published_sample(trigger: str) -> None:
    body = payloads.build(
        trigger,
        event_id=payloads.event_id("loc", f"{trigger}:x"),
        occurred_at=datetime(2026, 3, 4, 15, 20, tzinfo=UTC),
        facts=facts(trigger),
        contact_id="nmFmQEsNgz6AVpgLVUJ0",
    )
    sample = TRIGGERS[trigger].sample
    assert shape(body) == shape(sample)
    assert amounts_are_strings_with_two_decimals(body) == []
    assert amounts_are_strings_with_two_decimals(sample) == []
    assert body["event"]["type"] == trigger and body["event"]["occurredAt"] == "2026-03-04T15:20:00Z"
    assert body["customer"]["url"] == "https://app.qbo.intuit.com/app/customerdetail?nameId=58"


def test_the_samples_match_real_values() -> None:
    body = payloads.build(
        INVOICE_PAID,
        event_id="qbc_1",
        occurred_at=datetime(2026, 3, 4, 15, 20, tzinfo=UTC),
        facts=facts(INVOICE_PAID),
        contact_id="c1",
    )
    assert body["invoice"] == TRIGGERS[INVOICE_PAID].sample["invoice"]
    assert body["customer"] == TRIGGERS[INVOICE_PAID].sample["customer"]
    assert body["contact"] == {**TRIGGERS[INVOICE_PAID].sample["contact"], "id": "c1"}


def test_an_unlinked_customer_still_has_every_field() -> None:
    body = payloads.build(
        PAYMENT_RECEIVED,
        event_id="qbc_2",
        occurred_at=datetime(2026, 3, 4, tzinfo=UTC),
        facts={
            "customer": payloads.customer_facts("9", "sandbox"),
            "payment": facts(PAYMENT_RECEIVED)["payment"],
            "company": COMPANY,
        },
        contact_id=None,
    )
    assert shape(body) == shape(TRIGGERS[PAYMENT_RECEIVED].sample)
    assert body["contactId"] == "" and body["contact"]["id"] == "" and body["customer"]["name"] == ""


def test_event_ids_are_stable_and_distinct() -> None:
    assert payloads.event_id("loc", "invoice_paid:r:1") == payloads.event_id("loc", "invoice_paid:r:1")
    assert payloads.event_id("loc", "invoice_paid:r:1") != payloads.event_id("loc", "invoice_paid:r:2")
    assert payloads.event_id("loc", "invoice_paid:r:1") != payloads.event_id("other", "invoice_paid:r:1")


def _published() -> dict[str, Any]:
    """Each ```json block of docs/workflows.md that follows a heading naming a trigger or action key."""
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, Any] = {}
    for match in re.finditer(r"^#+ .*?`([a-z_]+)`.*?$\n+```json\n(.*?)\n```", text, re.MULTILINE | re.DOTALL):
        found[match.group(1)] = json.loads(match.group(2))
    return found


def test_docs_publish_exactly_the_samples_registered() -> None:
    published = _published()
    for key, spec in TRIGGERS.items():
        assert published.get(key) == spec.sample, key
    assert published.get(BALANCE.key) == BALANCE.sample_response
    assert published.get(f"{BALANCE.key}_request") == BALANCE.sample_request

"""Every documented HighLevel webhook example parses into the right CrmEvent."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qbconnect.crm.events import CrmEvent, EventParseError, parse_event, parse_timestamp, within_replay_window
from tests.support.reference import reference_dir

EXAMPLE_NAMES = [
    "ContactCreate",
    "ContactDelete",
    "ContactDndUpdate",
    "ContactTagUpdate",
    "ContactUpdate",
    "InvoiceCreate",
    "InvoiceDelete",
    "InvoicePaid",
    "InvoicePartiallyPaid",
    "InvoiceSent",
    "InvoiceUpdate",
    "InvoiceVoid",
    "OrderCreate",
    "OrderStatusUpdate",
    "ProductCreate",
    "ProductUpdate",
]
MD_NAMES = [*EXAMPLE_NAMES, "AppInstall", "AppUninstall", "PriceCreate", "PriceUpdate"]

# The type each documented invoice example must infer (bodies carry no ``type``). InvoiceCreate's
# example is a draft, indistinguishable from an update, so it infers InvoiceUpdate (the sync re-reads).
INFERRED_INVOICE_TYPES = {
    "InvoiceCreate": "InvoiceUpdate",
    "InvoiceUpdate": "InvoiceUpdate",
    "InvoiceSent": "InvoiceSent",
    "InvoicePaid": "InvoicePaid",
    "InvoicePartiallyPaid": "InvoicePartiallyPaid",
    "InvoiceVoid": "InvoiceVoid",
    "InvoiceDelete": "InvoiceDelete",
}


def _examples_dir() -> Path:
    return reference_dir("highlevel", "webhooks", "examples")


def _md_examples(name: str) -> list[bytes]:
    """The example JSON blocks of webhooks/md/<name>.md (not the json_schema block)."""
    text = (reference_dir("highlevel", "webhooks", "md") / f"{name}.md").read_text()
    blocks = []
    for suffix, block in re.findall(r"```json([^\n]*)\n(.*?)```", text, flags=re.DOTALL):
        if "json_schema" in suffix:
            continue
        blocks.append((suffix.strip() + "\n" + block).encode())
    return blocks


def test_example_folder_has_every_listed_file() -> None:
    names = sorted(p.stem for p in _examples_dir().glob("*.json"))
    assert names == sorted(EXAMPLE_NAMES)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_parses(name: str) -> None:
    raw = (_examples_dir() / f"{name}.json").read_bytes()
    event = parse_event(raw)
    data = json.loads(raw)
    assert event.body == data
    # the examples have no webhookId: the id is the hash of the raw bytes
    assert event.event_id == hashlib.sha256(raw).hexdigest()
    assert event.location_id
    assert event.entity_id
    assert event.occurred_at is not None and event.occurred_at.tzinfo is not None
    if name.startswith("Invoice"):
        assert event.type == INFERRED_INVOICE_TYPES[name]
        assert event.entity_kind == "invoice"
        assert event.entity_id == data["_id"]
        assert event.location_id == data["altId"]
    elif name.startswith("Order"):
        assert event.type == name
        assert event.entity_kind == "order"
        assert event.entity_id == data["_id"]
        assert event.location_id == data["locationId"]
    elif name.startswith("Contact"):
        assert event.type == name
        assert event.entity_kind == "contact"
        assert event.entity_id == data["id"]
        assert event.location_id == data["locationId"]
    else:  # products carry no type: the hint names them, else ProductUpdate
        assert event.entity_kind == "product"
        assert event.type == "ProductUpdate"
        assert parse_event(raw, type_hint=name).type == name
        assert event.entity_id == data["_id"]


@pytest.mark.parametrize("name", MD_NAMES)
def test_every_markdown_example_parses(name: str) -> None:
    blocks = _md_examples(name)
    assert blocks, f"no example in {name}.md"
    for raw in blocks:
        event = parse_event(raw)
        assert isinstance(event, CrmEvent)
        if name == "AppInstall":
            assert event.type == "INSTALL" and event.entity_kind == "app"
        elif name == "AppUninstall":
            assert event.type == "UNINSTALL" and event.entity_kind == "app"
        elif name.startswith("Price"):
            assert event.entity_kind == "product"
            assert event.entity_id == event.body["product"]
            assert parse_event(raw, type_hint=name).type == name
        elif name.startswith("Invoice"):
            assert event.type == INFERRED_INVOICE_TYPES[name]
        elif name.startswith("Product"):
            assert event.type == "ProductUpdate"
        else:
            assert event.type == name


def test_app_install_location_and_agency_levels() -> None:
    location_level, _, agency_level = _md_examples("AppInstall")
    event = parse_event(location_level)
    assert event.location_id == "otg8dTQqGLh3Q6iQI55w"
    assert event.entity_id == "otg8dTQqGLh3Q6iQI55w"
    agency = parse_event(agency_level)
    assert agency.location_id is None
    assert agency.entity_id == agency.body["companyId"]
    uninstall = parse_event(_md_examples("AppUninstall")[0])
    assert uninstall.type == "UNINSTALL"
    assert uninstall.location_id == "otg8dTQqGLh3Q6iQI55w"


def test_webhook_id_and_timestamp_are_used_when_present() -> None:
    data = json.loads((_examples_dir() / "InvoicePaid.json").read_bytes())
    data.update({"webhookId": "abc123xyz", "timestamp": "2025-01-28T14:35:00Z"})
    event = parse_event(json.dumps(data).encode())
    assert event.event_id == "abc123xyz"
    assert event.timestamp == datetime(2025, 1, 28, 14, 35, tzinfo=UTC)
    assert event.occurred_at == event.timestamp
    assert event.type == "InvoicePaid"


def test_declared_type_wins_over_inference_and_hint() -> None:
    data = json.loads((_examples_dir() / "InvoicePaid.json").read_bytes())
    data["type"] = "InvoiceUpdate"
    data["locationId"] = "loc-1"
    event = parse_event(json.dumps(data).encode(), type_hint="InvoiceSent")
    assert event.type == "InvoiceUpdate"
    assert event.location_id == "loc-1"


def test_type_hint_used_when_body_has_no_type() -> None:
    raw = (_examples_dir() / "InvoiceCreate.json").read_bytes()
    assert parse_event(raw, type_hint="InvoiceCreate").type == "InvoiceCreate"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("sent", "InvoiceSent"),
        ("paid", "InvoicePaid"),
        ("partially_paid", "InvoicePartiallyPaid"),
        ("void", "InvoiceVoid"),
        ("delete", "InvoiceDelete"),
        ("draft", "InvoiceUpdate"),
        ("payment_processing", "InvoiceUpdate"),
    ],
)
def test_invoice_type_inferred_from_status(status: str, expected: str) -> None:
    body = {"_id": "inv1", "altId": "loc", "altType": "location", "status": status, "invoiceItems": []}
    event = parse_event(json.dumps(body).encode())
    assert event.type == expected
    assert event.entity_kind == "invoice"


def test_alt_id_is_not_a_location_unless_alt_type_says_so() -> None:
    body = {"_id": "inv1", "altId": "comp", "altType": "company", "status": "sent", "invoiceItems": []}
    assert parse_event(json.dumps(body).encode()).location_id is None


def test_unknown_body_is_other() -> None:
    event = parse_event(b'{"type": "NoteCreate", "locationId": "L", "id": "n1"}')
    assert event.entity_kind == "other"
    assert event.entity_id == "n1"
    assert parse_event(b"{}").type == "Unknown"


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_non_object_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(EventParseError):
        parse_event(raw)


def test_timestamps_iso_and_epoch() -> None:
    expected = datetime(2025, 1, 28, 14, 35, tzinfo=UTC)
    assert parse_timestamp("2025-01-28T14:35:00Z") == expected
    assert parse_timestamp("2025-01-28T16:35:00+02:00") == expected
    assert parse_timestamp(int(expected.timestamp())) == expected
    assert parse_timestamp(int(expected.timestamp()) * 1000) == expected
    assert parse_timestamp(str(int(expected.timestamp()) * 1000)) == expected
    assert parse_timestamp("2025-01-28T14:35:00") == expected  # naive → UTC
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(None) is None
    assert parse_timestamp(True) is None


def test_replay_window() -> None:
    body = {"type": "ContactCreate", "locationId": "L", "id": "c", "timestamp": "2025-01-28T14:35:00Z"}
    event = parse_event(json.dumps(body).encode())
    sent = datetime(2025, 1, 28, 14, 35, tzinfo=UTC)
    assert within_replay_window(event, now=sent + timedelta(minutes=4))
    assert not within_replay_window(event, now=sent + timedelta(minutes=6))
    assert not within_replay_window(event, now=sent - timedelta(minutes=6))
    assert within_replay_window(event, now=sent + timedelta(minutes=9), max_age=timedelta(minutes=10))
    untimed = parse_event(b'{"type": "ContactCreate", "locationId": "L", "id": "c"}')
    assert not within_replay_window(untimed, now=sent)
    assert within_replay_window(untimed, now=sent, allow_missing=True)


def test_price_body_own_type_field_is_not_the_event_type() -> None:
    # PriceUpdate.md's example carries the price's own "type": "one_time"
    raw = _md_examples("PriceUpdate")[0]
    assert json.loads(raw)["type"] == "one_time"
    event = parse_event(raw)
    assert event.type == "PriceUpdate"
    assert event.entity_kind == "product"

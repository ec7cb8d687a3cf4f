from __future__ import annotations

from typing import Any

from qbconnect.domain.crm_models import CrmAddress, CrmContactDetails
from qbconnect.domain.customer import (
    QboCustomerDraft,
    clean_name,
    contact_fields_from_qbo_customer,
    customer_content_hash,
    display_name_candidates,
    normalize_email,
)
from tests.support.qbo_xsd import validate_qbo_json


def test_normalize_email() -> None:
    assert normalize_email("  Jane@X.com ") == "jane@x.com"
    assert normalize_email("a@b.com, c@d.com") == "a@b.com"
    assert normalize_email("not-an-email") is None
    assert normalize_email("") is None
    assert normalize_email(None) is None


def test_clean_name_strips_forbidden_characters() -> None:
    assert clean_name("Jane:\tDoe\nJr") == "Jane Doe Jr"
    assert len(clean_name("x" * 300)) == 100


def test_display_name_candidates_are_deterministic_and_distinct() -> None:
    candidates = display_name_candidates("Jane Doe", "Jane@X.com", "1a2b3c4d5e")
    assert candidates == [
        "Jane Doe",
        "Jane Doe (jane@x.com)",
        "Jane Doe (CRM 1a2b3c)",
        "Jane Doe (CRM 1a2b3c4d5e)",
    ]
    assert candidates == display_name_candidates("Jane Doe", "Jane@X.com", "1a2b3c4d5e")


def test_display_name_candidates_limits_and_fallbacks() -> None:
    long = display_name_candidates("N" * 150, "someone@example.com", "abc")
    assert all(len(c) <= 100 for c in long)
    assert long[1].endswith("(someone@example.com)")
    assert display_name_candidates("", "a@b.com", "id1")[0] == "a@b.com"
    assert display_name_candidates(None, None, "id1")[0] == "CRM id1"
    assert all(":" not in c and "\n" not in c for c in display_name_candidates("A:B\nC", None, "x:y"))


def test_customer_draft_from_invoice_contact_validates() -> None:
    contact = CrmContactDetails(
        id="c1",
        name="Jane Mary Doe",
        email=" Jane@Example.com ",
        phone="+1 555 0100",
        company_name="Doe: Inc",
        address=CrmAddress(line1="1 Main St", city="Austin", state="TX", postal_code="78701", country_code="USA"),
    )
    draft = QboCustomerDraft.from_contact(contact)
    body = draft.to_qbo()
    assert body["DisplayName"] == "Jane Mary Doe"
    assert body["GivenName"] == "Jane"
    assert body["FamilyName"] == "Mary Doe"
    assert body["CompanyName"] == "Doe Inc"
    assert body["PrimaryEmailAddr"] == {"Address": "jane@example.com"}
    assert body["BillAddr"]["Country"] == "US"
    assert validate_qbo_json("Customer", body) == []
    renamed = draft.with_display_name("Jane Mary Doe (jane@example.com)").to_qbo()
    assert renamed["DisplayName"] == "Jane Mary Doe (jane@example.com)"
    assert validate_qbo_json("Customer", QboCustomerDraft.from_contact(contact, "EUR").to_qbo()) == []


def test_customer_draft_uses_first_last_from_snapshot() -> None:
    contact = CrmContactDetails.from_snapshot({"firstName": "Max", "lastName": "Schmidt", "email": "m@x.de"})
    body = QboCustomerDraft.from_contact(contact).to_qbo()
    assert (body["GivenName"], body["FamilyName"], body["DisplayName"]) == ("Max", "Schmidt", "Max Schmidt")


QBO_CUSTOMER: dict[str, Any] = {
    "Id": "58",
    "SyncToken": "3",
    "DisplayName": "Amy's Bird Sanctuary",
    "GivenName": "Amy",
    "FamilyName": "Lauterbach",
    "CompanyName": "Amy's Bird Sanctuary",
    "PrimaryEmailAddr": {"Address": "Birds@Intuit.com"},
    "PrimaryPhone": {"FreeFormNumber": "(650) 555-3311"},
    "BillAddr": {
        "Line1": "4581 Finch St.",
        "Line2": "Suite 2",
        "City": "Bayshore",
        "CountrySubDivisionCode": "CA",
        "PostalCode": "94326",
        "Country": "USA",
    },
    "Active": True,
    "Notes": "ignored",
    "MetaData": {"LastUpdatedTime": "2024-01-01T00:00:00-08:00"},
}


def test_contact_fields_from_qbo_customer() -> None:
    assert contact_fields_from_qbo_customer(QBO_CUSTOMER) == {
        "firstName": "Amy",
        "lastName": "Lauterbach",
        "name": "Amy Lauterbach",
        "email": "birds@intuit.com",
        "phone": "(650) 555-3311",
        "companyName": "Amy's Bird Sanctuary",
        "address1": "4581 Finch St., Suite 2",
        "city": "Bayshore",
        "state": "CA",
        "postalCode": "94326",
        "country": "US",
        "source": "QuickBooks",
    }


def test_contact_fields_leave_out_blanks_and_never_tags() -> None:
    fields = contact_fields_from_qbo_customer({"DisplayName": "Acme", "Mobile": {"FreeFormNumber": "123"}})
    assert fields == {"name": "Acme", "phone": "123", "source": "QuickBooks"}
    assert "tags" not in contact_fields_from_qbo_customer(QBO_CUSTOMER)
    assert contact_fields_from_qbo_customer({"BillAddr": {"Country": "United Kingdom"}})["country"] == "GB"


def test_content_hash_tracks_synced_fields_only() -> None:
    base = customer_content_hash(QBO_CUSTOMER)
    assert base == customer_content_hash(dict(QBO_CUSTOMER, SyncToken="4", Notes="changed", MetaData={}))
    assert base != customer_content_hash(dict(QBO_CUSTOMER, PrimaryEmailAddr={"Address": "new@x.com"}))
    assert base != customer_content_hash(dict(QBO_CUSTOMER, Active=False))
    assert len(base) == 64

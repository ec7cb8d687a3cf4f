"""Customer ↔ contact rules: QBO customer drafts from CRM contacts, CRM contact fields from QBO customers."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from qbconnect.domain.countries import country_alpha2
from qbconnect.domain.crm_models import CrmAddress, CrmContactDetails

NAME_LIMIT = 100  # DisplayName/GivenName/FamilyName/CompanyName kept to 100 characters
CONTACT_SOURCE = "QuickBooks"
_FORBIDDEN = re.compile(r"[:\t\r\n]+")  # QBO names cannot contain ':', tab or newline
_SPACES = re.compile(r"\s+")


def clean_name(value: str | None, limit: int = NAME_LIMIT) -> str:
    """Text safe for a QBO name: no ':' tab or newline, single spaces, at most ``limit`` characters."""
    if not value:
        return ""
    text = _SPACES.sub(" ", _FORBIDDEN.sub(" ", value)).strip()
    return text[:limit].rstrip()


def normalize_email(value: str | None) -> str | None:
    """Lower-cased, trimmed address; the first of a comma/semicolon list; None when not an address."""
    if not value:
        return None
    first = re.split(r"[,;\s]+", value.strip())[0].strip().lower()
    if "@" not in first or first.startswith("@") or first.endswith("@"):
        return None
    return first


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """``"Jane Mary Doe"`` → ``("Jane", "Mary Doe")``; a single word is a given name."""
    text = clean_name(name)
    if not text:
        return None, None
    first, _, rest = text.partition(" ")
    return first, (rest.strip() or None)


def display_name_candidates(name: str | None, email: str | None, crm_id: str | None) -> list[str]:
    """DisplayNames to try in order when QBO answers 6240 (name already used), all deterministic.

    ``["Jane Doe", "Jane Doe (jane@x.com)", "Jane Doe (CRM 1a2b3c)", "Jane Doe (CRM 1a2b3c4d5e…)"]``;
    each at most 100 characters (the base is shortened, never the suffix), without duplicates.
    """
    address = normalize_email(email)
    ident = clean_name(crm_id, 60) if crm_id else ""
    base = clean_name(name) or (address or "") or (f"CRM {ident}" if ident else "")
    if not base:
        raise ValueError("a customer needs a name, an email or a CRM id")
    suffixes = [""]
    if address and address != base:
        suffixes.append(f" ({clean_name(address, 80)})")
    if ident:
        suffixes.append(f" (CRM {ident[:6]})")
        suffixes.append(f" (CRM {ident})")
    result: list[str] = []
    for suffix in suffixes:
        room = NAME_LIMIT - len(suffix)
        candidate = f"{base[:room].rstrip()}{suffix}"
        if candidate not in result:
            result.append(candidate)
    return result


@dataclass(frozen=True)
class QboCustomerDraft:
    """What we send to create a QBO customer for a CRM contact."""

    display_name: str
    given_name: str | None = None
    family_name: str | None = None
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    bill_address: CrmAddress | None = None
    currency: str | None = None  # set only for multicurrency companies

    @classmethod
    def from_contact(cls, contact: CrmContactDetails, currency: str | None = None) -> QboCustomerDraft:
        given, family = (
            (clean_name(contact.first_name) or None, clean_name(contact.last_name) or None)
            if (contact.first_name or contact.last_name)
            else split_name(contact.name)
        )
        email = normalize_email(contact.email)
        display = display_name_candidates(
            contact.name or " ".join(p for p in (given, family) if p) or contact.company_name,
            email,
            contact.id,
        )[0]
        return cls(
            display_name=display,
            given_name=given,
            family_name=family,
            company_name=clean_name(contact.company_name) or None,
            email=email,
            phone=(contact.phone or "").strip()[:30] or None,
            bill_address=contact.address,
            currency=currency,
        )

    def with_display_name(self, display_name: str) -> QboCustomerDraft:
        return QboCustomerDraft(
            display_name=display_name,
            given_name=self.given_name,
            family_name=self.family_name,
            company_name=self.company_name,
            email=self.email,
            phone=self.phone,
            bill_address=self.bill_address,
            currency=self.currency,
        )

    def to_qbo(self) -> dict[str, Any]:
        body: dict[str, Any] = {"DisplayName": self.display_name}
        if self.given_name:
            body["GivenName"] = self.given_name
        if self.family_name:
            body["FamilyName"] = self.family_name
        if self.company_name:
            body["CompanyName"] = self.company_name
        if self.email:
            body["PrimaryEmailAddr"] = {"Address": self.email}
        if self.phone:
            body["PrimaryPhone"] = {"FreeFormNumber": self.phone}
        address = _bill_addr(self.bill_address)
        if address:
            body["BillAddr"] = address
        if self.currency:
            body["CurrencyRef"] = {"value": self.currency}
        return body


def _bill_addr(address: CrmAddress | None) -> dict[str, str]:
    if address is None:
        return {}
    fields = {
        "Line1": address.line1,
        "Line2": address.line2,
        "City": address.city,
        "CountrySubDivisionCode": address.state,
        "PostalCode": address.postal_code,
        "Country": country_alpha2(address.country_code) or address.country_code,
    }
    return {key: value.strip() for key, value in fields.items() if value and value.strip()}


def _text(node: Any, key: str) -> str | None:
    if not isinstance(node, dict):
        return None
    value = node.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def contact_fields_from_qbo_customer(customer: dict[str, Any]) -> dict[str, str]:
    """The CRM contact upsert body for a QBO customer (without ``locationId``; never ``tags``).

    Empty QBO fields are left out so they never blank what the CRM already holds.
    """
    first = _text(customer, "GivenName")
    last = _text(customer, "FamilyName")
    name = " ".join(p for p in (first, last) if p) or _text(customer, "DisplayName")
    phone = (
        _text(customer.get("PrimaryPhone"), "FreeFormNumber")
        or _text(customer.get("Mobile"), "FreeFormNumber")
        or _text(customer.get("AlternatePhone"), "FreeFormNumber")
    )
    address = customer.get("BillAddr") or customer.get("ShipAddr") or {}
    lines = [line for line in (_text(address, "Line1"), _text(address, "Line2")) if line]
    fields: dict[str, str | None] = {
        "firstName": first,
        "lastName": last,
        "name": name,
        "email": normalize_email(_text(customer.get("PrimaryEmailAddr"), "Address")),
        "phone": phone,
        "companyName": _text(customer, "CompanyName"),
        "address1": ", ".join(lines) or None,
        "city": _text(address, "City"),
        "state": _text(address, "CountrySubDivisionCode"),
        "postalCode": _text(address, "PostalCode"),
        "country": country_alpha2(_text(address, "Country")),
        "source": CONTACT_SOURCE,
    }
    return {key: value for key, value in fields.items() if value}


def customer_content_hash(customer: dict[str, Any]) -> str:
    """SHA-256 over the fields we copy to the CRM (and Active): unchanged customers are not rewritten."""
    fields: dict[str, Any] = dict(contact_fields_from_qbo_customer(customer))
    fields["active"] = bool(customer.get("Active", True))
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

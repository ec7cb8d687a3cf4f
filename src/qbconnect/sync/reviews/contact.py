"""The CRM contact a review request goes to, and whether do-not-disturb forbids the channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbconnect.crm.client import CrmClient
from qbconnect.domain.contact_plan import customer_label
from qbconnect.domain.customer import contact_fields_from_qbo_customer
from qbconnect.errors import PermanentError
from qbconnect.sync.links.customers import linked_contact_id

DND_ON = frozenset({"active", "permanent"})

__all__ = ["ReviewContact", "customer_label", "dnd_reason", "linked_contact_id", "resolve_contact"]


@dataclass(frozen=True)
class ReviewContact:
    contact: dict[str, Any]
    found_by: str  # link | email | phone | created

    @property
    def id(self) -> str:
        return str(self.contact["id"])

    @property
    def first_name(self) -> str:
        return str(self.contact.get("firstName") or "").strip()

    @property
    def label(self) -> str:
        name = str(self.contact.get("contactName") or self.contact.get("name") or "").strip()
        if not name:
            name = " ".join(str(self.contact.get(key) or "").strip() for key in ("firstName", "lastName")).strip()
        return name or str(self.contact.get("email") or self.id)


def resolve_contact(
    crm: CrmClient, customer_source: Callable[[], dict[str, Any]], linked_id: str | None
) -> ReviewContact:
    """The customer's contact: the linked one (``linked_id``, from :func:`linked_contact_id`), else the
    location's contact with the customer's email (then phone), else a new one (upsert). The QuickBooks
    customer is asked of ``customer_source`` only when no linked contact answers (it may cost a read)."""
    contact_id = linked_id
    if contact_id:
        contact = crm.get_contact(contact_id)
        if contact:
            return ReviewContact(contact, "link")
    customer = customer_source()
    fields = contact_fields_from_qbo_customer(customer)
    email, phone = fields.get("email"), fields.get("phone")
    if not email and not phone:
        raise PermanentError(
            f"The QuickBooks customer {customer_label(customer)} has no email address or phone number, so "
            "there is no CRM contact to send the review request to. Add one in QuickBooks and press Retry."
        )
    if email:
        found = crm.find_duplicate_contact(email=email)
        if found:
            return ReviewContact(found, "email")
    else:
        found = crm.find_duplicate_contact(phone=phone)
        if found:
            return ReviewContact(found, "phone")
    contact, _ = crm.upsert_contact(fields)
    if not contact.get("id"):
        raise PermanentError(f"The CRM did not return the contact it created for {customer_label(customer)}.")
    return ReviewContact(contact, "created")


def dnd_reason(contact: dict[str, Any], channel: str) -> str | None:
    """Why do-not-disturb forbids ``channel`` (``Email``/``SMS``) for this contact, or None when it does not.

    HighLevel keeps a global ``dnd`` flag and per-channel ``dndSettings[channel].status`` (``active``,
    ``inactive``, ``permanent``).
    """
    if contact.get("dnd") is True:
        return "do-not-disturb is on for all channels"
    settings = contact.get("dndSettings")
    setting = settings.get(channel) if isinstance(settings, dict) else None
    if isinstance(setting, dict) and str(setting.get("status") or "").lower() in DND_ON:
        status = str(setting["status"]).lower()
        return f"do-not-disturb is {'permanently ' if status == 'permanent' else ''}on for {channel}"
    return None

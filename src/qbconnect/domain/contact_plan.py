"""What to do for one QuickBooks customer on the CRM side: write its contact, leave it, or skip it and why.

Pure: the customer as QuickBooks answered and what the link repository knows of it (:class:`KnownLink`,
which ``sync.links.customers.CustomerLink`` satisfies) decide the plan; ``sync/contacts`` carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from qbconnect.domain.customer import contact_fields_from_qbo_customer, customer_content_hash


class KnownLink(Protocol):
    """What a plan needs of the customer's link: its contact, customer, email and content hash."""

    @property
    def crm_id(self) -> str: ...

    @property
    def qbo_id(self) -> str | None: ...

    @property
    def email(self) -> str | None: ...

    def hash_for(self, qbo_id: str, realm_id: str | None) -> str | None: ...


class Action(StrEnum):
    WRITE = "write"
    UNCHANGED = "unchanged"
    INACTIVE = "inactive"
    SKIP_NO_EMAIL = "skip_no_email"  # setting contacts_without_email = skip
    SKIP_NO_CONTACT_INFO = "skip_no_contact_info"  # neither email nor phone


@dataclass(frozen=True)
class ContactPlan:
    qbo_id: str
    label: str  # how people know the customer: its DisplayName
    action: Action
    fields: dict[str, str]
    content_hash: str
    email: str | None
    phone: str | None
    linked_contact_id: str | None = None
    update_by_id: bool = False
    currency: str | None = None  # the customer's CurrencyRef, kept in its link

    @property
    def match_key(self) -> str:
        """What HighLevel matches this customer by (two writes with one key must not run at once)."""
        return f"email:{self.email}" if self.email else f"phone:{self.phone}"


def customer_label(customer: dict[str, Any]) -> str:
    name = customer.get("DisplayName") or customer.get("FullyQualifiedName") or ""
    return str(name).strip() or f"customer {customer.get('Id')}"


def customer_currency(customer: dict[str, Any]) -> str | None:
    ref = customer.get("CurrencyRef")
    value = ref.get("value") if isinstance(ref, dict) else None
    return str(value).upper() if value else None


def plan_contact(
    customer: dict[str, Any],
    link: KnownLink | None,
    *,
    without_email: str,
    realm_id: str | None = None,
) -> ContactPlan:
    """What to do for this customer, given its link (None when the customer was never synced)."""
    qbo_id = str(customer.get("Id") or "")
    if not qbo_id:
        raise ValueError("a QuickBooks customer without an Id")
    fields = contact_fields_from_qbo_customer(customer)
    content_hash = customer_content_hash(customer)
    email, phone = fields.get("email"), fields.get("phone")
    known = link.hash_for(qbo_id, realm_id) if link is not None else None

    def plan(action: Action, **extra: Any) -> ContactPlan:
        return ContactPlan(
            qbo_id=qbo_id,
            label=customer_label(customer),
            action=action,
            fields=fields,
            content_hash=content_hash,
            email=email,
            phone=phone,
            currency=customer_currency(customer),
            **extra,
        )

    if known is not None and known == content_hash:
        return plan(Action.UNCHANGED)
    if not bool(customer.get("Active", True)):
        return plan(Action.INACTIVE)
    if not email:
        if without_email != "phone":
            return plan(Action.SKIP_NO_EMAIL)
        if not phone:
            return plan(Action.SKIP_NO_CONTACT_INFO)
    linked_id = link.crm_id if link is not None and link.qbo_id == qbo_id else None
    email_changed = bool(linked_id and link is not None and link.email and email and link.email != email)
    return plan(Action.WRITE, linked_contact_id=linked_id, update_by_id=email_changed)

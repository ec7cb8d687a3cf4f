"""One QuickBooks customer → one CRM contact: decide what to do (pure), then do it in few CRM calls.

The decision (:func:`plan_contact`) needs the customer and its link only. The write
(:func:`write_contact`) spends as few HighLevel calls as the API allows:

- unchanged customer (same content hash as last written): no call at all;
- otherwise one ``POST /contacts/upsert`` (matches by email, else phone, and says whether it created);
- plus one ``POST /contacts/{id}/tags`` only when the contact does not carry the tag yet — tags are never
  sent in the upsert, which would overwrite the contact's other tags;
- when the customer's email changed in QuickBooks, the linked contact is updated by id
  (``PUT /contacts/{id}``) instead, so the change does not create a second contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qbconnect.crm.client import CrmClient
from qbconnect.domain.customer import contact_fields_from_qbo_customer, customer_content_hash
from qbconnect.errors import PermanentError, TransientError
from qbconnect.ratelimit import Budget, RateLimiter
from qbconnect.sync.links.customers import CustomerLink


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


@dataclass(frozen=True)
class ContactWrite:
    contact_id: str
    created: bool
    tag_added: bool
    calls: int


def customer_label(customer: dict[str, Any]) -> str:
    name = customer.get("DisplayName") or customer.get("FullyQualifiedName") or ""
    return str(name).strip() or f"customer {customer.get('Id')}"


def customer_currency(customer: dict[str, Any]) -> str | None:
    ref = customer.get("CurrencyRef")
    value = ref.get("value") if isinstance(ref, dict) else None
    return str(value).upper() if value else None


def plan_contact(
    customer: dict[str, Any],
    link: CustomerLink | None,
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


def has_tag(contact: dict[str, Any], tag: str) -> bool:
    tags = contact.get("tags")
    if not isinstance(tags, list):
        return False
    wanted = tag.strip().lower()
    return any(isinstance(t, str) and t.strip().lower() == wanted for t in tags)


def write_contact(
    crm: CrmClient,
    plan: ContactPlan,
    *,
    tag: str,
    limiter: RateLimiter | None = None,
    budgets: Sequence[Budget] = (),
) -> ContactWrite:
    """Create or update the contact and make sure it carries ``tag``. Each of ``budgets`` is drawn from
    ``limiter`` before each call, in order and one at a time (each a single atomic draw), on top of the
    CRM client's own per-location budget."""
    if plan.action is not Action.WRITE:
        raise ValueError(f"nothing to write for a {plan.action} plan")

    def pace() -> None:
        if limiter is None:
            return
        try:
            for budget in budgets:
                limiter.acquire(budget, crm.location_id)
        except TimeoutError as exc:
            raise TransientError(
                "The contact import's HighLevel request budget stayed full; it will continue later.",
                code="rate_budget",
                retry_after=10.0,
            ) from exc

    calls = 0
    contact: dict[str, Any] | None = None
    created = False
    if plan.update_by_id and plan.linked_contact_id:
        pace()
        calls += 1
        try:
            contact = crm.update_contact(plan.linked_contact_id, plan.fields)
        except PermanentError:
            contact = None  # gone from the CRM, or the new email belongs to another contact: upsert instead
    if not contact or not contact.get("id"):
        pace()
        calls += 1
        contact, created = crm.upsert_contact(plan.fields)
    contact_id = contact.get("id")
    if not isinstance(contact_id, str) or not contact_id:
        raise PermanentError(f"HighLevel answered the contact upsert for {plan.label} without a contact id")
    tag_added = False
    if not has_tag(contact, tag):
        pace()
        calls += 1
        crm.add_tags(contact_id, [tag])
        tag_added = True
    return ContactWrite(contact_id=contact_id, created=created, tag_added=tag_added, calls=calls)

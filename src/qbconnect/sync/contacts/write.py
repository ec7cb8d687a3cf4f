"""One QuickBooks customer → one CRM contact: decide what to do (pure), then do it in few CRM calls.

The decision (:func:`plan_contact`) needs the customer and its link only.

The import (:func:`import_contact`) knows the location's contacts already (:class:`ContactIndex`, built from
paged ``POST /contacts/search``), so it spends at most one call on most customers:

- a contact we do not know: one ``POST /contacts/`` carrying the tag in its body. When HighLevel answers
  that the contact exists (created meanwhile: its duplicate answer, 400 with ``meta.contactId``), that
  contact is read and brought up to date instead — never a second contact. When the create's answer is
  lost (a timeout, a dropped connection, a 5xx), HighLevel is asked for the contact by email (or phone)
  before the create is sent again;
- a known contact: an upsert only when a field we own differs from what HighLevel holds, and a
  ``POST /contacts/{id}/tags`` only when the tag is missing; nothing at all otherwise.

A live customer change (:func:`write_contact`) spends:

- unchanged customer (same content hash as last written): no call at all;
- otherwise one ``POST /contacts/upsert`` (matches by email, else phone, and says whether it created);
- plus one ``POST /contacts/{id}/tags`` only when the contact does not carry the tag yet — tags are never
  sent in the upsert, which would overwrite the contact's other tags;
- when the customer's email changed in QuickBooks, the linked contact is updated by id
  (``PUT /contacts/{id}``) instead, so the change does not create a second contact.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from qbconnect.crm.client import CrmClient, DuplicateContactError
from qbconnect.domain.contact_plan import Action, ContactPlan
from qbconnect.domain.customer import normalize_email
from qbconnect.errors import PermanentError, TransientError
from qbconnect.ratelimit import Budget, RateLimiter


@dataclass(frozen=True)
class ContactWrite:
    contact_id: str
    created: bool
    tag_added: bool
    calls: int


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


# ---- the import: one call per contact ------------------------------------------------------------------

# The contact fields the product writes and compares (``source`` is written but never a reason to write).
OWNED_FIELDS = (
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "companyName",
    "address1",
    "city",
    "state",
    "postalCode",
    "country",
)
LOST_ANSWER_CODES = ("timeout", "network")


def _norm(name: str, value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if name == "email":
        return normalize_email(text) or text.lower()
    if name == "phone":
        digits = re.sub(r"\D", "", text)
        return "1" + digits if len(digits) == 10 else digits  # HighLevel stores +1XXXXXXXXXX for US numbers
    return text


def _digest(values: Iterable[str]) -> bytes:
    """Four bytes per owned field: enough to tell a change, small enough for a location of 100,000 contacts."""
    return b"".join(hashlib.blake2b(v.encode("utf-8"), digest_size=4).digest() for v in values)


@dataclass(frozen=True, slots=True)
class KnownContact:
    """What the import remembers of one contact HighLevel holds: its id, whether it carries the tag, and a
    digest of the fields we own (:data:`OWNED_FIELDS`)."""

    contact_id: str
    tagged: bool
    digest: bytes

    @classmethod
    def of(cls, contact: dict[str, Any], tag: str) -> KnownContact | None:
        contact_id = contact.get("id")
        if not isinstance(contact_id, str) or not contact_id:
            return None
        values = dict(contact)
        if not values.get("name"):
            values["name"] = " ".join(str(values.get(k) or "") for k in ("firstName", "lastName")).strip()
        return cls(contact_id, has_tag(contact, tag), _digest(_norm(f, values.get(f)) for f in OWNED_FIELDS))

    def differs(self, fields: dict[str, str]) -> bool:
        """Whether writing ``fields`` would change what HighLevel holds (absent fields change nothing; the
        name is derived from first and last name when those are sent)."""
        derived_name = "firstName" in fields or "lastName" in fields
        for position, name in enumerate(OWNED_FIELDS):
            if name not in fields or (name == "name" and derived_name):
                continue
            mine = _digest([_norm(name, fields[name])])
            if self.digest[position * 4 : position * 4 + 4] != mine:
                return True
        return False


class ContactIndex:
    """The location's contacts by email (and by phone when customers without email are matched by phone),
    read once per import run through paged search: no lookup per customer. Writers keep it current."""

    def __init__(self, tag: str, *, by_phone: bool) -> None:
        self.tag = tag
        self.by_phone = by_phone
        self.emails: dict[str, KnownContact] = {}
        self.phones: dict[str, KnownContact] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def add(self, contact: dict[str, Any]) -> None:
        known = KnownContact.of(contact, self.tag)
        if known is None:
            return
        email = normalize_email(contact.get("email"))
        if email:
            self.emails.setdefault(email, known)  # oldest first: HighLevel's own match
        if self.by_phone and contact.get("phone"):
            self.phones.setdefault(_norm("phone", contact["phone"]), known)

    def load(self, crm: CrmClient, *, on_page: Callable[[], None] | None = None) -> None:
        """Read every contact of the location, one search call per page of 500."""
        for page in crm.iter_contact_pages():
            self.calls += 1
            for contact in page:
                self.add(contact)
            if on_page is not None:
                on_page()

    def find(self, plan: ContactPlan) -> KnownContact | None:
        if plan.email:
            return self.emails.get(plan.email)
        if self.by_phone and plan.phone:
            return self.phones.get(_norm("phone", plan.phone))
        return None

    def remember(self, plan: ContactPlan, known: KnownContact) -> None:
        with self._lock:
            if plan.email:
                self.emails[plan.email] = known
            elif plan.phone and self.by_phone:
                self.phones[_norm("phone", plan.phone)] = known


def import_contact(crm: CrmClient, plan: ContactPlan, index: ContactIndex) -> ContactWrite:
    """Bring one customer's contact up to date with the fewest calls the index allows (see the module doc)."""
    if plan.action is not Action.WRITE:
        raise ValueError(f"nothing to write for a {plan.action} plan")
    tag = index.tag
    if plan.update_by_id and plan.linked_contact_id:  # the email changed in QuickBooks: by id, as live syncs do
        return write_contact(crm, plan, tag=tag)
    known = index.find(plan)
    calls = 0
    if known is None:
        created, known, calls = _create(crm, plan, tag)
        if created is not None:
            index.remember(plan, created)
            return ContactWrite(contact_id=created.contact_id, created=True, tag_added=True, calls=calls)
    contact_id, tagged, is_new = known.contact_id, known.tagged, False
    if known.differs(plan.fields):
        calls += 1
        contact, is_new = crm.upsert_contact(plan.fields)
        contact_id = str(contact.get("id") or contact_id)
        tagged = tagged or has_tag(contact, tag)
    if not tagged:
        calls += 1
        crm.add_tags(contact_id, [tag])
    written = _digest(_norm(f, _value(plan.fields, f)) for f in OWNED_FIELDS)
    index.remember(plan, KnownContact(contact_id, True, written))
    return ContactWrite(contact_id=contact_id, created=is_new, tag_added=not tagged, calls=calls)


def _value(fields: dict[str, str], name: str) -> str:
    if name == "name" and ("firstName" in fields or "lastName" in fields):
        return " ".join(fields.get(k, "") for k in ("firstName", "lastName")).strip()
    return fields.get(name, "")


def _known(plan: ContactPlan, contact: dict[str, Any] | None, tag: str) -> KnownContact:
    known = KnownContact.of(contact, tag) if contact is not None else None
    if known is None:
        raise PermanentError(f"HighLevel answered for {plan.label} without a contact id")
    return known


def _create(crm: CrmClient, plan: ContactPlan, tag: str) -> tuple[KnownContact | None, KnownContact, int]:
    """Create the tagged contact. Returns (the new contact, it, calls), or (None, the contact HighLevel
    already holds, calls) when it exists: created meanwhile, or by our own create whose answer was lost."""
    calls = 0
    for attempt in range(2):
        calls += 1
        try:
            created = _known(plan, crm.create_contact({**plan.fields, "tags": [tag]}), tag)
            return created, created, calls
        except DuplicateContactError as duplicate:
            calls += 1
            return None, _known(plan, crm.get_contact(duplicate.contact_id), tag), calls
        except TransientError as lost:
            maybe_applied = lost.code in LOST_ANSWER_CODES or str(lost.code or "").startswith("http_5")
            if attempt or not maybe_applied:
                raise
            calls += 1  # the create may have been applied: ask HighLevel before sending it again
            found = crm.find_duplicate_contact(email=plan.email, phone=None if plan.email else plan.phone)
            if found is not None:
                return None, _known(plan, found, tag), calls
    raise AssertionError("unreachable")  # pragma: no cover

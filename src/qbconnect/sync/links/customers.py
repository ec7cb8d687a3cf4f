"""Customer links: a CRM contact and the QuickBooks customer it belongs to.

One row per CRM contact (kind ``customer``, unique per contact): ``crm_id`` is the contact,
``qbo_id`` its QuickBooks customer, ``email`` the address it was matched by and ``content_hash`` the
:func:`~qbconnect.domain.customer.customer_content_hash` of the customer as last written to the CRM.
QuickBooks allows several customers with one email; they all land on the same contact, so the first
keeps ``qbo_id`` and the others are kept as *aliases* in ``data["aliases"]`` (QBO id → content hash).
When several rows name the same customer (a merge re-pointed one, or the contact changed), the most
recently written row wins.

One customer identity: whichever path meets a customer first (the import, a customer webhook, the change
sweep, an invoice, a sales receipt) writes the row, and :func:`known_customer` reads it for all of them,
by contact id first, then by email. Emails are stored normalised (trimmed, lower-cased; sub-addresses
such as ``ana+shop@…`` kept exactly), so the index matches what the CRM and QuickBooks hold in any case.

The invoice and sales-receipt lookup (``sync/lookup.py``) keys its rows by contact id, or
``email:<address>`` for a contact without an id, with ``|<CURRENCY>`` appended in multicurrency
companies, and stores the customer create's ``requestid`` in ``request_id`` before the call.

``data`` keys: ``realm_id`` (the QuickBooks company), ``currency`` (the customer's, when known: fixed in
QuickBooks), ``source`` (``quickbooks`` when the import wrote the row), ``phone``, ``aliases`` (QBO id →
content hash), ``qbo_active`` (false once made inactive), ``qbo_deleted``, ``merged_from``.

All customer-link queries live here. Nothing here talks to a platform.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.db.link_model import Link
from qbconnect.sync.links.rows import chunks
from qbconnect.sync.links.rows import find as find_row

LINK_KIND = "customer"


@dataclass(frozen=True)
class CustomerLink:
    """A customer link as plain data, so no database transaction stays open while the platforms are called."""

    crm_id: str
    qbo_id: str | None
    email: str | None
    content_hash: str | None
    realm_id: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    deleted: bool = False  # the customer is gone from QuickBooks (the contact stays)
    request_id: str | None = None  # the customer create's requestid, stored before the call
    currency: str | None = None  # the customer's currency, when recorded

    def currency_of(self) -> str | None:
        """The customer's currency: recorded, or named by a ``…|<CURRENCY>`` key."""
        if self.currency:
            return self.currency
        _, bar, suffix = self.crm_id.rpartition("|")
        return suffix if bar and suffix.isalpha() and len(suffix) == 3 else None

    def serves(self, realm_id: str, currency: str | None) -> bool:
        """Can an invoice or receipt of this company (in ``currency``, multicurrency only) use this link?"""
        if not self.qbo_id or self.deleted or not self.belongs_to(realm_id):
            return False
        return not currency or (self.currency_of() or "").upper() == currency.upper()

    def belongs_to(self, realm_id: str) -> bool:
        """A link without a realm (written by code that did not record it) is taken as this company's."""
        return self.realm_id is None or self.realm_id == realm_id

    def hash_for(self, qbo_id: str, realm_id: str | None) -> str | None:
        """The stored content hash of this QuickBooks customer, if this row knows it."""
        if self.realm_id is not None and realm_id is not None and self.realm_id != realm_id:
            return None
        if self.qbo_id == qbo_id:
            return self.content_hash
        return self.aliases.get(qbo_id)

    @classmethod
    def of(cls, row: Link) -> CustomerLink:
        data = row.data or {}
        aliases = data.get("aliases")
        realm = data.get("realm_id")
        return cls(
            crm_id=row.crm_id,
            qbo_id=row.qbo_id,
            email=row.email,
            content_hash=row.content_hash,
            realm_id=realm if isinstance(realm, str) and realm else None,
            aliases={str(k): str(v) for k, v in aliases.items()} if isinstance(aliases, dict) else {},
            deleted=bool(data.get("qbo_deleted")),
            request_id=row.request_id,
            currency=str(data["currency"]).upper() if isinstance(data.get("currency"), str) else None,
        )


class LinkIndex:
    """The links of one batch of customers, by QuickBooks id, by email and by contact."""

    def __init__(self) -> None:
        self.by_qbo: dict[str, CustomerLink] = {}
        self.by_email: dict[str, CustomerLink] = {}
        self.by_crm: dict[str, CustomerLink] = {}

    def add(self, link: CustomerLink) -> None:
        """Later additions win (rows are added oldest write first)."""
        self.by_crm[link.crm_id] = link
        if link.qbo_id:
            self.by_qbo[link.qbo_id] = link
        for qbo_id in link.aliases:
            self.by_qbo.setdefault(qbo_id, link)
        if link.email:
            self.by_email[link.email] = link

    def match(self, qbo_id: str, email: str | None) -> CustomerLink | None:
        """The contact this customer is linked to: by QuickBooks id first, then by email."""
        found = self.by_qbo.get(qbo_id)
        if found is None and email:
            found = self.by_email.get(email)
        return found


def load_index(session: Session, location_id: str, qbo_ids: Iterable[str], emails: Iterable[str]) -> LinkIndex:
    """The links for these customers (by id or email), oldest write first so the newest wins."""
    rows: dict[int, Link] = {}
    base = select(Link).where(Link.location_id == location_id, Link.kind == LINK_KIND)
    for chunk in chunks(sorted(set(qbo_ids))):
        for row in session.execute(base.where(Link.qbo_id.in_(chunk))).scalars():
            rows[row.id] = row
    for chunk in chunks(sorted({e for e in emails if e})):
        for row in session.execute(base.where(Link.email.in_(chunk))).scalars():
            rows[row.id] = row
    index = LinkIndex()
    for row in sorted(rows.values(), key=lambda r: (r.updated_at, r.id)):
        index.add(CustomerLink.of(row))
    return index


def _row_for_contact(session: Session, location_id: str, contact_id: str) -> Link | None:
    return find_row(session, location_id, LINK_KIND, contact_id)


def record_contact(
    session: Session,
    location_id: str,
    *,
    contact_id: str,
    qbo_id: str,
    email: str | None,
    content_hash: str,
    realm_id: str | None,
    phone: str | None = None,
    currency: str | None = None,
) -> None:
    """Store that ``contact_id`` now holds QuickBooks customer ``qbo_id`` as of ``content_hash``."""
    row = _row_for_contact(session, location_id, contact_id)
    if row is None:
        data: dict[str, Any] = {"realm_id": realm_id, "source": "quickbooks"}
        if phone:
            data["phone"] = phone
        if currency:
            data["currency"] = currency.upper()
        new = Link(
            location_id=location_id,
            kind=LINK_KIND,
            crm_id=contact_id,
            qbo_id=qbo_id,
            email=email,
            content_hash=content_hash,
            data=data,
        )
        try:
            with session.begin_nested():
                session.add(new)
                session.flush()
            return
        except IntegrityError:
            # Another job linked this contact a moment ago: update its row instead.
            row = _row_for_contact(session, location_id, contact_id)
            if row is None:
                raise
    data = dict(row.data or {})
    if row.qbo_id in (None, qbo_id) or data.get("realm_id") not in (None, realm_id):
        row.qbo_id = qbo_id
        row.content_hash = content_hash
        row.email = email or row.email
        data["realm_id"] = realm_id
        if phone:
            data["phone"] = phone
        if currency:
            data["currency"] = currency.upper()
        else:
            data.pop("currency", None)
        aliases = dict(data.get("aliases") or {})
        if aliases.pop(qbo_id, None) is not None:
            data["aliases"] = aliases
    else:
        data["aliases"] = {**dict(data.get("aliases") or {}), qbo_id: content_hash}
    row.data = data
    row.updated_at = utcnow()


def mark_inactive(session: Session, location_id: str, *, qbo_id: str, content_hash: str) -> int:
    """A customer made inactive in QuickBooks: the contact stays; its link remembers the state."""
    rows = session.execute(
        select(Link).where(Link.location_id == location_id, Link.kind == LINK_KIND, Link.qbo_id == qbo_id)
    ).scalars()
    count = 0
    for row in rows:
        row.content_hash = content_hash
        row.data = {**dict(row.data or {}), "qbo_active": False}
        row.updated_at = utcnow()
        count += 1
    return count


def mark_deleted(session: Session, location_id: str, *, qbo_id: str) -> int:
    """A customer gone from QuickBooks (deleted or merged away, survivor unknown): the contact stays."""
    rows = session.execute(
        select(Link).where(Link.location_id == location_id, Link.kind == LINK_KIND, Link.qbo_id == qbo_id)
    ).scalars()
    count = 0
    for row in rows:
        row.content_hash = None
        row.data = {**dict(row.data or {}), "qbo_deleted": True}
        row.updated_at = utcnow()
        count += 1
    return count


def repoint(session: Session, location_id: str, *, from_qbo_id: str, to_qbo_id: str) -> list[str]:
    """After a merge: links to the merged-away customer now name the surviving one. Returns contact ids."""
    rows = session.execute(
        select(Link).where(Link.location_id == location_id, Link.kind == LINK_KIND, Link.qbo_id == from_qbo_id)
    ).scalars()
    moved: list[str] = []
    for row in rows:
        data = dict(row.data or {})
        aliases = dict(data.get("aliases") or {})
        row.content_hash = aliases.pop(to_qbo_id, None)
        data["aliases"] = aliases
        data["merged_from"] = from_qbo_id
        row.data = data
        row.qbo_id = to_qbo_id
        row.updated_at = utcnow()
        moved.append(row.crm_id)
    return moved


def links_for_customer(session: Session, location_id: str, qbo_id: str) -> list[CustomerLink]:
    """Every link naming this QuickBooks customer, oldest write first."""
    return [
        CustomerLink.of(row)
        for row in session.execute(
            select(Link)
            .where(Link.location_id == location_id, Link.kind == LINK_KIND, Link.qbo_id == qbo_id)
            .order_by(Link.updated_at, Link.id)
        ).scalars()
    ]


def linked_contact_id(session: Session, location_id: str, qbo_customer_id: str) -> str | None:
    """The CRM contact linked to the QuickBooks customer, if any (the most recently written link wins).

    Customers kept only as another customer's alias (same email) are not found here.
    """
    return session.execute(
        select(Link.crm_id)
        .where(Link.location_id == location_id, Link.kind == LINK_KIND, Link.qbo_id == qbo_customer_id)
        .order_by(Link.updated_at.desc(), Link.id.desc())
        .limit(1)
    ).scalar_one_or_none()


# ---- the invoice and sales-receipt lookup (sync/lookup.py) ----------------------------------------


def find_customer(session: Session, location_id: str, key: str) -> CustomerLink | None:
    """The customer link keyed ``key`` (a contact id, or ``email:<address>``, maybe ``|<CURRENCY>``)."""
    row = _row_for_contact(session, location_id, key)
    return CustomerLink.of(row) if row is not None else None


def customers_with_email(session: Session, location_id: str, email: str) -> list[CustomerLink]:
    """Every customer link with this (normalised) email that names a QuickBooks customer."""
    return [
        CustomerLink.of(row)
        for row in session.execute(
            select(Link)
            .where(
                Link.location_id == location_id,
                Link.kind == LINK_KIND,
                Link.email == email,
                Link.qbo_id.is_not(None),
            )
            .order_by(Link.id)
        ).scalars()
    ]


def known_customer(
    session: Session,
    location_id: str,
    *,
    contact_id: str | None,
    email: str | None,
    realm_id: str,
    currency: str | None,
) -> CustomerLink | None:
    """The QuickBooks customer the product already knows for this contact: its link (by contact id, or
    ``<contact id>|<CURRENCY>``), else a link with the same normalised email — whichever path wrote it.
    ``currency`` is given for multicurrency companies only: then only a customer in that currency serves."""
    keys = [contact_id, f"{contact_id}|{currency.upper()}" if currency else None] if contact_id else []
    for key in keys:
        if key is None:
            continue
        link = find_customer(session, location_id, key)
        if link is not None and link.serves(realm_id, currency):
            return link
    if email:
        for link in customers_with_email(session, location_id, email):
            if link.serves(realm_id, currency):
                return link
    return None


def save_customer(
    session: Session,
    location_id: str,
    key: str,
    qbo_id: str,
    *,
    realm_id: str,
    email: str | None,
    currency: str | None = None,
) -> CustomerLink:
    """Store that ``key`` is QuickBooks customer ``qbo_id`` of company ``realm_id``."""
    row = _row_for_contact(session, location_id, key)
    if row is None:
        row = Link(location_id=location_id, kind=LINK_KIND, crm_id=key, data={})
        session.add(row)
    row.qbo_id = qbo_id
    if email is not None:
        row.email = email
    extra = {"currency": currency.upper()} if currency else {}
    row.data = {**(row.data or {}), **extra, "realm_id": realm_id}
    session.flush()
    return CustomerLink.of(row)


def link_contact(
    session: Session, location_id: str, contact_id: str, qbo_id: str, *, realm_id: str, email: str | None
) -> bool:
    """Link ``contact_id`` to QuickBooks customer ``qbo_id`` when the contact has no link yet (a path that
    found the contact by email or created it). An existing link is left alone. True when written."""
    if _row_for_contact(session, location_id, contact_id) is not None:
        return False
    save_customer(session, location_id, contact_id, qbo_id, realm_id=realm_id, email=email)
    return True


def claim_customer(
    session: Session, location_id: str, key: str, *, realm_id: str, email: str | None, request_id: str
) -> CustomerLink:
    """Claim the creation of the customer for ``key``: the row holds ``request_id`` before the call.

    Raises ``IntegrityError`` (the savepoint rolled back) when another job inserted the row meanwhile.
    """
    row = _row_for_contact(session, location_id, key)
    with session.begin_nested():
        if row is None:
            row = Link(location_id=location_id, kind=LINK_KIND, crm_id=key, data={})
            session.add(row)
        row.qbo_id = None
        row.email = email
        row.request_id = request_id
        row.data = {"realm_id": realm_id}
        session.flush()
    return CustomerLink.of(row)


def customer_ids_for_contact(session: Session, location_id: str, contact_id: str) -> list[str]:
    """Every QuickBooks customer the contact stands for: the customer of its link (and of its per-currency
    links, ``<contact id>|<CURRENCY>``) and the customers kept as their aliases (the workflow balance)."""
    rows = session.execute(
        select(Link).where(
            Link.location_id == location_id,
            Link.kind == LINK_KIND,
            (Link.crm_id == contact_id) | Link.crm_id.startswith(f"{contact_id}|", autoescape=True),
        )
    ).scalars()
    found: list[str] = []
    for row in rows:
        link = CustomerLink.of(row)
        for qbo_id in (link.qbo_id, *link.aliases):
            if qbo_id and qbo_id not in found:
                found.append(qbo_id)
    return found

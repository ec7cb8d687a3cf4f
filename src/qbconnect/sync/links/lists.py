"""List links: the QuickBooks list objects a CRM transaction needs, cached per QuickBooks company.

| kind | ``crm_id`` | ``qbo_id`` | ``data`` |
|---|---|---|---|
| ``item`` | ``<realm>|product:<id>`` or ``<realm>|name:<lower name>`` | Item Id | ``realm_id``, ``name`` |
| ``payment_method`` | ``<realm>|<lower name>`` | PaymentMethod Id | ``realm_id`` |
| ``account`` | ``<realm>|undeposited`` / ``<realm>|income`` | Account Id | ``realm_id`` |

A row of another company (after a reconnect to a different company) is ignored and overwritten; a row
without a realm (written by older code) is taken as the current company's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from qbconnect.sync.links import rows

ListKind = Literal["item", "payment_method", "account"]


@dataclass(frozen=True)
class ListLink:
    kind: str
    key: str
    qbo_id: str | None
    realm_id: str | None
    name: str | None = None

    def usable_in(self, realm_id: str) -> bool:
        return self.qbo_id is not None and self.realm_id in (None, realm_id)


def find_list(session: Session, location_id: str, kind: ListKind, key: str) -> ListLink | None:
    row = rows.find(session, location_id, kind, key)
    if row is None:
        return None
    data = row.data or {}
    realm = data.get("realm_id")
    name = data.get("name")
    return ListLink(
        kind=row.kind,
        key=row.crm_id,
        qbo_id=row.qbo_id,
        realm_id=str(realm) if realm else None,
        name=str(name) if isinstance(name, str) else None,
    )


def cached_id(session: Session, location_id: str, kind: ListKind, key: str, realm_id: str) -> str | None:
    """The QuickBooks Id cached for ``key`` in this company, or None."""
    found = find_list(session, location_id, kind, key)
    return found.qbo_id if found is not None and found.usable_in(realm_id) else None


def save_list(
    session: Session,
    location_id: str,
    kind: ListKind,
    key: str,
    qbo_id: str,
    *,
    realm_id: str,
    name: str | None = None,
) -> ListLink:
    """Cache ``key`` → ``qbo_id`` for this company."""
    row = rows.find_or_new(session, location_id, kind, key)
    row.qbo_id = qbo_id
    extra: dict[str, Any] = {"name": name} if name is not None else {}
    row.data = {**(row.data or {}), **extra, "realm_id": realm_id}
    session.flush()
    return ListLink(kind=kind, key=key, qbo_id=qbo_id, realm_id=realm_id, name=name)

"""The product's own QuickBooks creates, so their webhook echo does not ring the change-query doorbell.

Intuit sends a webhook for every change in the company, the product's own writes included. A Payment the
invoice sync created, or a Customer it created and linked, is already known to the product: its Create
event needs no change query (a metered read). Only ``Create`` echoes are recognised; a later Update of
the same object (someone edited it in QuickBooks) still rings.

| kind | crm_id | qbo_id |
|---|---|---|
| ``own_payment`` | the QuickBooks Payment id | the same |

Customers need no row of their own: a customer the product created is the ``qbo_id`` of a customer link.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.db.link_model import Link
from qbconnect.sync.links import rows
from qbconnect.sync.links.customers import LINK_KIND as CUSTOMER_KIND

OWN_PAYMENT = "own_payment"


def remember_payment(session: Session, location_id: str, qbo_id: str) -> None:
    """The invoice sync created QuickBooks Payment ``qbo_id``."""
    row = rows.find_or_new(session, location_id, OWN_PAYMENT, qbo_id)
    row.qbo_id = qbo_id


def is_own_create(session: Session, location_id: str, entity: str, qbo_id: str) -> bool:
    """Whether a ``Create`` event of ``entity`` ``qbo_id`` is the echo of the product's own create."""
    if entity == "Payment":
        return rows.find(session, location_id, OWN_PAYMENT, qbo_id) is not None
    if entity == "Customer":
        found = session.execute(
            select(Link.id)
            .where(Link.location_id == location_id, Link.kind == CUSTOMER_KIND, Link.qbo_id == qbo_id)
            .limit(1)
        ).first()
        return found is not None
    return False

"""Invoice links: a CRM invoice and the QuickBooks invoice it became (kind ``invoice``).

One row per CRM invoice id (``crm_id``). ``qbo_id`` is the Invoice Id once created; ``request_id`` the
create's ``requestid`` (stored before the call); ``sync_token`` QuickBooks' last SyncToken; ``content_hash``
what the last complete run made QuickBooks equal to. ``data`` is
:class:`~qbconnect.domain.invoice_rules.InvoiceLinkState` (``realm_id``, ``skipped``, ``snapshot``,
``payments``, ``pending_payment``, ``voided``, ``crm_updated_at``, ``crm_status``, ``applied_since``,
``touches_since``, ``refused``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from qbconnect.domain.invoice_rules import InvoiceLinkState
from qbconnect.sync.links import rows

KIND = "invoice"


@dataclass
class InvoiceLink:
    """The working record of one invoice link; a run changes it and stores it with :func:`save_invoice`."""

    crm_id: str
    qbo_id: str | None = None
    request_id: str | None = None
    sync_token: str | None = None
    content_hash: str | None = None
    state: InvoiceLinkState = field(default_factory=InvoiceLinkState)
    row_id: int | None = None  # the stored row, once there is one

    def belongs_to(self, realm_id: str) -> bool:
        """A link without a realm (written by code that did not record it) is taken as this company's."""
        return not self.state.realm_id or self.state.realm_id == realm_id

    def start_over(self, realm_id: str) -> None:
        """Forget a QuickBooks invoice made in another company (after a reconnect to a different one)."""
        self.qbo_id = self.request_id = self.sync_token = self.content_hash = None
        self.state = InvoiceLinkState(realm_id=realm_id)


def find_invoice(session: Session, location_id: str, crm_id: str) -> InvoiceLink | None:
    row = rows.find(session, location_id, KIND, crm_id)
    if row is None:
        return None
    return InvoiceLink(
        crm_id=row.crm_id,
        qbo_id=row.qbo_id,
        request_id=row.request_id,
        sync_token=row.sync_token,
        content_hash=row.content_hash,
        state=InvoiceLinkState.load(row.data),
        row_id=row.id,
    )


def save_invoice(session: Session, location_id: str, link: InvoiceLink) -> None:
    """Store the record (creating its row the first time); flushed, committed by the engine."""
    row = rows.find_or_new(session, location_id, KIND, link.crm_id, link.row_id)
    row.qbo_id = link.qbo_id
    row.request_id = link.request_id
    row.sync_token = link.sync_token
    row.content_hash = link.content_hash
    row.data = link.state.dump()
    session.flush()
    link.row_id = row.id

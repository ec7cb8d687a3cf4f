"""The review-request record: at most one per (location, QuickBooks customer), ever.

All ``review_requests`` queries live here. The unique (location_id, qbo_customer_id) constraint is what
makes "once per customer" a database fact; :func:`claim` is the only way to take the right to send.

Statuses:
- ``sending`` — claimed and committed just before the message goes out. Found later, it means a run is
  sending right now or stopped between sending and recording the answer: never sent again.
- ``sent`` — HighLevel accepted the message. Final.
- ``skipped`` — decided not to send (do-not-disturb for the channel). Final: still once per customer.
- ``failed`` — HighLevel refused or could not be reached before anything was sent. The next run for this
  customer (the job's retry, the sync log's Retry button, a later payment webhook) may claim it again.
- ``unknown`` — the send may have happened (timeout or server error after the request left). Final, so
  a customer never gets the request twice.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbconnect.db.models import ReviewRequest

SENDING = "sending"
SENT = "sent"
SKIPPED = "skipped"
FAILED = "failed"
UNKNOWN = "unknown"

RESUMABLE = frozenset({FAILED})
FINAL = frozenset({SENDING, SENT, SKIPPED, UNKNOWN})


def find(session: Session, location_id: str, qbo_customer_id: str) -> ReviewRequest | None:
    return session.execute(
        select(ReviewRequest).where(
            ReviewRequest.location_id == location_id, ReviewRequest.qbo_customer_id == qbo_customer_id
        )
    ).scalar_one_or_none()


def claim(
    session: Session,
    *,
    location_id: str,
    qbo_customer_id: str,
    qbo_invoice_id: str,
    qbo_payment_id: str,
    contact_id: str | None,
    channel: str,
    status: str,
    detail: str | None = None,
) -> ReviewRequest | None:
    """Take the customer's one review request: insert the row, or turn a ``failed`` row into ``status``.

    Returns the row, or None when another run holds it (a row exists that is not resumable, or a
    concurrent run inserted or re-claimed it first). The engine commits it before the message is sent
    (it commits before every platform call).
    """
    existing = find(session, location_id, qbo_customer_id)
    if existing is None:
        row = ReviewRequest(
            location_id=location_id,
            qbo_customer_id=qbo_customer_id,
            qbo_invoice_id=qbo_invoice_id,
            qbo_payment_id=qbo_payment_id,
            contact_id=contact_id,
            channel=channel,
            status=status,
            detail=detail,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            return None  # another run inserted it first
        return row
    if existing.status not in RESUMABLE:
        return None
    result = session.execute(
        update(ReviewRequest)
        .where(ReviewRequest.id == existing.id, ReviewRequest.status.in_(list(RESUMABLE)))
        .values(
            status=status,
            qbo_invoice_id=qbo_invoice_id,
            qbo_payment_id=qbo_payment_id,
            contact_id=contact_id,
            channel=channel,
            detail=detail,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None
    session.refresh(existing)
    return existing


def record(row: ReviewRequest, status: str, detail: str | None) -> None:
    """Set the outcome of a claimed row (the caller commits)."""
    row.status = status
    row.detail = detail[:2000] if detail else None

"""Which customer a merged-away QuickBooks customer went into, from the Merge webhooks received.

A merged-away customer can no longer be read, and neither the job (entity = the merged-away id) nor QBO's
change feed names the survivor; the Merge webhook does (``deletedId`` / ``data.deletedid``), and every
webhook is kept in the inbox table.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.db.models import InboxEvent
from qbconnect.qbo.webhooks import parse_events

MERGE_EVENT_TYPE = "Customer.Merge"
LOOKBACK_EVENTS = 200


def merge_survivor(session: Session, location_id: str, realm_id: str | None, merged_id: str) -> str | None:
    """The surviving customer's Id if a Merge webhook said ``merged_id`` was merged into it."""
    rows = session.execute(
        select(InboxEvent.body)
        .where(
            InboxEvent.source == "qbo",
            InboxEvent.location_id == location_id,
            InboxEvent.event_type == MERGE_EVENT_TYPE,
        )
        .order_by(InboxEvent.id.desc())
        .limit(LOOKBACK_EVENTS)
    ).scalars()
    for body in rows:
        try:
            events = parse_events(body.encode("utf-8"))
        except ValueError:
            continue
        for event in events:
            if (
                event.entity == "Customer"
                and event.operation == "Merge"
                and event.deleted_id == merged_id
                and (realm_id is None or event.realm_id == realm_id)
                and event.entity_id != merged_id
            ):
                return event.entity_id
    return None

"""What QuickBooks' change query (CDC) said about an object, kept for the one job that acts on it.

The CDC answer carries whole objects (a Customer, a Payment and the Invoices it pays), so the job it
queues does not read them again. Each object is kept as an inbox row (source ``qbo_cdc``, one per object
version: realm, entity, id and ``LastUpdatedTime``), written in the change job's transaction together with
the job it queues, and taken by that job's first run: taking marks every kept version of the entity used
(the body is dropped at once). A later run of the entity — a retry, the sync log's Retry button, an event
too old for a change query — finds nothing kept and reads QuickBooks: a retry re-plans from the current
source. Rows not taken (their job was skipped) go with the inbox retention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.db.models import InboxEvent
from qbconnect.domain import jsonutil
from qbconnect.sync.engine.intake import UnstorableEvent, check_storable

SOURCE = "qbo_cdc"
KEPT = "kept"  # an inbox outcome whose body is kept (db/models.py INBOX_BODY_KEPT_OUTCOMES)
USED = "used"  # taken: the body is dropped


@dataclass(frozen=True)
class Change:
    """One object as the change query returned it, with the related objects the same answer held."""

    object: dict[str, Any]
    related: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def related_by_id(self, entity: str) -> dict[str, dict[str, Any]]:
        return {str(obj.get("Id")): obj for obj in self.related.get(entity, []) if obj.get("Id") is not None}


def _stamp(obj: Mapping[str, Any]) -> str:
    meta = obj.get("MetaData")
    return str(meta.get("LastUpdatedTime") or "-") if isinstance(meta, Mapping) else "-"


def keep(
    session: Session,
    location_id: str,
    realm_id: str,
    entity: str,
    obj: Mapping[str, Any],
    related: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> bool:
    """Keep ``obj`` (and ``related`` objects of the same answer) for the job of that entity, in the caller's
    transaction. False when it cannot be kept (no id, or ids storage cannot hold): that job reads instead."""
    entity_id = str(obj.get("Id") or "")
    if not entity_id:
        return False
    event_id = f"{realm_id}:{entity}:{entity_id}:{_stamp(obj)}"
    event_type = f"{entity}.Changed"
    try:
        check_storable(
            {
                "event_id": event_id,
                "event_type": event_type,
                "realm_id": realm_id,
                "entity_kind": entity,
                "entity_id": entity_id,
            }
        )
    except UnstorableEvent:
        return False
    try:  # amounts stay Decimal; a string that is not valid Unicode cannot be kept
        payload = {"object": obj, "related": {k: list(v) for k, v in (related or {}).items()}}
        body = jsonutil.dumps(payload).decode("utf-8")
    except (TypeError, ValueError):
        return False
    row = session.execute(
        select(InboxEvent).where(InboxEvent.source == SOURCE, InboxEvent.event_id == event_id)
    ).scalar_one_or_none()
    if row is None:
        session.add(
            InboxEvent(
                source=SOURCE,
                event_id=event_id,
                event_type=event_type,
                location_id=location_id,
                realm_id=realm_id,
                entity_kind=entity,
                entity_id=entity_id,
                outcome=KEPT,
                body=body,
            )
        )
    else:  # the same version again (the job that took it did not converge): keep it once more
        row.location_id = location_id
        row.outcome = KEPT
        row.body = body
    session.flush()
    return True


def take(session: Session, location_id: str, realm_id: str | None, entity: str, entity_id: str) -> Change | None:
    """The newest kept version of the entity, or None; every kept version of it is marked used."""
    if realm_id is None:
        return None
    rows = session.execute(
        select(InboxEvent)
        .where(
            InboxEvent.source == SOURCE,
            InboxEvent.location_id == location_id,
            InboxEvent.realm_id == realm_id,
            InboxEvent.entity_kind == entity,
            InboxEvent.entity_id == entity_id,
            InboxEvent.outcome == KEPT,
        )
        .order_by(InboxEvent.id.desc())
    ).scalars()
    found: Change | None = None
    for row in rows:
        if found is None:
            found = _parse(row.body)
        row.outcome = USED  # drops the body
    session.flush()
    return found


def _parse(body: str) -> Change | None:
    try:
        data = jsonutil.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return None
    related: dict[str, list[dict[str, Any]]] = {}
    raw = data.get("related")
    if isinstance(raw, dict):
        for name, objects in raw.items():
            if isinstance(objects, list):
                related[str(name)] = [o for o in objects if isinstance(o, dict)]
    return Change(object=data["object"], related=related)

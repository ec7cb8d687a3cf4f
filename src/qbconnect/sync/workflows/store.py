"""Workflow subscriptions, events and deliveries: every query of the workflow tables but the balances.

A subscription is what HighLevel's Subscription URL reports when a workflow starts (``CREATED``), changes
(``UPDATED``) or stops (``DELETED``) using one of the app's triggers. An event is one QuickBooks fact a
trigger reports, once per location (unique ``event_key``). A delivery is one event for one subscription,
unique per pair: recording an event again (a redelivered webhook, an overlapping change query, a second pass)
finds the rows already there and enqueues nothing new; each delivery is sent by one ``workflow_trigger`` job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.state import active_connection
from qbconnect.db.models import WorkflowDelivery, WorkflowEvent, WorkflowSubscription
from qbconnect.sync.engine import jobs
from qbconnect.sync.workflows.catalogue import TRIGGERS

WORKFLOW_TRIGGER = "workflow_trigger"  # job kind: entity = a delivery id

PENDING, SENDING, SENT, UNKNOWN, FAILED, SKIPPED = "pending", "sending", "sent", "unknown", "failed", "skipped"
EVENT_TYPES = ("CREATED", "UPDATED", "DELETED")


class SubscriptionRefused(ValueError):
    """The subscription body is not one the app can keep (the message says why, in plain words)."""


@dataclass(frozen=True)
class SubscriptionChange:
    location_id: str
    trigger_key: str
    trigger_id: str
    event_type: str
    target_url: str
    workflow_id: str | None
    company_id: str | None
    version: str | None
    filters: list[Any]


def parse_subscription(body: Any) -> SubscriptionChange:
    """HighLevel's Subscription URL body (``triggerData``, ``meta``, ``extras``) as a typed change."""
    if not isinstance(body, Mapping):
        raise SubscriptionRefused("the body is not a JSON object")
    data, meta, extras = body.get("triggerData"), body.get("meta"), body.get("extras")
    if not isinstance(data, Mapping) or not isinstance(extras, Mapping):
        raise SubscriptionRefused("triggerData and extras are required")
    meta = meta if isinstance(meta, Mapping) else {}
    key = str(data.get("key") or meta.get("key") or "")
    if key not in TRIGGERS:
        raise SubscriptionRefused(f"unknown trigger key {key!r}")
    event_type = str(data.get("eventType") or "").upper()
    if event_type not in EVENT_TYPES:
        raise SubscriptionRefused(f"unknown eventType {data.get('eventType')!r}")
    trigger_id = str(data.get("id") or "")
    location_id = str(extras.get("locationId") or "")
    target_url = str(data.get("targetUrl") or "")
    if not trigger_id or not location_id or (event_type != "DELETED" and not target_url):
        raise SubscriptionRefused("triggerData.id, triggerData.targetUrl and extras.locationId are required")
    if len(trigger_id) > 128 or len(location_id) > 64 or len(target_url) > 2048:
        raise SubscriptionRefused("an id or the target URL is too long")
    filters = data.get("filters")
    return SubscriptionChange(
        location_id=location_id,
        trigger_key=key,
        trigger_id=trigger_id,
        event_type=event_type,
        target_url=target_url,
        workflow_id=_short(extras.get("workflowId")),
        company_id=_short(extras.get("companyId")),
        version=_short(meta.get("version"), 32),
        filters=list(filters) if isinstance(filters, list) else [],
    )


def _short(value: Any, limit: int = 64) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text[:limit] or None


def apply_subscription(session: Session, change: SubscriptionChange) -> WorkflowSubscription | None:
    """Keep (CREATED/UPDATED) or end (DELETED) the subscription; idempotent under redelivery."""
    row = session.execute(
        select(WorkflowSubscription).where(
            WorkflowSubscription.location_id == change.location_id,
            WorkflowSubscription.trigger_id == change.trigger_id,
        )
    ).scalar_one_or_none()
    now = utcnow()
    if change.event_type == "DELETED":
        if row is not None and row.active:
            row.active = False
            row.ended_at = now
        return row
    if row is None:
        row = WorkflowSubscription(location_id=change.location_id, trigger_id=change.trigger_id)
        session.add(row)
    row.trigger_key = change.trigger_key
    row.target_url = change.target_url
    row.workflow_id = change.workflow_id or row.workflow_id
    row.company_id = change.company_id or row.company_id
    row.version = change.version
    row.filters = change.filters
    row.active = True
    row.ended_at = None
    row.updated_at = now
    session.flush()
    return row


def active_subscriptions(session: Session, location_id: str, trigger_key: str) -> list[WorkflowSubscription]:
    return list(
        session.execute(
            select(WorkflowSubscription)
            .where(
                WorkflowSubscription.location_id == location_id,
                WorkflowSubscription.trigger_key == trigger_key,
                WorkflowSubscription.active.is_(True),
            )
            .order_by(WorkflowSubscription.id)
        ).scalars()
    )


def subscribed_locations(session: Session, trigger_key: str) -> list[str]:
    return list(
        session.execute(
            select(WorkflowSubscription.location_id)
            .where(WorkflowSubscription.trigger_key == trigger_key, WorkflowSubscription.active.is_(True))
            .distinct()
        ).scalars()
    )


def has_subscribers(session: Session, location_id: str, trigger_key: str) -> bool:
    return bool(active_subscriptions(session, location_id, trigger_key))


def event_exists(session: Session, location_id: str, event_key: str) -> bool:
    return (
        session.execute(
            select(WorkflowEvent.id).where(
                WorkflowEvent.location_id == location_id, WorkflowEvent.event_key == event_key
            )
        ).first()
        is not None
    )


def record_event(
    session: Session,
    location_id: str,
    trigger_key: str,
    event_key: str,
    *,
    realm_id: str,
    customer_id: str | None,
    facts: Mapping[str, Any],
    deliver: bool = True,
    reason: str,
) -> list[int]:
    """Record the event once (a second call with the same key changes nothing) and, when it is new and
    ``deliver``, one delivery per active subscription of its trigger, each sent by its own job (enqueued in
    the caller's transaction). Returns the new delivery ids."""
    if event_exists(session, location_id, event_key):
        return []
    event = WorkflowEvent(
        location_id=location_id,
        trigger_key=trigger_key,
        event_key=event_key,
        realm_id=realm_id,
        qbo_customer_id=customer_id,
        facts=dict(facts),
        occurred_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(event)
            session.flush()
    except IntegrityError:
        return []  # another transaction recorded it first: theirs delivers it
    if not deliver:
        return []
    created: list[int] = []
    for subscription in active_subscriptions(session, location_id, trigger_key):
        delivery = WorkflowDelivery(location_id=location_id, subscription_id=subscription.id, event_id=event.id)
        session.add(delivery)
        session.flush()
        jobs.enqueue(session, location_id, WORKFLOW_TRIGGER, str(delivery.id), reason)
        created.append(delivery.id)
    return created


@dataclass
class DeliveryView:
    delivery: WorkflowDelivery
    event: WorkflowEvent
    subscription: WorkflowSubscription


def load_delivery(session: Session, location_id: str, delivery_id: str) -> DeliveryView | None:
    if not delivery_id.isdigit():
        return None
    delivery = session.get(WorkflowDelivery, int(delivery_id))
    if delivery is None or delivery.location_id != location_id:
        return None
    event = session.get(WorkflowEvent, delivery.event_id)
    subscription = session.get(WorkflowSubscription, delivery.subscription_id)
    if event is None or subscription is None:
        return None
    return DeliveryView(delivery, event, subscription)


def mark(delivery: WorkflowDelivery, state: str, detail: str | None = None, *, at: datetime | None = None) -> None:
    delivery.state = state
    delivery.detail = detail
    if state == SENT:
        delivery.sent_at = at or utcnow()


def deliveries_of(session: Session, location_id: str) -> list[WorkflowDelivery]:
    return list(
        session.execute(
            select(WorkflowDelivery).where(WorkflowDelivery.location_id == location_id).order_by(WorkflowDelivery.id)
        ).scalars()
    )


def subscriptions_of(session: Session, location_id: str) -> list[WorkflowSubscription]:
    return list(
        session.execute(
            select(WorkflowSubscription)
            .where(WorkflowSubscription.location_id == location_id)
            .order_by(WorkflowSubscription.id)
        ).scalars()
    )


def company_facts(session: Session, location_id: str, realm_id: str) -> dict[str, Any]:
    """The payloads' company part: the QuickBooks company's realm id and name, as the connection recorded."""
    connection = active_connection(session, location_id)
    name = connection.company_name if connection is not None and connection.realm_id == realm_id else None
    return {"realmId": realm_id, "name": name or ""}

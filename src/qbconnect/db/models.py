"""The storage model. Queries live beside their area (sync/jobs.py, connections, …), not here.

The link table's model is in :mod:`qbconnect.db.link_model`, read and written only by the link repository
(``qbconnect.sync.links``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from qbconnect.clock import utcnow
from qbconnect.db.types import JSONDoc, UTCDateTime, json_default

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Location(Base):
    """A CRM location (sub-account) that installed the app. Tokens are Fernet-encrypted."""

    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    company_id: Mapped[str | None] = mapped_column(String(64))
    crm_status: Mapped[str] = mapped_column(String(32), default="installed")  # installed|needs_reconnect|uninstalled
    crm_access_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    crm_refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    crm_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    crm_scope: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=json_default)
    state: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=json_default)  # cursors, import progress
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CrmCompany(Base):
    """An agency (Company) install of the app: its token mints the location tokens of its locations."""

    __tablename__ = "crm_companies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # HighLevel companyId
    status: Mapped[str] = mapped_column(String(32), default="installed")  # installed|needs_reconnect
    access_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scope: Mapped[str | None] = mapped_column(Text)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class QboConnection(Base):
    """The QuickBooks company a location is connected to. One active connection per realm."""

    __tablename__ = "qbo_connections"

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), unique=True)
    realm_id: Mapped[str] = mapped_column(String(32), index=True)
    # Equal to realm_id while connected (or needing reconnect), NULL once disconnected: a realm can be
    # actively connected to one location only.
    active_realm_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(32), default="connected")  # connected|needs_reconnect|disconnected
    company_name: Mapped[str | None] = mapped_column(String(255))
    country: Mapped[str | None] = mapped_column(String(8))
    home_currency: Mapped[str | None] = mapped_column(String(8))
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=json_default)
    access_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    refresh_token: Mapped[str | None] = mapped_column(Text)  # encrypted
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refresh_hard_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# The inbox keeps a body only while something may read it: events that queued work, QuickBooks Merge
# events (sync/contacts/merges.py reads them to find the surviving customer), and the objects a QuickBooks
# change query kept for the job it queued ("kept", until that job takes them: sync/engine/changes.py).
# Every other outcome (ignored, unknown_location, uninstalled, used, …) keeps the ids and the outcome, and an
# empty body. Rows go after QBCONNECT_INBOX_RETENTION_DAYS (retention.py).
INBOX_BODY_KEPT_OUTCOMES = frozenset({"queued", "kept"})
INBOX_BODY_KEPT_TYPES = frozenset({("qbo", "Customer.Merge")})


def inbox_body_needed(source: str, event_type: str, outcome: str) -> bool:
    """Whether an inbox row with this outcome keeps its body (only while something will read it)."""
    return outcome in INBOX_BODY_KEPT_OUTCOMES or (source, event_type) in INBOX_BODY_KEPT_TYPES


class InboxEvent(Base):
    """One platform event as received. Unique per (source, event id): redeliveries store nothing."""

    __tablename__ = "inbox_events"
    __table_args__ = (UniqueConstraint("source", "event_id", name="uq_inbox_events_source_event"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(8))  # crm|qbo
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    location_id: Mapped[str | None] = mapped_column(String(64), index=True)
    realm_id: Mapped[str | None] = mapped_column(String(32))
    entity_kind: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32), default="queued")  # queued|ignored|unknown_location
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def body_needed(self, outcome: str | None) -> bool:
        return outcome is None or inbox_body_needed(self.source, self.event_type, outcome)

    @validates("outcome", "body")
    def _keep_less(self, key: str, value: str) -> str:
        if key == "body":
            return value if self.body_needed(self.outcome) else ""
        if not self.body_needed(value) and self.body:
            self.body = ""
        return value


class WebhookRefusal(Base):
    """How many signed webhook events were refused, per source and reason (never their bodies)."""

    __tablename__ = "webhook_refusals"

    source: Mapped[str] = mapped_column(String(8), primary_key=True)  # crm|qbo
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)  # stale|future|unstorable|malformed
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SyncJob(Base):
    """One pending/running unit of work per (location, kind, entity); history kept when finished."""

    __tablename__ = "sync_jobs"
    __table_args__ = (
        Index("ix_sync_jobs_state_run_after", "state", "run_after"),
        # jobs.claim_next: the due pending job of one location (0009)
        Index("ix_sync_jobs_state_location_run_after", "state", "location_id", "run_after"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    entity_id: Mapped[str] = mapped_column(String(128))
    # "<location>|<kind>|<entity>" while pending or running, NULL when finished: the unique index
    # makes "one active job per entity" a database fact, on SQLite and PostgreSQL alike.
    active_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|done|failed|skipped
    reason: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rerun: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    error_category: Mapped[str | None] = mapped_column(String(16))
    activity_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Activity(Base):
    """The sync log: one row per source change, in plain words."""

    __tablename__ = "activity"
    __table_args__ = (
        Index("ix_activity_location_created", "location_id", "created_at"),
        Index("ix_activity_location_kind_entity", "location_id", "kind", "entity_id"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    entity_id: Mapped[str] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(16))  # crm_to_qbo|qbo_to_crm|internal
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|running|retrying|done|failed|skipped
    reason: Mapped[str | None] = mapped_column(String(255))
    summary: Mapped[str | None] = mapped_column(Text)
    error_category: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    crm_id: Mapped[str | None] = mapped_column(String(128))
    qbo_id: Mapped[str | None] = mapped_column(String(64))
    # What a readable title needs, when the handler's Result says it (all optional).
    label: Mapped[str | None] = mapped_column(String(255))  # e.g. "Invoice #1042"
    number: Mapped[str | None] = mapped_column(String(64))  # CRM invoice / order number
    customer: Mapped[str | None] = mapped_column(String(255))  # the customer's name
    customer_email: Mapped[str | None] = mapped_column(String(320))  # for search only, never logged
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2, asdecimal=True))
    currency: Mapped[str | None] = mapped_column(String(3))
    qbo_type: Mapped[str | None] = mapped_column(String(32))  # Invoice|SalesReceipt|RefundReceipt|Payment|Customer
    crm_url: Mapped[str | None] = mapped_column(String(500))
    group_key: Mapped[str | None] = mapped_column(String(160))  # rows of one sale share it
    # The platform's last answer when it failed.
    fault_code: Mapped[str | None] = mapped_column(String(32))
    intuit_tid: Mapped[str | None] = mapped_column(String(128))  # or the CRM's trace id
    # A failed row is an open problem until a later run of the same record succeeds or it is dismissed.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dismissed_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ActivityAttempt(Base):
    """One run of a sync-log row: when, how long, what was asked (a summary, never secrets) and the answer."""

    __tablename__ = "activity_attempts"
    __table_args__ = (UniqueConstraint("activity_id", "attempt", name="uq_activity_attempts_activity_attempt"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    activity_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    request_summary: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # done|skipped|failed|retry
    http_status: Mapped[int | None] = mapped_column(Integer)
    fault_code: Mapped[str | None] = mapped_column(String(32))
    intuit_tid: Mapped[str | None] = mapped_column(String(128))  # or the CRM's trace id
    message: Mapped[str | None] = mapped_column(Text)


class ReviewRequest(Base):
    """A review request sent (or decided) for a QuickBooks customer — at most one, ever."""

    __tablename__ = "review_requests"
    __table_args__ = (UniqueConstraint("location_id", "qbo_customer_id", name="uq_review_requests_customer"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    qbo_customer_id: Mapped[str] = mapped_column(String(64))
    qbo_invoice_id: Mapped[str] = mapped_column(String(64))
    qbo_payment_id: Mapped[str | None] = mapped_column(String(64))
    contact_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))  # sending|sent|skipped
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OAuthState(Base):
    """Single-use record of an issued OAuth ``state`` (the state itself is signed and expiring)."""

    __tablename__ = "oauth_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    location_id: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QboReadCount(Base):
    """Metered QuickBooks reads (GET, query, CDC) per calendar month (UTC), company and kind.

    One row per (month, realm, kind), incremented by one upsert per read (connections/read_budget.py); the
    app's monthly total is the month's sum. Writes and OAuth calls are not metered by Intuit, not counted.
    """

    __tablename__ = "qbo_read_counts"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-12"
    realm_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # read|query|cdc
    reads: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ---- QuickBooks in the CRM's workflows (sync/workflows/, docs/workflows.md) ------------------------------


class WorkflowSubscription(Base):
    """A CRM workflow that uses one of the app's triggers, as HighLevel's Subscription URL reported it:
    ``triggerData.id`` (the trigger's id in that workflow) and ``targetUrl`` (where firing it is sent)."""

    __tablename__ = "workflow_subscriptions"
    __table_args__ = (
        UniqueConstraint("location_id", "trigger_id", name="uq_workflow_subscriptions_trigger"),
        Index("ix_workflow_subscriptions_key", "location_id", "trigger_key", "active"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    trigger_key: Mapped[str] = mapped_column(String(64))
    trigger_id: Mapped[str] = mapped_column(String(128))
    workflow_id: Mapped[str | None] = mapped_column(String(128))
    company_id: Mapped[str | None] = mapped_column(String(64))
    target_url: Mapped[str] = mapped_column(Text)
    filters: Mapped[list[Any]] = mapped_column(JSONDoc, default=list)
    version: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WorkflowEvent(Base):
    """One QuickBooks event a trigger reports (an invoice paid, a payment, an overdue stage, a customer),
    once per location ever: ``event_key`` names it (``invoice_paid:<realm>:<invoice id>``, …)."""

    __tablename__ = "workflow_events"
    __table_args__ = (UniqueConstraint("location_id", "event_key", name="uq_workflow_events_key"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    trigger_key: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(255))
    realm_id: Mapped[str] = mapped_column(String(64))
    qbo_customer_id: Mapped[str | None] = mapped_column(String(64))
    facts: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=json_default)  # what the payload is built from
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkflowDelivery(Base):
    """One event sent to one subscription: unique per (subscription, event), so never twice.
    ``state``: pending | sending (claimed; the call may be under way) | sent | unknown | failed | skipped."""

    __tablename__ = "workflow_deliveries"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id", name="uq_workflow_deliveries_pair"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64), index=True)
    subscription_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    detail: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class QboInvoiceBalance(Base):
    """A QuickBooks invoice as the product last saw it (its own writes, the change query's objects): what
    the balance action, the overdue pass and the contact balance fields read, without a QuickBooks call."""

    __tablename__ = "qbo_invoice_balances"
    __table_args__ = (
        UniqueConstraint("location_id", "realm_id", "invoice_id", name="uq_qbo_invoice_balances_invoice"),
        Index("ix_qbo_invoice_balances_customer", "location_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    realm_id: Mapped[str] = mapped_column(String(64))
    invoice_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    customer_name: Mapped[str | None] = mapped_column(String(255))  # CustomerRef.name, for the payloads
    bill_email: Mapped[str | None] = mapped_column(String(255))
    doc_number: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(8))
    total: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    balance: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    txn_date: Mapped[str | None] = mapped_column(String(10))
    due_date: Mapped[str | None] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | paid | voided | deleted
    qbo_updated: Mapped[str | None] = mapped_column(String(40))  # MetaData.LastUpdatedTime as seen
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ContactBalanceFields(Base):
    """The QuickBooks balance values last written to a contact's custom fields (written only on change)."""

    __tablename__ = "contact_balance_fields"
    __table_args__ = (UniqueConstraint("location_id", "contact_id", name="uq_contact_balance_fields_contact"),)

    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    location_id: Mapped[str] = mapped_column(String(64))
    contact_id: Mapped[str] = mapped_column(String(64))
    open_balance: Mapped[str | None] = mapped_column(String(32))
    overdue: Mapped[str | None] = mapped_column(String(32))
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

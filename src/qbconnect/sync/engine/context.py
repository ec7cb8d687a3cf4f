"""What a handler receives (JobContext) and returns (Result).

The engine owns the job's transactions; handlers read and record through ``ctx.session`` and never commit.
The engine commits:
- before every platform call: the job's clients (``ctx.qbo()``, ``ctx.crm()``, built by clients.py) end
  the open transaction first, so none is ever held while a platform answers, and what a handler recorded
  before a call (a requestid before the create that uses it, the link after the previous write) is durable
  before the platform sees the next request; before the lease is renewed (``ctx.heartbeat()``), too;
- at the end, with the outcome: a :class:`Result`, or a :class:`~qbconnect.errors.SyncError` the handler
  raised (what it recorded describes what the platforms now hold, so it is kept with the failure).
It rolls back only what was recorded since the last platform call, when the handler fails with anything
else (a bug) or its lease was lost (another worker owns the entity now).

A handler that calls a platform from several threads (the contact import) keeps the job session empty and
reads and records in short units of its own, ``with ctx.unit() as session:``, each committed at its end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.crm.client import CrmClient
from qbconnect.qbo.client import QboClient
from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.clients import job_crm_client, job_qbo_client


@dataclass(frozen=True)
class Result:
    """A handler's answer. ``skipped`` runs are logged with ``summary`` as the reason.

    The optional fields make the sync-log row readable ("Invoice #1042 · Kira Garcia · $885.00 →
    QuickBooks invoice 19"); a handler fills what it knows, the row falls back to the kind and ids.
    ``customer_email`` is only for searching the log; ``group_key`` puts the rows of one sale together
    (an order and its sales receipt)."""

    summary: str
    crm_id: str | None = None
    qbo_id: str | None = None
    skipped: bool = False
    label: str | None = None
    number: str | None = None
    customer: str | None = None
    customer_email: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    qbo_type: str | None = None
    crm_url: str | None = None
    group_key: str | None = None

    def details(self) -> dict[str, Any]:
        """The readable-title fields the handler filled (for the sync-log row)."""
        values = {name: getattr(self, name) for name in READABLE}
        return {name: value for name, value in values.items() if value is not None}


READABLE = ("label", "number", "customer", "customer_email", "amount", "currency", "qbo_type", "crm_url", "group_key")


@dataclass
class JobContext:
    runtime: Runtime
    session: Session  # the job's unit of work; the engine ends its transactions (see the module doc)
    job_id: int
    location_id: str
    kind: str
    entity_id: str
    reason: str | None
    attempt: int
    owner: str
    log: Any = field(repr=False, default=None)
    thread_id: int = field(default_factory=threading.get_ident)
    calls: dict[str, int] = field(default_factory=dict)  # platform -> requests made (the attempt's summary)
    # The readable fields known so far (``describe``): kept on the sync-log row even when the run fails.
    readable: dict[str, Any] = field(default_factory=dict)

    def describe(self, **fields: Any) -> None:
        """Say what the record is as soon as it is known (the :class:`Result` fields: label, number, customer,
        …), so a run that then fails still reads "Sales receipt · Kira Garcia · $59.38", not a bare id."""
        unknown = set(fields) - set(READABLE)
        if unknown:
            raise TypeError(f"not a readable field: {', '.join(sorted(unknown))}")
        self.readable.update({name: value for name, value in fields.items() if value is not None})

    def count_call(self, platform: str) -> None:
        self.calls[platform] = self.calls.get(platform, 0) + 1

    def end_transaction(self) -> None:
        """Commit what the handler recorded so far. Engine-internal: the job's clients call it before every
        platform call. From another thread it does nothing (such threads never touch the job session)."""
        if threading.get_ident() == self.thread_id and self.session.in_transaction():
            self.session.commit()

    def heartbeat(self) -> None:
        """Long handlers call this to keep their lease (a separate short transaction)."""
        self.end_transaction()
        with self.runtime.sessions.begin() as session:
            if not jobs.heartbeat(session, self.job_id, self.owner, self.runtime.settings.job_lease_seconds):
                raise jobs.LeaseLostError(f"job {self.job_id} lost its lease")

    def qbo(self, realm_id: str) -> QboClient:
        """The QuickBooks client of this job (commits the job's transaction before every call)."""
        return job_qbo_client(self, realm_id)

    def crm(self) -> CrmClient:
        """The CRM client of this job (commits the job's transaction before every call)."""
        return job_crm_client(self)

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """A short unit of work of its own, committed at its end (for handlers that call platforms from
        several threads). The job's own transaction ends first, so the two never wait for each other."""
        self.end_transaction()
        with self.runtime.sessions.begin() as session:
            yield session

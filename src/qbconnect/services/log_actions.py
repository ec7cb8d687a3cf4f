"""What the sync log's buttons do: Retry, Retry all failed, Dismiss, "Sync this invoice now", and the retry of
the rows a changed setting fixes."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.connections.clients import crm_client
from qbconnect.connections.state import is_syncing
from qbconnect.db.models import Activity
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services.activity_log import open_problems, why_not_dismiss, why_not_retry
from qbconnect.services.fixes import fix_for
from qbconnect.sync.engine import jobs

INVOICE_KIND = "invoice"
SCAN_LIMIT = 500  # invoices looked through to find one by its number


class ActionRefused(Exception):
    """The action does not apply; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def retry_one(session: Session, activity_id: int) -> int:
    """Retry one row; raises ActionRefused (404/409/422) with the reason when it does not apply."""
    row = session.get(Activity, activity_id)
    if row is None:
        raise ActionRefused(404, f"no sync log row {activity_id}")
    reason = why_not_retry(row, connected=is_syncing(session, row.location_id))
    if reason is not None:
        raise ActionRefused(422 if row.status == "skipped" else 409, reason)
    job_id = jobs.retry_activity(session, activity_id)
    if job_id is None:
        raise ActionRefused(409, "this row cannot be retried")
    return job_id


def retry_all_failed(session: Session, location_id: str, *, only_settings: frozenset[str] | None = None) -> list[int]:
    """Retry every open problem of the location (one per record). With ``only_settings``, only the problems
    whose plain fix is one of those settings. Returns the retried row ids."""
    retried: list[int] = []
    for row in open_problems(session, location_id, limit=10_000):
        if only_settings is not None:
            fix = fix_for(
                code=row.fault_code, category=row.error_category, message=row.error_message, intuit_tid=row.intuit_tid
            )
            if fix is None or fix.setting not in only_settings:
                continue
        if jobs.retry_activity(session, row.id) is not None:
            retried.append(row.id)
    return retried


def retry_after_settings_change(session: Session, location_id: str, changed: set[str]) -> list[int]:
    """Settings were saved: the rows that failed for a setting that changed run again by themselves."""
    if not changed or not is_syncing(session, location_id):
        return []
    return retry_all_failed(session, location_id, only_settings=frozenset(changed))


WHO_MAX = 128  # Activity.dismissed_by


def actor(*, user_id: str | None, name: str | None = None, email: str | None = None) -> str:
    """Who acted, as the sync log keeps it: "Ann Example <ann@example.com> · CRM user u1" for a CRM user
    (when that does not fit the column, the email goes, then the name is shortened), "admin" for the operator."""
    if not user_id:
        return "admin"
    tail = f"CRM user {user_id}"
    name = (name or "").strip()
    email = (email or "").strip()
    for head in (f"{name} <{email}>" if name and email else name or email, name):
        if head and len(head) + 3 + len(tail) <= WHO_MAX:
            return f"{head} · {tail}"
    room = WHO_MAX - 3 - len(tail) - 1
    if name and room > 0:
        return f"{name[:room]}… · {tail}"
    return tail[:WHO_MAX]


def dismiss(session: Session, activity_id: int, who: str) -> Activity:
    row = session.get(Activity, activity_id)
    if row is None:
        raise ActionRefused(404, f"no sync log row {activity_id}")
    reason = why_not_dismiss(row, connected=is_syncing(session, row.location_id))
    if reason is not None:
        raise ActionRefused(422 if row.status == "skipped" else 409, reason)
    if row.dismissed_at is None:
        row.dismissed_at = utcnow()
        row.dismissed_by = who[:WHO_MAX]
    return row


@dataclass(frozen=True)
class InvoiceFound:
    invoice_id: str
    number: str | None


def find_invoice(runtime: Runtime, location_id: str, number_or_id: str) -> InvoiceFound | None:
    """A CRM invoice by its number (as the owner sees it) or its id: the log first, then the CRM."""
    wanted = number_or_id.strip().lstrip("#")
    with runtime.sessions() as session:
        row = session.execute(
            select(Activity)
            .where(Activity.location_id == location_id, Activity.kind == INVOICE_KIND, Activity.number == wanted)
            .order_by(Activity.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is not None:
            return InvoiceFound(row.entity_id, row.number)
    client = crm_client(runtime, location_id)
    invoice = client.get_invoice(wanted)
    if invoice is not None:
        return InvoiceFound(str(invoice.get("_id") or invoice.get("id") or wanted), _number(invoice))
    for invoice in islice(client.iter_invoices(), SCAN_LIMIT):
        if _number(invoice) == wanted:
            found = invoice.get("_id") or invoice.get("id")
            if found:
                return InvoiceFound(str(found), wanted)
    return None


def _number(invoice: dict[str, object]) -> str | None:
    value = invoice.get("invoiceNumber") or invoice.get("number")
    return str(value) if value is not None else None


def sync_invoice_now(runtime: Runtime, location_id: str, number_or_id: str) -> tuple[int, InvoiceFound]:
    with runtime.sessions() as session:
        if not is_syncing(session, location_id):
            raise ActionRefused(409, "QuickBooks is not connected for this location; reconnect it first")
    try:
        found = find_invoice(runtime, location_id, number_or_id)
    except SyncError as exc:
        raise ActionRefused(502, f"the CRM could not be asked for the invoice: {exc.message}") from exc
    if found is None:
        raise ActionRefused(404, f"no CRM invoice with number or id {number_or_id}")
    with runtime.sessions.begin() as session:
        job_id = jobs.enqueue(session, location_id, INVOICE_KIND, found.invoice_id, "sync requested from the sync log")
    return job_id, found

"""Reading the sync log for the API, the Settings page, the CSV export and the CLI: newest first, filters,
search, paging, open problems, readable titles and the health summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from qbconnect.clock import as_utc, utcnow
from qbconnect.db.models import Activity, ActivityAttempt
from qbconnect.services.fixes import fix_for
from qbconnect.sync.engine import registry

STATUS_WORDS = {
    "pending": "Waiting",
    "running": "Syncing now",
    "retrying": "Will try again",
    "done": "Synced",
    "failed": "Failed",
    "skipped": "Skipped",
    "retried": "Retried",
}
DIRECTION_WORDS = {"crm_to_qbo": "CRM → QuickBooks", "qbo_to_crm": "QuickBooks → CRM", "internal": "Internal"}
KIND_WORDS = {
    "invoice": "Invoice",
    "order": "Order",
    "transaction": "Payment",
    "customer": "Customer",
    "qbo_payment": "QuickBooks payment",
    "customer_import": "Customer import",
    "invoice_reconcile": "Invoice check",
    "transaction_poll": "Payment check",
    "qbo_cdc": "QuickBooks changes check",
}
RETRYABLE = ("failed",)
MAX_LIMIT = 200
WAITING = ("pending", "running", "retrying")
# The status filter: the page's words → the rows they mean.
STATUS_FILTERS = ("needs_attention", "failed", "synced", "skipped", "waiting")
QBO_TYPE_WORDS = {
    "Invoice": "invoice",
    "SalesReceipt": "sales receipt",
    "RefundReceipt": "refund receipt",
    "Payment": "payment",
    "Customer": "customer",
}
QBO_APP_PATHS = {
    "Invoice": "invoice?txnId=",
    "SalesReceipt": "salesreceipt?txnId=",
    "RefundReceipt": "refundreceipt?txnId=",
    "Payment": "recvpayment?txnId=",
    "Customer": "customerdetail?nameId=",
}
# The QuickBooks type of a kind's QuickBooks id, when the handler did not say.
KIND_QBO_TYPES = {"invoice": "Invoice", "transaction": "SalesReceipt", "customer": "Customer", "qbo_payment": "Payment"}
# What a row's number counts, when the label does not already say it (a review request's first invoice).
NUMBER_NOUNS = {"qbo_payment": "Invoice"}
# What a QuickBooks → CRM row wrote in the CRM.
CRM_TARGET_WORDS = {"customer": "contact"}
QBO_APP_HOSTS = {"sandbox": "https://app.sandbox.qbo.intuit.com", "production": "https://app.qbo.intuit.com"}
CURRENCY_SIGNS = {"USD": "$", "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "GBP": "£", "EUR": "€"}


def kind_title(kind: str) -> str:
    spec = registry.HANDLERS.get(kind)
    return spec.title if spec is not None else KIND_WORDS.get(kind, kind.replace("_", " ").capitalize())


def list_activity(
    session: Session,
    location_id: str,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[Activity]:
    stmt = select(Activity).where(Activity.location_id == location_id)
    if status:
        stmt = stmt.where(Activity.status == status)
    if kind:
        stmt = stmt.where(Activity.kind == kind)
    if before_id is not None:
        stmt = stmt.where(Activity.id < before_id)
    stmt = stmt.order_by(Activity.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
    return list(session.execute(stmt).scalars())


# ---- filters, search, paging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    status: str | None = None  # one of STATUS_FILTERS, or a raw status (pending, done, …)
    kind: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    search: str | None = None
    include_internal: bool = False


def open_problem_clause() -> Any:
    return and_(Activity.status == "failed", Activity.resolved_at.is_(None), Activity.dismissed_at.is_(None))


def internal_kinds() -> list[str]:
    return [kind for kind, spec in registry.HANDLERS.items() if spec.direction == "internal"]


def filtered(location_id: str, flt: LogFilter) -> Select[Activity]:
    stmt = select(Activity).where(Activity.location_id == location_id)
    status = (flt.status or "").strip()
    if status == "needs_attention":
        stmt = stmt.where(open_problem_clause())
    elif status == "synced":
        stmt = stmt.where(Activity.status == "done")
    elif status == "waiting":
        stmt = stmt.where(Activity.status.in_(WAITING))
    elif status:
        stmt = stmt.where(Activity.status == status)
    if flt.kind:
        stmt = stmt.where(Activity.kind == flt.kind)
    if flt.date_from is not None:
        stmt = stmt.where(Activity.created_at >= flt.date_from)
    if flt.date_to is not None:
        stmt = stmt.where(Activity.created_at <= flt.date_to)
    if flt.search and flt.search.strip():
        needle = f"%{flt.search.strip().lstrip('#').lower()}%"
        columns = (
            Activity.label,
            Activity.number,
            Activity.customer,
            Activity.customer_email,
            Activity.entity_id,
            Activity.crm_id,
            Activity.qbo_id,
            Activity.summary,
        )
        stmt = stmt.where(or_(*(func.lower(column).like(needle) for column in columns)))
    if not flt.include_internal:
        stmt = stmt.where(Activity.direction != "internal")
        # A sale shows once: its order row only matters when the order itself failed, and rows sharing a
        # group key (an order and its sales receipt) show as the newest of them.
        stmt = stmt.where(or_(Activity.kind != "order", Activity.status.notin_(("done", "skipped"))))
        newer = aliased(Activity)
        stmt = stmt.where(
            or_(
                Activity.group_key.is_(None),
                ~select(newer.id)
                .where(
                    newer.location_id == Activity.location_id,
                    newer.group_key == Activity.group_key,
                    newer.id > Activity.id,
                )
                .exists(),
            )
        )
    return stmt


@dataclass(frozen=True)
class Page:
    rows: list[Activity]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def page_of(session: Session, location_id: str, flt: LogFilter, *, page: int = 1, per_page: int = 25) -> Page:
    per_page = max(1, min(per_page, MAX_LIMIT))
    page = max(1, page)
    stmt = filtered(location_id, flt)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = list(
        session.execute(stmt.order_by(Activity.id.desc()).offset((page - 1) * per_page).limit(per_page)).scalars()
    )
    return Page(rows=rows, total=total, page=page, per_page=per_page)


def open_problems(session: Session, location_id: str, *, limit: int = 200) -> list[Activity]:
    """The "Needs attention" list: open problems, one per record (the newest), newest first."""
    rows = session.execute(
        select(Activity)
        .where(Activity.location_id == location_id, open_problem_clause())
        .order_by(Activity.id.desc())
        .limit(limit * 2)
    ).scalars()
    seen: set[tuple[str, str]] = set()
    problems: list[Activity] = []
    for row in rows:
        key = (row.kind, row.entity_id)
        if key in seen:
            continue
        seen.add(key)
        problems.append(row)
    return problems[:limit]


# ---- readable rows -----------------------------------------------------------------------------------------


def money(amount: Decimal | None, currency: str | None) -> str | None:
    if amount is None:
        return None
    value = Decimal(amount).quantize(Decimal("0.01"))
    sign = "-" if value < 0 else ""
    code = (currency or "").upper()
    symbol = CURRENCY_SIGNS.get(code)
    text = f"{abs(value):,.2f}"
    if symbol:
        return f"{sign}{symbol}{text}"
    return f"{sign}{text} {code}".strip()


def qbo_type_of(row: Activity) -> str | None:
    return row.qbo_type or KIND_QBO_TYPES.get(row.kind)


def qbo_link(row: Activity, environment: str, app_host: str | None = None) -> str | None:
    """The record in QuickBooks' own app (sandbox or production host)."""
    qbo_type = qbo_type_of(row)
    if not row.qbo_id or not qbo_type or qbo_type not in QBO_APP_PATHS:
        return None
    host = app_host or QBO_APP_HOSTS.get(environment, QBO_APP_HOSTS["production"])
    return f"{host}/app/{QBO_APP_PATHS[qbo_type]}{quote(row.qbo_id, safe='')}"


def crm_link(row: Activity, crm_app_host: str | None) -> str | None:
    if row.crm_url:
        return row.crm_url
    if not crm_app_host:
        return None
    crm_id = row.crm_id or (row.entity_id if row.direction == "crm_to_qbo" else None)
    if not crm_id or crm_id == "all":
        return None
    loc = quote(row.location_id, safe="")
    rid = quote(crm_id, safe="")
    if row.kind == "invoice":
        return f"{crm_app_host}/v2/location/{loc}/payments/invoices/{rid}"
    if row.kind in ("transaction", "order"):
        return f"{crm_app_host}/v2/location/{loc}/payments/v2/transactions"
    return None


def headline(row: Activity) -> str:
    """ "Invoice #1042 · Kira Garcia · $885.00 → QuickBooks invoice 19", "Contact · Kira Garcia → CRM contact
    c81…", "Review request · Kira Garcia · Invoice #1042"."""
    what = kind_title(row.kind)
    title = row.label or (f"{what} #{row.number}" if row.number else None)
    if title is None:
        shown = row.crm_id or row.entity_id
        title = what if not shown or shown == "all" else f"{what} {shown}"
    parts = [title, row.customer, money(row.amount, row.currency)]
    noun = NUMBER_NOUNS.get(row.kind)
    if row.label and row.number and noun and row.number not in row.label:
        parts.append(f"{noun} #{row.number}")  # "Review request · Kira Garcia · Invoice #1042"
    text = " · ".join(p for p in parts if p)
    if row.qbo_id and row.direction == "crm_to_qbo":
        words = QBO_TYPE_WORDS.get(qbo_type_of(row) or "", "record")
        text += f" → QuickBooks {words} {row.qbo_id}"
    elif row.crm_id and row.direction == "qbo_to_crm" and row.kind in CRM_TARGET_WORDS:
        text += f" → CRM {CRM_TARGET_WORDS[row.kind]} {row.crm_id}"  # "Contact · Kira Garcia → CRM contact …"
    return text


def status_words(row: Activity) -> tuple[str, str]:
    """The row's status in words and its colour: a failed row that a later run fixed, or that someone
    dismissed, is no longer shown as an open failure."""
    if row.status == "failed" and row.resolved_at is not None:
        return "Failed · fixed by a later run", "resolved"
    if row.status == "failed" and row.dismissed_at is not None:
        return "Failed · dismissed", "dismissed"
    return STATUS_WORDS.get(row.status, row.status), row.status


def dismissed_text(row: Activity) -> str | None:
    """ "Dismissed by Ann Example <ann@example.com> · CRM user u1 on 2026-12-03 12:57 UTC"."""
    when = as_utc(row.dismissed_at)
    if when is None:
        return None
    return f"Dismissed by {row.dismissed_by or 'someone'} on {when:%Y-%m-%d %H:%M} UTC"


def is_open_problem(row: Activity) -> bool:
    return row.status == "failed" and row.resolved_at is None and row.dismissed_at is None


def activity_json(
    row: Activity, *, environment: str = "sandbox", crm_app_host: str | None = None, connected: bool = True
) -> dict[str, Any]:
    fix = (
        fix_for(
            code=row.fault_code,
            category=row.error_category,
            message=row.error_message,
            kind=row.kind,
            intuit_tid=row.intuit_tid,
        )
        if row.status in ("failed", "retrying")
        else None
    )
    retryable = row.status in RETRYABLE
    status_text, pill = status_words(row)
    return {
        "id": row.id,
        "location_id": row.location_id,
        "job_id": row.job_id,
        "kind": row.kind,
        "title": kind_title(row.kind),
        "headline": headline(row),
        "label": row.label,
        "number": row.number,
        "customer": row.customer,
        "amount": str(row.amount) if row.amount is not None else None,
        "amount_text": money(row.amount, row.currency),
        "currency": row.currency,
        "entity_id": row.entity_id,
        "direction": row.direction,
        "status": row.status,
        "status_text": status_text,
        "pill": pill,
        "reason": row.reason,
        "summary": row.summary,
        "attempts": row.attempts,
        "error_category": row.error_category,
        "error_message": row.error_message,
        "fault_code": row.fault_code,
        "intuit_tid": row.intuit_tid,
        "fix": fix.as_json() if fix else None,
        "crm_id": row.crm_id,
        "qbo_id": row.qbo_id,
        "qbo_type": qbo_type_of(row),
        "qbo_url": qbo_link(row, environment),
        "crm_url": crm_link(row, crm_app_host),
        "group_key": row.group_key,
        "open_problem": is_open_problem(row),
        "resolved_at": _iso(row.resolved_at),
        "dismissed_at": _iso(row.dismissed_at),
        "dismissed_by": row.dismissed_by,
        "dismissed_text": dismissed_text(row),
        "retryable": retryable and connected,
        "dismissable": is_open_problem(row) and connected,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value else None


def attempts_of(session: Session, activity_id: int) -> list[ActivityAttempt]:
    return list(
        session.execute(
            select(ActivityAttempt).where(ActivityAttempt.activity_id == activity_id).order_by(ActivityAttempt.attempt)
        ).scalars()
    )


def attempt_json(attempt: ActivityAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "started_at": _iso(attempt.started_at),
        "duration_ms": attempt.duration_ms,
        "request": attempt.request_summary,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "fault_code": attempt.fault_code,
        "intuit_tid": attempt.intuit_tid,
        "message": attempt.message,
    }


def why_not_retry(row: Activity, *, connected: bool) -> str | None:
    """None when Retry means something for the row, else the reason in words."""
    if row.status == "skipped":
        return "this row is informational (nothing needed doing); there is nothing to retry"
    if row.status not in RETRYABLE:
        return f"only failed rows can be retried; this one is {row.status}"
    if not connected:
        return "QuickBooks is not connected for this location; reconnect it before retrying"
    return None


def why_not_dismiss(row: Activity, *, connected: bool) -> str | None:
    """None when Dismiss means something for the row (an open problem, or one already dismissed: dismissing
    again changes nothing), else the reason in words."""
    if row.status == "skipped":
        return "this row is informational (nothing needed doing); there is nothing to dismiss"
    if row.status != "failed" or row.resolved_at is not None:
        state = "fixed by a later run" if row.resolved_at is not None else row.status
        return f"only open problems can be dismissed; this row is {state}"
    if not connected and row.dismissed_at is None:
        return "QuickBooks is not connected for this location; reconnect it first (what failed may then succeed)"
    return None


# ---- health ------------------------------------------------------------------------------------------------


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    moment = as_utc(moment)
    if moment is None:
        return "never"
    seconds = max(0, int(((now or utcnow()) - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    days = seconds // 86400
    return f"{days} day{'s' if days != 1 else ''} ago"


def health(session: Session, location_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Whether the books are in step: open problems, waiting work, the last sync."""
    problems = len(open_problems(session, location_id, limit=10_000))
    waiting = int(
        session.scalar(
            select(func.count()).where(
                Activity.location_id == location_id,
                Activity.status.in_(WAITING),
                Activity.direction != "internal",
            )
        )
        or 0
    )
    last = session.scalar(
        select(func.max(Activity.updated_at)).where(Activity.location_id == location_id, Activity.status == "done")
    )
    if problems:
        state = "attention"
        text = f"{problems} item{'s need' if problems != 1 else ' needs'} your attention"
    elif waiting:
        state = "catching_up"
        text = f"Catching up ({waiting} waiting)"
    else:
        state = "in_step"
        text = "All in step · " + (f"last sync {ago(last, now)}" if last else "nothing to sync yet")
    return {"state": state, "problems": problems, "waiting": waiting, "last_sync_at": _iso(last), "text": text}


# ---- CSV ---------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "kind",
    "what",
    "status",
    "customer",
    "number",
    "amount",
    "currency",
    "crm_id",
    "qbo_id",
    "attempts",
    "error_category",
    "fault_code",
    "intuit_tid",
    "summary",
    "error_message",
    "fix",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP: prefix with a single quote)."""
    if value is None:
        return ""
    text = str(value)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return text
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_rows(rows: Iterable[Activity]) -> Iterable[Sequence[str]]:
    yield CSV_COLUMNS
    for row in rows:
        fix = (
            fix_for(
                code=row.fault_code, category=row.error_category, message=row.error_message, intuit_tid=row.intuit_tid
            )
            if row.status == "failed"
            else None
        )
        values: tuple[Any, ...] = (
            row.id,
            _iso(row.created_at),
            _iso(row.updated_at),
            row.kind,
            headline(row),
            STATUS_WORDS.get(row.status, row.status),
            row.customer,
            row.number,
            row.amount,
            row.currency,
            row.crm_id,
            row.qbo_id,
            row.attempts,
            row.error_category,
            row.fault_code,
            row.intuit_tid,
            row.summary,
            row.error_message,
            fix.fix if fix else None,
        )
        yield [safe_cell(value) for value in values]


def csv_text(session: Session, location_id: str, flt: LogFilter, *, limit: int = 50_000) -> str:
    stmt = filtered(location_id, flt).order_by(Activity.id.desc()).limit(limit)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerows(csv_rows(session.execute(stmt).scalars()))
    return out.getvalue()

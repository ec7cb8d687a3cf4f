"""The full import of QuickBooks customers into CRM contacts: paged, checkpointed, resumable, paced.

- Pages through ``SELECT * FROM Customer WHERE Active = true`` ordered by Id, 1000 at a time.
- Progress lives in ``Location.state["customer_import"]`` (:class:`ImportProgress`) and is committed
  with the links written so far after every page and every :data:`FLUSH_EVERY` customers. It holds the
  page's start position and the Id of the last customer handled, so a restart re-reads that page (plus a
  small overlap, in case customers before it were made inactive meanwhile) and skips what was done.
  A crash between a CRM write and the commit costs nothing either: the replay's index holds the contact
  written before the crash, or HighLevel's duplicate answer names it, so no second contact is created.
- Each run first reads the location's contacts into a :class:`ContactIndex` (paged ``POST /contacts/search``,
  500 a call), then spends one call on a new customer (the tagged create), none on a contact that already
  holds our fields and the tag, and one or two on a contact that lacks them (:func:`import_contact`).
- No database transaction stays open while QuickBooks or HighLevel is called (SQLite's write lock would
  stall every other worker), and the lease is renewed every few seconds.
- CRM writes run :data:`CONCURRENCY` at a time (so the network's latency does not cap the rate), paced by
  the CRM client's shared per-location budget, which follows HighLevel's own rate-limit headers
  (``qbconnect.ratelimit``); the import may fill :data:`IMPORT_BUDGET_SHARE` of it, so live syncs of the
  same location always find room.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.clock import utcnow
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Location
from qbconnect.domain import location_settings
from qbconnect.domain.contact_plan import Action, ContactPlan, plan_contact
from qbconnect.domain.customer import normalize_email
from qbconnect.errors import PermanentError
from qbconnect.qbo.client import QboClient
from qbconnect.ratelimit import RateLimiter
from qbconnect.sync.contacts.state import IMPORT_KEY, ContactSetup, read_state, write_state
from qbconnect.sync.contacts.write import ContactIndex, ContactWrite, import_contact
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.routing import CUSTOMER_IMPORT
from qbconnect.sync.links.customers import LinkIndex, load_index, record_contact

CUSTOMER_SELECT = "SELECT * FROM Customer WHERE Active = true"
CUSTOMER_COUNT = "SELECT COUNT(*) FROM Customer WHERE Active = true"
PAGE_SIZE = 1000
OVERLAP = 25  # positions re-read before a page, in case customers before it became inactive meanwhile
FLUSH_EVERY = 100  # customers between commits of links and progress inside a page
CONCURRENCY = 4
LIST_CAP = 100  # entries kept in the skipped/failed lists
HEARTBEAT_SECONDS = 10.0
IMPORT_BUDGET_SHARE = 0.9  # of the location's CRM request budget; the rest stays free for live syncs


def id_key(value: str | None) -> tuple[int, int, str]:
    """QuickBooks' ``ORDERBY Id`` order: numeric ids by value."""
    text = str(value or "")
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass
class ImportProgress:
    """``Location.state["customer_import"]``: what the settings page and ``qbconnect status`` show."""

    status: str = "queued"  # queued | running | interrupted | done
    run: int = 0
    realm_id: str | None = None
    reason: str | None = None
    total: int | None = None
    done: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    crm_calls: int = 0
    skipped_without_email: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    next_start: int = 1  # STARTPOSITION of the page being imported
    last_id: str | None = None  # every customer up to this Id is handled
    rate: float | None = None  # customers per second in the current run
    eta: int | None = None  # seconds left at that rate
    error: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    completed_at: str | None = None  # when an import last finished (kept across runs)
    segment_started_at: str | None = None  # the rate counts from the latest (re)start
    segment_done: int = 0

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> ImportProgress:
        known = {f.name for f in fields(cls)}
        progress = cls()
        for key, value in raw.items():
            if key in known and value is not None:
                setattr(progress, key, value)
        return progress

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def resumable(self) -> bool:
        return self.status in ("running", "interrupted")

    def restart(self, *, realm_id: str | None, reason: str | None, total: int, now: datetime) -> None:
        """Begin a new import from the first customer (counters reset, ``completed_at`` kept)."""
        completed_at, run, queued_at = self.completed_at, self.run, self.queued_at
        fresh = ImportProgress(
            status="running",
            run=run + 1,
            realm_id=realm_id,
            reason=reason,
            total=total,
            queued_at=queued_at,
            started_at=_iso(now),
            completed_at=completed_at,
        )
        self.__dict__.update(fresh.__dict__)

    def begin_segment(self, now: datetime) -> None:
        self.status = "running"
        self.error = None
        self.segment_started_at = _iso(now)
        self.segment_done = self.done
        self.rate = None
        self.eta = None

    def touch(self, now: datetime) -> None:
        self.updated_at = _iso(now)
        started = _parse_time(self.segment_started_at)
        if started is None:
            return
        elapsed = (now - started).total_seconds()
        handled = self.done - self.segment_done
        if elapsed > 0 and handled > 0:
            self.rate = round(handled / elapsed, 2)
            if self.total is not None:
                self.eta = int(max(0, self.total - self.done) / self.rate)
        if self.total is not None and self.done > self.total:
            self.total = self.done  # customers added while importing

    def finish(self, now: datetime) -> None:
        self.touch(now)
        self.status = "done"
        self.eta = 0
        self.total = self.done if self.total is None or self.total < self.done else self.total
        self.finished_at = _iso(now)
        self.completed_at = self.finished_at

    def summary(self) -> str:
        parts = [
            f"{self.created} new contacts",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
            f"{self.skipped} skipped",
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        return f"Imported {self.done} QuickBooks customers: " + ", ".join(parts)


@dataclass(frozen=True)
class _Done:
    plan: ContactPlan
    write: ContactWrite | None = None
    error: Exception | None = None


def first_page(qbo: QboClient, start: int) -> list[dict[str, Any]]:
    for _, page in qbo.query_pages(CUSTOMER_SELECT, page_size=PAGE_SIZE, start=start):
        return page
    return []


class CustomerImport:
    """One run of the import job (a fresh start or a resumption)."""

    def __init__(
        self,
        ctx: JobContext,
        setup: ContactSetup,
        qbo: QboClient,
        crm: CrmClient,
        *,
        limiter: RateLimiter | None = None,
        clock: Any = utcnow,
    ) -> None:
        """``limiter`` is the one the CRM client draws from already (kept for callers that pass it)."""
        self.ctx = ctx
        self.setup = setup
        self.qbo = qbo
        self.crm = crm
        crm.budget_share = IMPORT_BUDGET_SHARE
        self.limiter = limiter
        self.clock = clock
        self.tag = setup.settings.contact_tag
        self.index = ContactIndex(self.tag, by_phone=setup.settings.contacts_without_email == "phone")
        self._index_loaded = False
        self.progress = ImportProgress()
        self._pending: list[tuple[ContactPlan, ContactWrite]] = []
        self._since_flush = 0
        self._last_heartbeat = time.monotonic()

    # ---- the run -----------------------------------------------------------------------------------

    def run(self) -> Result:
        ctx = self.ctx
        with ctx.unit() as session:
            self.progress = ImportProgress.from_state(read_state(session, ctx.location_id, IMPORT_KEY))
        if not (self.progress.resumable and self.progress.realm_id == self.setup.realm_id):
            total = self.qbo.count(CUSTOMER_COUNT)
            self.progress.restart(realm_id=self.setup.realm_id, reason=ctx.reason, total=total, now=self.clock())
        self.progress.begin_segment(self.clock())
        self._save()
        try:
            with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="contact-import") as pool:
                self._pages(pool)
        except jobs.LeaseLostError:
            raise  # another worker owns the import now: write nothing more
        except Exception as exc:
            self._save_interrupted(exc)
            raise
        self.progress.finish(self.clock())
        self._save()
        return Result(self.progress.summary())

    def _pages(self, pool: ThreadPoolExecutor) -> None:
        progress = self.progress
        while True:
            self._heartbeat(force=True)
            start = max(1, progress.next_start - OVERLAP) if progress.last_id else progress.next_start
            page = first_page(self.qbo, start)
            last = id_key(progress.last_id) if progress.last_id else None
            todo = [c for c in page if last is None or id_key(str(c.get("Id"))) > last]
            self.ctx.log.info(
                "contact_import.page", realm_id=self.setup.realm_id, start=start, size=len(page), new=len(todo)
            )
            if todo:
                self._page(pool, todo)
            progress.next_start = start + len(page)
            self._save()
            if len(page) < PAGE_SIZE:
                return

    def _load_index(self) -> None:
        """The location's contacts by email, read once per run when the first customer needs a write (a run
        with nothing to write reads nothing; a resumed run reads them again)."""
        if self._index_loaded:
            return
        self._index_loaded = True
        self.index.load(self.crm, on_page=self._heartbeat)
        self.progress.crm_calls += self.index.calls
        self.ctx.log.info(
            "contact_import.index",
            contacts=len(self.index.emails) + len(self.index.phones),
            calls=self.index.calls,
        )

    def _heartbeat(self, *, force: bool = False) -> None:
        if force or time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self.ctx.heartbeat()
            self._last_heartbeat = time.monotonic()

    # ---- one page ----------------------------------------------------------------------------------

    def _page(self, pool: ThreadPoolExecutor, todo: list[dict[str, Any]]) -> None:
        """Plan every customer of the page, hand all writes to the pool at once (it runs
        :data:`CONCURRENCY`), and take the results in Id order as they come, so the writers never wait for
        the bookkeeping and progress is committed every :data:`FLUSH_EVERY` customers."""
        ctx = self.ctx
        emails = [email for email in (_email_of(c) for c in todo) if email]
        with ctx.unit() as session:
            index = load_index(session, ctx.location_id, [str(c.get("Id")) for c in todo], emails)
        plans = [self._plan(customer, index) for customer in todo]
        if any(plan.action is Action.WRITE for plan in plans):
            self._load_index()
        entries: list[tuple[ContactPlan, Future[ContactWrite] | None]] = []
        in_flight: dict[str, Future[ContactWrite]] = {}
        for plan in plans:
            future: Future[ContactWrite] | None = None
            if plan.action is Action.WRITE:
                # Two customers with one email must not be upserted at once (HighLevel could create two
                # contacts): the second waits for the first.
                future = pool.submit(self._write, plan, in_flight.get(plan.match_key))
                in_flight[plan.match_key] = future
            entries.append((plan, future))
        handled = 0
        try:
            for plan, future in entries:
                self._account(self._outcome(plan, future))
                handled += 1
                if self._since_flush >= FLUSH_EVERY:
                    self._save()
                self._heartbeat()
        except Exception:  # transient, auth, lease…: keep what succeeded, then stop
            self._stop_after(entries[handled + 1 :])
            raise
        except BaseException:  # the process is going down: start nothing more
            for _, future in entries:
                if future is not None:
                    future.cancel()
            raise

    def _plan(self, customer: dict[str, Any], index: LinkIndex) -> ContactPlan:
        qbo_id = str(customer.get("Id"))
        return plan_contact(
            customer,
            index.match(qbo_id, _email_of(customer)),
            without_email=self.setup.settings.contacts_without_email,
            realm_id=self.setup.realm_id,
        )

    def _write(self, plan: ContactPlan, after: Future[ContactWrite] | None) -> ContactWrite:
        if after is not None:
            wait([after])
        return import_contact(self.crm, plan, self.index)

    @staticmethod
    def _outcome(plan: ContactPlan, future: Future[ContactWrite] | None) -> _Done:
        if future is None:
            return _Done(plan)
        try:
            return _Done(plan, write=future.result())
        except PermanentError as exc:
            return _Done(plan, error=exc)  # this customer only; the import goes on

    def _stop_after(self, rest: list[tuple[ContactPlan, Future[ContactWrite] | None]]) -> None:
        """Cancel the writes not started; keep the links of those that finished (not yet counted: a
        restart finds them unchanged and spends no call on them)."""
        for _, future in rest:
            if future is not None:
                future.cancel()
        for plan, future in rest:
            if future is None or future.cancelled() or future.exception() is not None:
                continue
            self._pending.append((plan, future.result()))

    def _account(self, done: _Done) -> None:
        progress = self.progress
        plan = done.plan
        if done.write is not None:
            self._pending.append((plan, done.write))
            progress.crm_calls += done.write.calls
            if done.write.created:
                progress.created += 1
            elif done.write.calls:
                progress.updated += 1
            else:
                progress.unchanged += 1  # HighLevel holds our fields and the tag already: linked, not written
        elif done.error is not None:
            progress.failed += 1
            if len(progress.failures) < LIST_CAP:
                progress.failures.append({"id": plan.qbo_id, "name": plan.label, "error": str(done.error)})
        elif plan.action is Action.UNCHANGED:
            progress.unchanged += 1
        else:
            progress.skipped += 1
            no_email = plan.action in (Action.SKIP_NO_EMAIL, Action.SKIP_NO_CONTACT_INFO)
            if no_email and len(progress.skipped_without_email) < LIST_CAP:
                progress.skipped_without_email.append({"id": plan.qbo_id, "name": plan.label})
        progress.done += 1
        progress.last_id = plan.qbo_id
        self._since_flush += 1

    # ---- saving progress -------------------------------------------------------------------------------

    def _save(self) -> None:
        """Commit the links written so far together with the progress that counts them."""
        ctx = self.ctx
        with ctx.unit() as session:
            self._record(session)
        self._pending.clear()
        self._since_flush = 0

    def _record(self, session: Session) -> None:
        ctx = self.ctx
        for plan, write in self._pending:
            record_contact(
                session,
                ctx.location_id,
                contact_id=write.contact_id,
                qbo_id=plan.qbo_id,
                email=plan.email,
                content_hash=plan.content_hash,
                realm_id=self.setup.realm_id,
                phone=plan.phone if not plan.email else None,
                currency=plan.currency,
            )
        self.progress.touch(self.clock())
        write_state(session, ctx.location_id, IMPORT_KEY, self.progress.to_state())

    def _save_interrupted(self, exc: Exception) -> None:
        try:
            self.progress.status = "interrupted"
            self.progress.error = str(exc) or type(exc).__name__
            self._save()
        except Exception:
            self.ctx.log.exception("contact_import.checkpoint_failed")


def _email_of(customer: dict[str, Any]) -> str | None:
    node = customer.get("PrimaryEmailAddr")
    return normalize_email(node.get("Address")) if isinstance(node, dict) else None


def start_customer_import(session: Session, location_id: str, reason: str) -> int | None:
    """Queue the full import (coalesced: one per location). An unfinished import resumes where it stopped;
    otherwise a new one starts from the first customer. Returns the job id, or None when the location has
    contact import turned off (or does not exist)."""
    location = session.get(Location, location_id)
    if location is None or not location_settings.load(location.settings).import_contacts:
        return None
    progress = ImportProgress.from_state(read_state(session, location_id, IMPORT_KEY))
    if not progress.resumable:
        progress.status = "queued"
        progress.reason = reason
        progress.queued_at = _iso(utcnow())
        progress.done, progress.total, progress.rate, progress.eta = 0, None, None, None
        write_state(session, location_id, IMPORT_KEY, progress.to_state())
    return jobs.enqueue(session, location_id, CUSTOMER_IMPORT, "all", reason)


def import_ever_completed(state: dict[str, Any]) -> bool:
    raw = state.get(IMPORT_KEY)
    return isinstance(raw, dict) and bool(raw.get("completed_at"))

"""The full import of QuickBooks customers into CRM contacts: paged, checkpointed, resumable, paced.

- Pages through ``SELECT * FROM Customer WHERE Active = true`` ordered by Id, 1000 at a time.
- Progress lives in ``Location.state["customer_import"]`` (:class:`ImportProgress`) and is committed
  with the links written so far after every page and every :data:`FLUSH_EVERY` customers. It holds the
  page's start position and the Id of the last customer handled, so a restart re-reads that page (plus a
  small overlap, in case customers before it were made inactive meanwhile) and skips what was done.
  A crash between a CRM write and the commit costs nothing either: the upsert matches by email, so the
  replay finds the contact instead of creating a second one.
- No database transaction stays open while QuickBooks or HighLevel is called (SQLite's write lock would
  stall every other worker), and the lease is renewed every few seconds.
- CRM writes run :data:`CONCURRENCY` at a time (so the network's latency does not cap the rate) and draw
  from :data:`IMPORT_BUDGET`, 95 requests per 10 s — just under HighLevel's 100 per 10 s — on top of the
  client's shared per-location budget, so the import never causes a 429 and leaves room for live syncs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from limits import parse
from sqlalchemy.orm import Session

from qbconnect import location_settings
from qbconnect.clock import utcnow
from qbconnect.crm.client import CrmClient
from qbconnect.db.models import Location
from qbconnect.domain.customer import normalize_email
from qbconnect.errors import PermanentError
from qbconnect.qbo.client import QboClient
from qbconnect.ratelimit import Budget, RateLimiter
from qbconnect.sync import jobs
from qbconnect.sync.contact_links import LinkIndex, load_index, record_contact
from qbconnect.sync.contact_state import IMPORT_KEY, ContactSetup, read_state, write_state
from qbconnect.sync.contact_sync import Action, ContactPlan, ContactWrite, plan_contact, write_contact
from qbconnect.sync.context import JobContext, Result
from qbconnect.sync.routing import CUSTOMER_IMPORT

CUSTOMER_SELECT = "SELECT * FROM Customer WHERE Active = true"
CUSTOMER_COUNT = "SELECT COUNT(*) FROM Customer WHERE Active = true"
PAGE_SIZE = 1000
OVERLAP = 25  # positions re-read before a page, in case customers before it became inactive meanwhile
BATCH_SIZE = 40  # customers planned together (one link query) and written concurrently
FLUSH_EVERY = 200  # customers between commits of links and progress inside a page
CONCURRENCY = 4
LIST_CAP = 100  # entries kept in the skipped/failed lists
HEARTBEAT_SECONDS = 10.0
IMPORT_BUDGET = Budget("crm-import", (parse("95/10 seconds"),))


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


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


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
        limiter: RateLimiter | None,
        clock: Any = utcnow,
    ) -> None:
        self.ctx = ctx
        self.setup = setup
        self.qbo = qbo
        self.crm = crm
        self.limiter = limiter
        self.clock = clock
        self.tag = setup.settings.contact_tag
        self.progress = ImportProgress()
        self._pending: list[tuple[ContactPlan, ContactWrite]] = []
        self._since_flush = 0
        self._last_heartbeat = time.monotonic()

    # ---- the run -----------------------------------------------------------------------------------

    def run(self) -> Result:
        ctx = self.ctx
        self.progress = ImportProgress.from_state(read_state(ctx.session, ctx.location_id, IMPORT_KEY))
        ctx.checkpoint()  # end the read transaction before calling QuickBooks
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
            self.ctx.heartbeat()
            self._last_heartbeat = time.monotonic()
            start = max(1, progress.next_start - OVERLAP) if progress.last_id else progress.next_start
            page = first_page(self.qbo, start)
            last = id_key(progress.last_id) if progress.last_id else None
            todo = [c for c in page if last is None or id_key(str(c.get("Id"))) > last]
            self.ctx.log.info(
                "contact_import.page", realm_id=self.setup.realm_id, start=start, size=len(page), new=len(todo)
            )
            for batch in _chunks(todo, BATCH_SIZE):
                self._batch(pool, batch)
                if self._since_flush >= FLUSH_EVERY:
                    self._save()
                if time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
                    self.ctx.heartbeat()
                    self._last_heartbeat = time.monotonic()
            progress.next_start = start + len(page)
            self._save()
            if len(page) < PAGE_SIZE:
                return

    # ---- one batch ---------------------------------------------------------------------------------

    def _batch(self, pool: ThreadPoolExecutor, batch: list[dict[str, Any]]) -> None:
        ctx = self.ctx
        emails = [email for email in (_email_of(c) for c in batch) if email]
        index = load_index(ctx.session, ctx.location_id, [str(c.get("Id")) for c in batch], emails)
        ctx.checkpoint()  # release the read before the CRM calls
        outcomes: dict[str, _Done] = {}
        remaining = batch
        fatal: Exception | None = None
        while remaining and fatal is None:
            wave, later, keys = [], [], set()
            for customer in remaining:
                plan = self._plan(customer, index)
                if plan.action is Action.WRITE:
                    if plan.match_key in keys:
                        later.append(customer)  # same email as one in flight: after it, seeing its link
                        continue
                    keys.add(plan.match_key)
                wave.append(plan)
            fatal = self._wave(pool, wave, outcomes, index)
            remaining = later
        self._account(batch, outcomes)
        if fatal is not None:
            raise fatal

    def _plan(self, customer: dict[str, Any], index: LinkIndex) -> ContactPlan:
        qbo_id = str(customer.get("Id"))
        return plan_contact(
            customer,
            index.match(qbo_id, _email_of(customer)),
            without_email=self.setup.settings.contacts_without_email,
            realm_id=self.setup.realm_id,
        )

    def _wave(
        self, pool: ThreadPoolExecutor, wave: list[ContactPlan], outcomes: dict[str, _Done], index: LinkIndex
    ) -> Exception | None:
        futures: list[tuple[ContactPlan, Future[ContactWrite]]] = []
        for plan in wave:
            if plan.action is Action.WRITE:
                futures.append((plan, pool.submit(self._write, plan)))
            else:
                outcomes[plan.qbo_id] = _Done(plan)
        fatal: Exception | None = None
        for plan, future in futures:
            try:
                write = future.result()
            except PermanentError as exc:
                outcomes[plan.qbo_id] = _Done(plan, error=exc)  # this customer only; the import goes on
                continue
            except Exception as exc:  # transient, auth, lease…: stop after this wave, keep what succeeded
                fatal = fatal or exc
                continue
            outcomes[plan.qbo_id] = _Done(plan, write=write)
            index.note(
                contact_id=write.contact_id,
                qbo_id=plan.qbo_id,
                email=plan.email,
                content_hash=plan.content_hash,
                realm_id=self.setup.realm_id,
            )
            self._pending.append((plan, write))
        return fatal

    def _write(self, plan: ContactPlan) -> ContactWrite:
        return write_contact(self.crm, plan, tag=self.tag, limiter=self.limiter, budget=IMPORT_BUDGET)

    def _account(self, batch: list[dict[str, Any]], outcomes: dict[str, _Done]) -> None:
        """Count the batch in Id order up to the first customer without an outcome (a stop)."""
        progress = self.progress
        for customer in sorted(batch, key=lambda c: id_key(str(c.get("Id")))):
            done = outcomes.get(str(customer.get("Id")))
            if done is None:
                return
            plan = done.plan
            if done.write is not None:
                progress.crm_calls += done.write.calls
                if done.write.created:
                    progress.created += 1
                else:
                    progress.updated += 1
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

    # ---- checkpoints -------------------------------------------------------------------------------

    def _save(self) -> None:
        """Commit the links written so far together with the progress that counts them."""
        ctx = self.ctx
        for plan, write in self._pending:
            record_contact(
                ctx.session,
                ctx.location_id,
                contact_id=write.contact_id,
                qbo_id=plan.qbo_id,
                email=plan.email,
                content_hash=plan.content_hash,
                realm_id=self.setup.realm_id,
                phone=plan.phone if not plan.email else None,
            )
        self.progress.touch(self.clock())
        write_state(ctx.session, ctx.location_id, IMPORT_KEY, self.progress.to_state())
        ctx.checkpoint()
        ctx.session.expunge_all()  # keep memory flat over 100,000 customers
        self._pending.clear()
        self._since_flush = 0

    def _save_interrupted(self, exc: Exception) -> None:
        try:
            self.ctx.session.rollback()
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

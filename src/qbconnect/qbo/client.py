"""Thin typed client for the QuickBooks Online Accounting API v3 (one company = one realm).

The client owns everything about talking to QuickBooks: URLs, ``minorversion``, ``requestid`` on writes,
the bearer token (refresh once after a 401), the per-company rate budget, retries with backoff for
throttling, server errors and network failures, and turning error answers into :mod:`faults`.
It returns Intuit's JSON objects as dicts; JSON decimals come back as :class:`decimal.Decimal`.

Pacing: every attempt waits out the company's pause, holds one of :data:`QBO_CONCURRENCY` request slots
while it is in flight and draws from the per-minute/per-second budget (``ratelimit``; shared by every
thread and, on Redis, every process). A 429 is a *pacing fault*: it is logged as such and pauses the
whole company for Intuit's 60 s (or the ``Retry-After`` it sends, when longer).

Reads (GET, query, CDC) are what Intuit meters; ``on_request`` is told the kind of every request sent, and
a read marked ``essential=False`` first asks ``read_guard``, which refuses it (:class:`ReadBudgetExhausted`)
once the app's monthly read budget is spent. Writes are never refused.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import structlog

from qbconnect.domain import jsonutil
from qbconnect.errors import ErrorCategory, PermanentError, TransientError
from qbconnect.qbo.faults import AuthenticationFailed, QboFault, Throttled, fault_in_body, parse_fault
from qbconnect.qbo.tokens import TokenSource
from qbconnect.ratelimit import QBO_BATCH_BUDGET, QBO_BUDGET, QBO_CONCURRENCY, Gate, RateLimiter

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

MINOR_VERSION = 75
MAX_REQUEST_ID_LENGTH = 50
MAX_PAGE_SIZE = 1000

# Payment-like transactions are voided with a sparse update that includes "void"; Invoice has its own
# operation (Intuit API reference; python-quickbooks VoidMixin does the same).
_VOID_BY_OPERATION = {"invoice"}
_VOID_BY_UPDATE = {"payment", "salesreceipt", "refundreceipt", "billpayment"}

# What ``on_request`` is told; the first three are the reads Intuit meters (App Partner Program "CorePlus").
READ, QUERY, CDC, WRITE, BATCH = "read", "query", "cdc", "write", "batch"
METERED_READS = frozenset({READ, QUERY, CDC})

_ENTITY_NAME = re.compile(r"^[A-Za-z]+$")
_QUERY_METADATA = {"startposition", "maxresults", "totalcount"}


def escape_query_value(value: str) -> str:
    """Escape a value for a single-quoted query literal (Intuit: backslash before ``'``)."""
    return value.replace("'", "\\'")


class ReadBudgetExhausted(TransientError):
    """A read marked non-essential was refused: the app's monthly QuickBooks read budget is spent."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, code="read_budget", retry_after=retry_after)


class QboClient:
    def __init__(
        self,
        *,
        realm_id: str,
        api_base: str,
        tokens: TokenSource,
        http: httpx.Client | None = None,
        limiter: RateLimiter | None = None,
        minorversion: int = MINOR_VERSION,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        throttle_wait: float = 60.0,
        retry_wait: float = 1.0,
        gate: Gate | None = None,
        concurrency: int = QBO_CONCURRENCY,
        on_request: Callable[[str], None] | None = None,
        read_guard: Callable[[str], None] | None = None,
        pacing_timeout: float = 120.0,
    ) -> None:
        self.realm_id = realm_id
        self._company_url = f"{api_base.rstrip('/')}/v3/company/{quote(realm_id, safe='')}"
        self._tokens = tokens
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=httpx.Timeout(30.0, read=120.0))
        self._limiter = limiter
        self._minorversion = minorversion
        self._max_retries = max_retries
        self._sleep = sleep
        self._throttle_wait = throttle_wait
        self._retry_wait = retry_wait
        self._gate = gate
        self._concurrency = concurrency
        self._on_request = on_request
        self._read_guard = read_guard
        self._pacing_timeout = pacing_timeout
        self.calls = 0

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> QboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads -------------------------------------------------------------------------------

    # ``essential=False`` marks a read the product can do without (a safety sweep, a pre-flight check, a
    # discovery poll): it is refused once the monthly read budget is spent.

    def read(self, entity: str, entity_id: str, *, essential: bool = True) -> dict[str, Any]:
        path = f"{_entity_path(entity)}/{quote(entity_id, safe='')}"
        payload = self._send("GET", path, entity=entity, kind=READ, essential=essential)
        return _entity_in(payload, entity)

    def query(self, statement: str, *, essential: bool = True) -> list[dict[str, Any]]:
        """Run a query; the matching objects (empty list when none)."""
        response = self._query_response(statement, essential=essential)
        for key, value in response.items():
            if key.lower() not in _QUERY_METADATA and isinstance(value, list):
                return value
        return []

    def query_pages(
        self, select: str, *, page_size: int = MAX_PAGE_SIZE, start: int = 1, essential: bool = True
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(start position, page)`` for ``select`` ordered by Id until a page comes back short."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if start < 1:
            raise ValueError("start positions are 1-based")
        position = start
        while True:
            page = self.query(
                f"{select} ORDERBY Id STARTPOSITION {position} MAXRESULTS {page_size}", essential=essential
            )
            yield position, page
            if len(page) < page_size:
                return
            position += page_size

    def count(self, statement: str, *, essential: bool = True) -> int:
        """Run a ``SELECT COUNT(*) FROM …`` statement."""
        response = self._query_response(statement, essential=essential)
        for key, value in response.items():
            if key.lower() == "totalcount":
                return int(value)
        return 0

    def cdc(
        self, entities: Sequence[str], changed_since: datetime, *, essential: bool = True
    ) -> tuple[dict[str, list[dict[str, Any]]], datetime]:
        """Objects changed since ``changed_since`` grouped by entity, and the server's ``time``.

        Deleted objects keep ``"status": "Deleted"``. Intuit looks back at most 30 days and returns at
        most 1000 objects per answer: callers split the window when an answer is that large.
        """
        if not entities:
            raise ValueError("cdc needs at least one entity")
        if changed_since.tzinfo is None:
            raise ValueError("changed_since must be timezone-aware")
        for entity in entities:
            _entity_path(entity)
        since = changed_since.astimezone(UTC).isoformat(timespec="seconds")
        payload = self._send(
            "GET",
            "cdc",
            params={"entities": ",".join(entities), "changedSince": since},
            entity="cdc",
            kind=CDC,
            essential=essential,
        )
        names = {entity.lower(): entity for entity in entities}
        changed: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for block in _list(payload.get("CDCResponse")):
            for response in _list(block.get("QueryResponse") if isinstance(block, dict) else None):
                if not isinstance(response, dict):
                    continue
                for key, value in response.items():
                    if key.lower() in _QUERY_METADATA or not isinstance(value, list):
                        continue
                    changed.setdefault(names.get(key.lower()) or key, []).extend(value)
        server_time = payload.get("time")
        if not isinstance(server_time, str):
            raise PermanentError("QuickBooks answered the change query without a server time")
        try:
            parsed = datetime.fromisoformat(server_time)
        except ValueError as exc:
            raise PermanentError(f"QuickBooks answered the change query with a bad time {server_time!r}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return changed, parsed.astimezone(UTC)

    def company_info(self, *, essential: bool = True) -> dict[str, Any]:
        path = f"companyinfo/{quote(self.realm_id, safe='')}"
        payload = self._send("GET", path, entity="CompanyInfo", kind=READ, essential=essential)
        return _entity_in(payload, "CompanyInfo")

    def preferences(self, *, essential: bool = True) -> dict[str, Any]:
        payload = self._send("GET", "preferences", entity="Preferences", kind=READ, essential=essential)
        return _entity_in(payload, "Preferences")

    # ---- writes (each carries the caller's requestid, so a retry replays instead of repeating) --

    def create(self, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        payload = self._send("POST", _entity_path(entity), body=body, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def update(self, entity: str, body: dict[str, Any], *, request_id: str, sparse: bool = True) -> dict[str, Any]:
        """Update an object; ``body`` has ``Id`` and the current ``SyncToken``.

        ``sparse`` changes only the fields sent; a full update clears every writable field left out.
        """
        if not body.get("Id") or body.get("SyncToken") in (None, ""):
            raise ValueError("an update needs the object's Id and current SyncToken")
        sent = {key: value for key, value in body.items() if key != "sparse"}
        if sparse:
            sent["sparse"] = True
        payload = self._send("POST", _entity_path(entity), body=sent, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def void(self, entity: str, entity_id: str, sync_token: str, *, request_id: str) -> dict[str, Any]:
        path = _entity_path(entity)
        body: dict[str, Any] = {"Id": entity_id, "SyncToken": sync_token}
        if path in _VOID_BY_OPERATION:
            params = {"operation": "void"}
        elif path in _VOID_BY_UPDATE:
            params = {"operation": "update", "include": "void"}
            body["sparse"] = True
        else:
            raise ValueError(f"QuickBooks cannot void a {entity}")
        payload = self._send("POST", path, params=params, body=body, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def delete(self, entity: str, entity_id: str, sync_token: str, *, request_id: str) -> dict[str, Any]:
        payload = self._send(
            "POST",
            _entity_path(entity),
            params={"operation": "delete"},
            body={"Id": entity_id, "SyncToken": sync_token},
            request_id=request_id,
            entity=entity,
        )
        return _entity_in(payload, entity)

    # ---- transport -----------------------------------------------------------------------------

    def _query_response(self, statement: str, *, essential: bool) -> dict[str, Any]:
        payload = self._send(
            "GET", "query", params={"query": statement}, entity="query", kind=QUERY, essential=essential
        )
        response = payload.get("QueryResponse")
        return response if isinstance(response, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        *,
        entity: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        request_id: str | None = None,
        kind: str | None = None,
        essential: bool = True,
    ) -> dict[str, Any]:
        if kind is None:
            kind = (BATCH if path == "batch" else WRITE) if method != "GET" else READ
        if not essential and kind in METERED_READS and self._read_guard is not None:
            self._read_guard(kind)
        query = {"minorversion": str(self._minorversion), **(params or {})}
        if method != "GET":
            if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
                raise ValueError(f"every write needs a requestid of 1 to {MAX_REQUEST_ID_LENGTH} characters")
            query["requestid"] = request_id
        headers = {"Accept": "application/json"}
        content: bytes | None = None
        if body is not None:
            content = jsonutil.dumps(body)
            headers["Content-Type"] = "application/json"
        url = f"{self._company_url}/{path}"
        bound = log.bind(realm_id=self.realm_id, entity=entity, request_id=request_id)

        retries = 0
        refreshed = False
        waited = False  # this attempt follows our own 429 wait: the pause is already waited out
        token: str | None = None
        while True:
            if token is None:
                token = self._tokens.access_token()
            if not waited:
                self._wait_out_pause()
            waited = False
            try:
                with self._slot():
                    self._draw_budget(path)
                    if self._on_request is not None:
                        self._on_request(kind)
                    self.calls += 1
                    response = self._http.request(
                        method,
                        url,
                        params=query,
                        content=content,
                        headers={**headers, "Authorization": f"Bearer {token}"},
                    )
            except httpx.TransportError as exc:
                if retries < self._max_retries:
                    wait = self._backoff(self._retry_wait, retries)
                    bound.warning("qbo.retry", reason=type(exc).__name__, attempt=retries + 1, wait=wait)
                    self._sleep(wait)
                    retries += 1
                    token = None
                    continue
                bound.warning("qbo.unreachable", reason=type(exc).__name__, attempts=retries + 1)
                raise TransientError(
                    f"Could not reach QuickBooks ({type(exc).__name__}) after {retries + 1} tries; "
                    "it will be retried later",
                    code="network",
                ) from exc

            intuit_tid = response.headers.get("intuit_tid")
            payload = _json_body(response) if response.is_success else None
            if payload is not None and not fault_in_body(payload):
                bound.debug("qbo.ok", method=method, path=path, status=response.status_code, intuit_tid=intuit_tid)
                return payload
            if response.is_success and payload is None:
                raise TransientError(
                    "QuickBooks sent an unreadable answer; it will be retried later", code="bad_response"
                )

            fault = parse_fault(
                response.status_code, response.content, response.headers.get("content-type", ""), intuit_tid
            )
            if isinstance(fault, AuthenticationFailed) and not refreshed:
                bound.info("qbo.token_refused", intuit_tid=intuit_tid)
                refreshed = True
                token = self._tokens.force_refresh(token)
                continue
            pause = self._pacing_fault(bound, response, retries) if isinstance(fault, Throttled) else None
            if fault.category is ErrorCategory.TRANSIENT and retries < self._max_retries:
                wait = pause if pause is not None else self._wait_for(response, retries)
                waited = pause is not None
                bound.warning(
                    "qbo.retry",
                    reason=type(fault).__name__,
                    status=response.status_code,
                    code=fault.code,
                    intuit_tid=intuit_tid,
                    attempt=retries + 1,
                    wait=wait,
                )
                self._sleep(wait)
                retries += 1
                token = None
                continue
            _log_fault(bound, fault)
            raise fault

    def _wait_for(self, response: httpx.Response, retries: int) -> float:
        wait = self._backoff(self._retry_wait, retries)
        retry_after = _retry_after(response)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def _throttle_pause(self, response: httpx.Response, retries: int) -> float:
        """Intuit: "wait 60 seconds before retrying" (longer when it says so in ``Retry-After``)."""
        wait = self._backoff(self._throttle_wait, retries)
        retry_after = _retry_after(response)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    def _pacing_fault(self, bound: Any, response: httpx.Response, retries: int) -> float:
        """A 429 means our pacing let too much through: the whole company backs off (the pause, returned),
        and it is logged."""
        pause = self._throttle_pause(response, retries)
        # One shared pause: the gate's, which every request of every process waits out before it draws.
        # (Holding the rate budget as well would turn a waited-out pause into a "budget full" failure.)
        if self._gate is not None:
            self._gate.pause(QBO_BUDGET, self.realm_id, pause)
        elif self._limiter is not None:
            self._limiter.penalize(QBO_BUDGET, self.realm_id, pause)
        bound.warning(
            "qbo.pacing_fault",
            status=response.status_code,
            retry_after=response.headers.get("retry-after"),
            pause=round(pause, 3),
            intuit_tid=response.headers.get("intuit_tid"),
        )
        return pause

    def _wait_out_pause(self) -> None:
        if self._gate is None:
            return
        left = self._gate.paused_for(QBO_BUDGET, self.realm_id)
        if left > 0:
            self._sleep(left)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the company's request slots for as long as the request is in flight."""
        gate = self._gate
        if gate is None:
            yield
            return
        token = self._pacing(
            lambda: gate.take(QBO_BUDGET, self.realm_id, self._concurrency, timeout=self._pacing_timeout)
        )
        try:
            yield
        finally:
            gate.give_back(QBO_BUDGET, self.realm_id, token)

    def _draw_budget(self, path: str) -> None:
        if self._limiter is None:
            return
        limiter, timeout = self._limiter, self._pacing_timeout
        self._pacing(lambda: limiter.acquire(QBO_BUDGET, self.realm_id, timeout=timeout))
        if path == "batch":
            self._pacing(lambda: limiter.acquire(QBO_BATCH_BUDGET, self.realm_id, timeout=timeout))

    @staticmethod
    def _pacing(take: Callable[[], _T]) -> _T:
        try:
            return take()
        except TimeoutError as exc:
            raise TransientError(
                "QuickBooks' request budget for this company stayed full; it will be retried later",
                code="pacing",
                retry_after=60.0,
            ) from exc

    @staticmethod
    def _backoff(base: float, retries: int) -> float:
        wait: float = base * (2**retries)
        return wait + random.uniform(0, wait * 0.25)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), when sent; Intuit documents none."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _log_fault(bound: Any, fault: QboFault) -> None:
    bound.warning(
        "qbo.fault",
        fault=type(fault).__name__,
        status=fault.status,
        code=fault.code,
        category=str(fault.category),
        intuit_tid=fault.intuit_tid,
    )


def _entity_path(entity: str) -> str:
    if not _ENTITY_NAME.match(entity):
        raise ValueError(f"not a QuickBooks entity name: {entity!r}")
    return entity.lower()


def _entity_in(payload: dict[str, Any], entity: str) -> dict[str, Any]:
    wanted = entity.lower()
    for key, value in payload.items():
        if key.lower() == wanted and isinstance(value, dict):
            return value
    raise PermanentError(f"QuickBooks answered without the {entity} it was asked for")


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        payload = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
